"""Where a study's jobs run: ``local`` (this machine, ``--jobs N`` processes) or ``ray``.

>>> from funcsim.executors import get_executor
>>> with get_executor("local", jobs=1, threads=1) as ex:
...     ex.describe()
'local (1 process x 1 thread)'
"""

from __future__ import annotations

from typing import Any

from funcsim.errors import ConfigError
from funcsim.executors._base import Executor
from funcsim.executors.local import (
    InProcessExecutor,
    ProcessPoolJobExecutor,
    local_executor,
    threads_per_worker,
)

EXECUTORS = ("local", "ray")

__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "ProcessPoolJobExecutor",
    "get_executor",
    "local_executor",
    "threads_per_worker",
]


def get_executor(
    name: str = "local",
    *,
    jobs: int = 1,
    address: str | None = None,
    progress: bool = False,
    threads: int | None = None,
    **options: Any,
) -> Executor:
    """The executor called ``name``: ``local`` (``jobs`` processes) or ``ray`` (``address``).

    ``progress`` shows per-epoch bars for jobs run in this process; ``threads`` sets the
    torch threads of each local job. Extra ``options`` go to ``ray.init`` (e.g.
    ``num_cpus``) when a Ray cluster is started.
    """
    if name == "local":
        if address is not None:
            raise ConfigError("--address applies to --executor ray only")
        if options:
            raise ConfigError(f"local executor takes no options {sorted(options)}")
        return local_executor(jobs, progress=progress, threads=threads)
    if name == "ray":
        if jobs != 1:
            raise ConfigError("--jobs applies to --executor local; Ray uses the cluster's CPUs")
        if threads is not None:
            raise ConfigError("--threads applies to --executor local; Ray gives a task 1 CPU")
        from funcsim.executors.ray_executor import RayExecutor

        return RayExecutor(address, **options)
    raise ConfigError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
