"""The functional landscape: embed many prediction sets in 2-D and draw them.

:class:`FunctionalLandscape` is a scikit-learn style estimator (t-SNE as in Fort et al. 2019
and the paper, or exact PCA) that scales through the checkpoints' Gram matrix;
:func:`plot_landscape` draws trajectories and post-hoc models (matplotlib is imported only
when it is called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from funcsim.landscape.estimator import CHUNK_BYTES, FunctionalLandscape, default_perplexity

if TYPE_CHECKING:
    from funcsim.landscape.plot import KINDS, LandscapeItem, plot_landscape

__all__ = [
    "CHUNK_BYTES",
    "KINDS",
    "FunctionalLandscape",
    "LandscapeItem",
    "default_perplexity",
    "plot_landscape",
]

_PLOT_NAMES = {"KINDS", "LandscapeItem", "plot_landscape"}


def __getattr__(name: str) -> Any:
    if name in _PLOT_NAMES:
        from funcsim.landscape import plot

        return getattr(plot, name)
    raise AttributeError(f"module 'funcsim.landscape' has no attribute {name!r}")
