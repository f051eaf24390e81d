"""Local executors: jobs in this process (``--jobs 1``) or in N worker processes.

Workers are forked from a server process that imported torch and funcsim once
(:mod:`funcsim._worker_server`; ``spawn`` where the OS has no ``forkserver``), get the
driver's environment as it is when the pool starts, and each runs torch with ``cores // N``
threads, so N parallel jobs share the machine instead of fighting for it. A worker whose
driver dies (``kill -9``) exits at once rather than finish a job that nobody will collect;
whatever it had written is incomplete, so it has no ``done`` marker.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from funcsim._system import available_cores
from funcsim._worker_server import worker_context
from funcsim.executors._base import Executor
from funcsim.study.execute import JobOutcome, run_job_safely
from funcsim.study.jobs import Job

DRIVER_POLL_SECONDS = 0.5
"""How often a worker checks that its driver (the process that made the pool) still lives."""

IN_PROCESS_THREADS = 1
"""Torch threads of a job run in this process unless ``--threads`` says otherwise.

One, as a Ray task gets: the thread count changes float rounding (the last bit of some
predictions), so the default executors agree bit for bit; the quick study's small models
gain nothing from more threads, and on a busy machine OpenMP threads that wait for each
other made it 10-20x slower (measured: over 580 s instead of 45 s on 2 loaded cores)."""


def threads_per_worker(workers: int) -> int:
    """``max(1, cores // workers)``: torch threads of each of ``workers`` processes."""
    return max(1, available_cores() // max(1, workers))


class InProcessExecutor(Executor):
    """Runs each job synchronously in the calling process (the default, ``--jobs 1``)."""

    name = "local"

    def __init__(self, *, progress: bool = False, threads: int | None = None) -> None:
        self.progress = progress
        self.threads = threads or IN_PROCESS_THREADS

    def submit(self, job: Job, run_dir: Path) -> cf.Future[Any]:
        import torch

        future: cf.Future[Any] = cf.Future()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            future.set_result(run_job_safely(job, run_dir, progress=self.progress))
        finally:
            torch.set_num_threads(before)
        return future

    def describe(self) -> str:
        plural = "s" if self.threads > 1 else ""
        return f"local (1 process x {self.threads} thread{plural})"


_HAS_PROC = Path("/proc/self/stat").exists()


def _process_identity(pid: int) -> str | None:
    """Something that changes when ``pid`` ends: its start time (Linux), else its existence.

    None once the process is gone or a zombie; the start time tells a reused pid apart.
    """
    if not _HAS_PROC:  # e.g. macOS: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (command)": state is field 3
    return None if fields[0] == "Z" else fields[19]  # field 22: start time


def _watch_driver(driver: int) -> None:
    # Watch the driver itself, not the parent: a forked worker's parent is the fork server,
    # which outlives the driver while any worker holds the server's liveness pipe.
    identity = _process_identity(driver)
    while True:
        time.sleep(DRIVER_POLL_SECONDS)
        if _process_identity(driver) != identity:
            os._exit(3)


def _init_worker(threads: int, environment: dict[str, str], driver: int) -> None:
    import torch

    # A forked worker inherits the server's environment, frozen when the server started;
    # give it the driver's, as a spawned worker would have (e.g. FUNCSIM_FAULT).
    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(threads)
    threading.Thread(target=_watch_driver, args=(driver,), daemon=True).start()


def _run_in_worker(job: Job, run_dir: str) -> JobOutcome:
    return run_job_safely(job, Path(run_dir))


class ProcessPoolJobExecutor(Executor):
    """Runs up to ``workers`` independent jobs at once in worker processes."""

    name = "local"

    def __init__(self, workers: int, *, threads: int | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.capacity = workers
        self.threads = threads or threads_per_worker(workers)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=worker_context(),
            initializer=_init_worker,
            initargs=(self.threads, dict(os.environ), os.getpid()),
        )

    def submit(self, job: Job, run_dir: Path) -> cf.Future[Any]:
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(_run_in_worker, job, str(run_dir))
        except BrokenProcessPool:  # a worker died earlier: start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(_run_in_worker, job, str(run_dir))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Stop at once (Ctrl-C): cancel queued jobs and terminate the workers."""
        if self._pool is not None:
            processes = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            self._pool = None

    def describe(self) -> str:
        plural = "s" if self.threads > 1 else ""
        return f"local ({self.capacity} processes x {self.threads} thread{plural})"


def local_executor(
    jobs: int = 1, *, progress: bool = False, threads: int | None = None
) -> Executor:
    """``--jobs 1``: in this process; ``--jobs N``: N worker processes.

    ``threads``: torch threads per job (None: :data:`IN_PROCESS_THREADS` in this process,
    ``cores // jobs`` in workers).
    """
    from funcsim.errors import ConfigError

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if jobs == 1:
        return InProcessExecutor(progress=progress, threads=threads)
    return ProcessPoolJobExecutor(jobs, threads=threads)
