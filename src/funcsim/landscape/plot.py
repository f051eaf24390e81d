"""Draw a functional landscape: trajectories as lines, post-hoc models as labelled points.

Rows of the embedding are mapped to models by :class:`LandscapeItem` (rows ``start`` to
``stop - 1``). An item with several rows is a training trajectory, drawn as a line from epoch
0 (small open circle) to the final epoch (filled marker); an item with one row is a post-hoc
model (quantized, pruned), drawn as a labelled point. The base is black with a star; every
method family has its own colour map (shades darken with the item's order in the family, so
pruning 10 % -> 90 % reads light -> dark). Uses matplotlib's object API (no pyplot, no global
backend change) and writes PNG and SVG (SVG with a fixed hash salt and no date: reproducible).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from funcsim.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KINDS: tuple[str, ...] = ("base", "independent", "distill", "quantize", "prune", "other")
"""Allowed :attr:`LandscapeItem.kind` values (method families)."""

FAMILY_CMAPS: dict[str, str] = {
    "independent": "Greys",
    "distill": "Blues",
    "quantize": "Greens",
    "prune": "Oranges",
    "other": "Purples",
}
"""Matplotlib colour map of each family (the base is always black)."""

SHADE_RANGE = (0.45, 0.9)
"""Colour-map positions of the first and last item of a family."""

POINT_MARKERS: dict[str, str] = {
    "base": "*",
    "independent": "o",
    "distill": "o",
    "quantize": "D",
    "prune": "v",
    "other": "s",
}

FIGSIZE = (8.0, 6.0)
DPI = 150

__all__ = ["FAMILY_CMAPS", "KINDS", "LandscapeItem", "plot_landscape"]


@dataclass(frozen=True)
class LandscapeItem:
    """One model in the landscape: embedding rows ``start .. stop - 1`` (epoch order).

    ``kind`` is one of :data:`KINDS`; ``label`` is shown in the legend (and next to a
    single-row item).
    """

    label: str
    kind: str
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(
                f"LandscapeItem {self.label!r}: kind {self.kind!r} unknown; "
                f"choose one of: {', '.join(KINDS)}"
            )
        if not (0 <= self.start < self.stop):
            raise DataError(
                f"LandscapeItem {self.label!r}: need 0 <= start < stop, "
                f"got start={self.start}, stop={self.stop}"
            )

    @property
    def is_trajectory(self) -> bool:
        """True when the item spans several rows (a training run)."""
        return self.stop - self.start > 1


def _colours(groups: Sequence[LandscapeItem]) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    members: dict[str, list[int]] = {}
    for i, item in enumerate(groups):
        members.setdefault(item.kind, []).append(i)
    out: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 1.0)] * len(groups)
    lo, hi = SHADE_RANGE
    for kind, idx in members.items():
        if kind == "base":
            continue
        cmap = colormaps[FAMILY_CMAPS[kind]]
        for j, i in enumerate(idx):
            pos = lo if len(idx) == 1 else lo + (hi - lo) * j / (len(idx) - 1)
            out[i] = tuple(float(v) for v in cmap(pos))  # type: ignore[assignment]
    return out


def _save_atomic(fig: Figure, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=target.suffix[1:], metadata=_metadata(target.suffix))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _metadata(suffix: str) -> dict[str, str | None]:
    return {"Date": None} if suffix == ".svg" else {}


def plot_landscape(
    embedding: npt.ArrayLike,
    groups: Sequence[LandscapeItem],
    *,
    path: str | os.PathLike[str],
    title: str = "Functional landscape",
    axis_label: str = "t-SNE",
    annotate: bool = True,
) -> tuple[Path, Path]:
    """Draw the landscape and save it as PNG and SVG.

    Parameters
    ----------
    embedding : array of shape (K, 2)
        ``FunctionalLandscape.embedding_``.
    groups : sequence of LandscapeItem
        Which rows belong to which model; rows not covered by any item are not drawn.
    path : path
        Output path without suffix (a ``.png`` or ``.svg`` suffix is replaced); parent
        folders are created. Both files are written atomically.
    title, axis_label : str
        Figure title; axis names are ``f"{axis_label} 1"`` and ``f"{axis_label} 2"``.
    annotate : bool
        Write the label beside each single-row (post-hoc) model.

    Returns
    -------
    (png_path, svg_path)
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    emb = np.asarray(embedding, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[1] != 2:
        raise DataError(f"embedding: expected shape (K, 2), got {emb.shape}")
    if not np.isfinite(emb).all():
        raise DataError("embedding: holds NaN or infinite values")
    if not groups:
        raise DataError("groups: need at least one LandscapeItem to draw")
    for item in groups:
        if item.stop > emb.shape[0]:
            raise DataError(
                f"LandscapeItem {item.label!r}: rows {item.start}..{item.stop - 1} exceed the "
                f"{emb.shape[0]} rows of the embedding"
            )

    base = Path(path)
    if base.suffix.lower() in (".png", ".svg"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")

    with rc_context({"svg.hashsalt": "funcsim", "svg.fonttype": "none"}):
        fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        # draw the base last so that it is on top
        order = sorted(range(len(groups)), key=lambda i: groups[i].kind == "base")
        colours = _colours(groups)
        for i in order:
            _draw_item(ax, emb, groups[i], colours[i], annotate)
        ax.set_title(title)
        ax.set_xlabel(f"{axis_label} 1")
        ax.set_ylabel(f"{axis_label} 2")
        # one labelled artist per item, drawn in ``order``: list them in the groups' order
        handles, labels = ax.get_legend_handles_labels()
        by_group = sorted(range(len(handles)), key=lambda j: order[j])
        ax.legend(
            [handles[j] for j in by_group],
            [labels[j] for j in by_group],
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize="small",
            frameon=False,
        )
        ax.grid(alpha=0.2)
        _save_atomic(fig, png)
        _save_atomic(fig, svg)
    return png, svg


def _draw_item(
    ax: Axes,
    emb: np.ndarray,
    item: LandscapeItem,
    colour: tuple[float, float, float, float],
    annotate: bool,
) -> None:
    rows = emb[item.start : item.stop]
    is_base = item.kind == "base"
    marker = POINT_MARKERS[item.kind]
    end_size = 16 if is_base else 8
    z = 4 if is_base else 3
    if item.is_trajectory:
        ax.plot(
            rows[:, 0],
            rows[:, 1],
            "-",
            color=colour,
            lw=1.6 if is_base else 1.1,
            alpha=0.8,
            zorder=z,
        )
        ax.plot(rows[0, 0], rows[0, 1], "o", mfc="white", mec=colour, ms=4, zorder=z)
        ax.plot(
            rows[-1, 0],
            rows[-1, 1],
            marker,
            color=colour,
            ms=end_size,
            mec="white",
            mew=0.6,
            zorder=z + 1,
            label=item.label,
            linestyle="none",
        )
    else:
        ax.plot(
            rows[0, 0],
            rows[0, 1],
            marker,
            color=colour,
            ms=end_size,
            mec="black",
            mew=0.5,
            zorder=z + 1,
            label=item.label,
            linestyle="none",
        )
        if annotate:
            ax.annotate(
                item.label,
                (rows[0, 0], rows[0, 1]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize="x-small",
                color="0.2",
            )
