"""The process that starts ``--jobs N`` workers: it imports torch and funcsim once, then forks.

A spawned worker pays its own imports before its first epoch: about 4.5 s of CPU here (torch
1.5-3 s, ``torch._dynamo`` 1.3-3 s, which the first ``torch.optim`` optimizer imports), as much
as a whole small study's training. With the ``forkserver`` start method a single server
process pays them once and every worker is a fork of it that starts in milliseconds. Forking
is safe there: the server only imports, it never runs a torch operation, so no OpenMP pool or
lock exists to be copied half-held.

This module imports nothing heavy, and neither does importing :mod:`funcsim.cli`, so the CLI
starts the server before anything imports torch (:func:`start_early`); while the server
imports, the driver imports what its report will need on the other core
(:func:`funcsim.report.preload`). Measured (BENCHMARKS.md): the process tree of ``funcsim run
--jobs 2`` needs half the memory (the workers share the server's pages), and the quick study
runs in 0.67-0.69 of its ``--jobs 1`` time (0.94-0.97 when the CLI imported torch first).
When its driver is gone the server exits without the interpreter's teardown
(:mod:`funcsim._server_exit`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context

PRELOAD = (
    "funcsim",  # first: sets OMP_WAIT_POLICY before torch loads libgomp
    "torch",
    "torch._dynamo",
    "torch.optim",
    "funcsim.study.execute",
    "funcsim.compress",
    "funcsim._server_exit",  # last: its exit handler runs first and skips the teardown
)
"""Modules the server imports before it forks the first worker."""


def start_method() -> str:
    """``forkserver`` where the OS has it (Linux, macOS), else ``spawn`` (Windows)."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of local workers, its server told what to preload."""
    context = multiprocessing.get_context(start_method())
    if context.get_start_method() == "forkserver":
        # Applies when the server starts (once per driver process); later calls are no-ops.
        context.set_forkserver_preload(list(PRELOAD))
    return context


def start_early() -> None:
    """Start the server now (it returns at once; the server imports in the background)."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
