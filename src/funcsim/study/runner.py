"""The scheduler: runs a study's jobs in dependency order on an executor, resumably.

``run_study(cfg, run_dir, executor)`` takes the study folder's lock, records the study
(``study.json``), skips jobs whose ``done`` marker exists, submits every job whose
dependencies are done as soon as the executor has room, records failures (``error.json``,
no marker) and goes on with every job that does not depend on a failed one; those are
reported as skipped. It returns a :class:`StudySummary`; nothing is raised for a failed job.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from funcsim import __version__, store
from funcsim.config import StudyConfig
from funcsim.study.execute import JobOutcome
from funcsim.study.jobs import Job, expand

if TYPE_CHECKING:
    from funcsim.executors import Executor

SKIPPED = "skipped: dependency failed"


@dataclass
class StudySummary:
    """What a run did: ids of the jobs found done, run now, failed and skipped."""

    run_dir: Path
    jobs: list[Job]
    already_done: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: dict[str, JobOutcome] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


class StudyEvents(Protocol):
    """Callbacks of a run (a progress display, for example)."""

    def planned(self, jobs: list[Job], done: set[str]) -> None: ...
    def started(self, job: Job) -> None: ...
    def finished(self, job: Job, outcome: JobOutcome) -> None: ...
    def skipped(self, job: Job) -> None: ...


class NoEvents:
    """:class:`StudyEvents` that do nothing (the default)."""

    def planned(self, jobs: list[Job], done: set[str]) -> None:
        pass

    def started(self, job: Job) -> None:
        pass

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        pass

    def skipped(self, job: Job) -> None:
        pass


def study_record(cfg: StudyConfig) -> dict[str, object]:
    """The resolved config as stored in ``study.json``."""
    return {**cfg.model_dump(mode="json"), "funcsim_version": __version__}


def _record_failure(run_dir: Path, job: Job, outcome: JobOutcome) -> None:
    try:
        store.write_error(
            store.job_dir(run_dir, job.id),
            outcome.message,
            outcome.traceback,
            label=job.title,
            seconds=outcome.seconds,
        )
    except store.StoreError as err:  # e.g. the disk is full: the run's summary still says it
        outcome.message += f" (and the error could not be recorded: {err})"


def run_study(
    cfg: StudyConfig,
    run_dir: Path,
    executor: Executor,
    *,
    events: StudyEvents | None = None,
    jobs: list[Job] | None = None,
) -> StudySummary:
    """Run every job of ``cfg`` not yet done in ``run_dir`` (see the module docstring).

    ``jobs`` overrides the expansion of ``cfg`` (already expanded, or a subset in tests).
    """
    events = events or NoEvents()
    run_dir = Path(run_dir)
    started = time.perf_counter()
    jobs = expand(cfg) if jobs is None else jobs
    by_id = {j.id: j for j in jobs}
    store.check_study_target(run_dir)
    with store.StudyLock(run_dir):
        store.clear_temp_files(run_dir)  # left by a run killed mid-write; the lock is ours
        store.write_study(run_dir, study_record(cfg), [j.summary() for j in jobs])
        done = {j.id for j in jobs if store.is_done(store.job_dir(run_dir, j.id))}
        summary = StudySummary(run_dir, jobs, already_done=[j.id for j in jobs if j.id in done])
        events.planned(jobs, done)
        waiting = [j for j in jobs if j.id not in done]
        running: dict[cf.Future[object], Job] = {}
        blocked: set[str] = set()
        while waiting or running:
            # Skip jobs whose dependencies failed (transitively), submit the ready ones.
            for job in list(waiting):
                if any(d in blocked or d in summary.failed for d in job.deps):
                    waiting.remove(job)
                    blocked.add(job.id)
                    summary.skipped.append(job.id)
                    events.skipped(job)
                elif all(d in done for d in job.deps) and executor.has_room(len(running)):
                    waiting.remove(job)
                    events.started(job)
                    running[executor.submit(job, run_dir)] = job
            if not running:
                if waiting:  # pragma: no cover - only if a dependency is outside the study
                    missing = {d for j in waiting for d in j.deps if d not in by_id}
                    raise RuntimeError(f"jobs wait on unknown dependencies {sorted(missing)}")
                break
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                outcome = executor.collect(job, run_dir, future)
                if outcome.ok:
                    done.add(job.id)
                    summary.completed.append(job.id)
                else:
                    summary.failed[job.id] = outcome
                    _record_failure(run_dir, job, outcome)
                events.finished(job, outcome)
    summary.seconds = time.perf_counter() - started
    return summary
