"""What the scheduler needs from an executor: room, submit, collect, and a context."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from types import TracebackType
from typing import Any

from funcsim.study.execute import JobOutcome, failure
from funcsim.study.jobs import Job


class Executor:
    """Base class of executors; :func:`funcsim.study.run_study` drives them.

    ``submit`` starts a job and returns a future; ``collect`` is called by the scheduler (in
    the driver's main thread) once that future is done and returns the job's outcome, never
    raising for a failed job. Executors are context managers that release their workers.
    """

    name = "executor"
    capacity = 1
    """How many jobs may run at once."""

    def has_room(self, running: int) -> bool:
        return running < self.capacity

    def submit(self, job: Job, run_dir: Path) -> cf.Future[Any]:  # pragma: no cover
        raise NotImplementedError

    def collect(self, job: Job, run_dir: Path, future: cf.Future[Any]) -> JobOutcome:
        """The outcome a finished future carries (a worker crash becomes a failure)."""
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - e.g. a worker process that died
            return failure(job, err)
        assert isinstance(result, JobOutcome)
        return result

    def close(self) -> None:
        """Release workers once their jobs end (idempotent)."""

    def abort(self) -> None:
        """Release workers at once, abandoning running jobs (after an error or Ctrl-C)."""
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def describe(self) -> str:
        return self.name
