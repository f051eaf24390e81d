"""funcsim: does the compressed model still compute the same function as the original?"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"

# OpenMP threads that wait at a barrier sleep instead of spinning. With spinning (libgomp's
# default) a 2-thread torch job on a 2-core machine that anything else also uses ran 4-25x
# slower than with 1 thread (a descheduled partner stalls every parallel op); on an idle
# machine sleeping threads cost nothing measurable at LeNet scale (BENCHMARKS.md). Set before
# torch is imported (libgomp reads it once); an explicit OMP_WAIT_POLICY=ACTIVE wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
