"""funcsim: does the compressed model still compute the same function as the original?"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compare"]


def __getattr__(name: str) -> Any:
    # Lazy so that ``import funcsim`` stays light (no torch until it is needed). The
    # implementation lives in ``_compare`` so no submodule attribute shadows the function.
    if name == "compare":
        from funcsim._compare import compare

        globals()["compare"] = compare
        return compare
    raise AttributeError(f"module 'funcsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
