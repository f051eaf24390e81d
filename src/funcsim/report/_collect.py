"""Read a study folder: the resolved config, the finished jobs and the failed ones.

Layout (written by :mod:`funcsim.study`)::

    RUN_DIR/study.json                 resolved StudyConfig and the list of jobs
    RUN_DIR/jobs/<job-id>/             one run folder per job (see funcsim.store)
    RUN_DIR/jobs/<job-id>/error.json   {"message": ...} when the job failed

:func:`collect` is the single place that reads the folder (through the study runner's own
:func:`funcsim.study.collect`); the rest of the report sees :class:`StudyRuns` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from funcsim import store
from funcsim.config import StudyConfig


@dataclass(frozen=True)
class Job:
    """One finished job: its config and metrics, predictions read on demand."""

    job_id: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", "?"))

    @property
    def arch(self) -> str:
        return str(self.config.get("arch", "?"))

    @property
    def role(self) -> str:
        return str(self.config.get("role", "?"))

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, (int, float)) else None

    @property
    def label(self) -> str:
        return str(self.config.get("label") or self.job_id)

    @property
    def options(self) -> dict[str, Any]:
        opts = self.config.get("options")
        return dict(opts) if isinstance(opts, dict) else {}

    @property
    def student_arch(self) -> str | None:
        arch = self.config.get("student_arch")
        return None if arch in (None, "", "same") else str(arch)

    def predictions(self) -> np.ndarray:
        """(T, N, C) float32 softmax trajectory, memory-mapped."""
        return store.load_run(self.path).predictions(mmap=True)

    def final_predictions(self) -> np.ndarray:
        """(N, C) softmax of the last checkpoint, in memory."""
        return np.asarray(self.predictions()[-1])

    @cached_property
    def labels(self) -> np.ndarray:
        return store.load_run(self.path).labels()


@dataclass(frozen=True)
class FailedJob:
    job_id: str
    message: str
    label: str = ""
    dataset: str = ""
    arch: str = ""


@dataclass(frozen=True)
class StudyRuns:
    """Everything the report reads from ``run_dir``."""

    run_dir: Path
    study: StudyConfig
    jobs: list[Job] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Jobs neither finished nor failed (interrupted, not yet run)."""
    blocked: list[str] = field(default_factory=list)
    """Jobs not run because a job they depend on failed."""


def collect(run_dir: Path) -> StudyRuns:
    """The study's config, finished jobs, failed and unfinished ones, in the study's order.

    Reads through :func:`funcsim.study.collect`, so only the jobs of the study as last run
    are reported (folders left by an earlier setting stay on disk but are not read). A
    folder that is not a study is a one-line :class:`~funcsim.errors.StoreError`.
    """
    from funcsim.study import collect as finished_models
    from funcsim.study import job_states, read_study_config
    from funcsim.study.collect import BLOCKED, FAILED, PENDING

    run_dir = Path(run_dir)
    study = read_study_config(run_dir)
    jobs = [
        Job(entry.job_id, entry.run.path, entry.run.config, entry.run.metrics)
        for entry in finished_models(run_dir)
    ]
    states = job_states(run_dir)
    failed = [
        FailedJob(
            job_id=s.id,
            message=s.error.strip() or "(no message)",
            label=s.label,
            dataset=s.dataset,
            arch=s.arch,
        )
        for s in states
        if s.state == FAILED
    ]
    return StudyRuns(
        run_dir=run_dir,
        study=study,
        jobs=jobs,
        failed=failed,
        pending=[s.id for s in states if s.state == PENDING],
        blocked=[s.id for s in states if s.state == BLOCKED],
    )
