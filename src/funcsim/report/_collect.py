"""Read a study folder: the resolved config, the finished jobs and the failed ones.

Layout (written by :mod:`funcsim.study`)::

    RUN_DIR/study.json              resolved StudyConfig
    RUN_DIR/jobs/<job-id>/          one run folder per job (see funcsim.store)
    RUN_DIR/jobs/<job-id>/error.json   {"message": ...} when the job failed

:func:`collect` is the single place that scans the folder, so it can be swapped for the
study runner's own listing without touching the rest of the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from funcsim import store
from funcsim.config import StudyConfig, format_validation_error
from funcsim.errors import StoreError

STUDY_FILE = "study.json"
JOBS_DIR = "jobs"
ERROR_FILE = "error.json"


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
    study: StudyConfig | None
    jobs: list[Job] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Job folders with neither a ``done`` marker nor an error (interrupted or not yet run)."""
    superseded: list[str] = field(default_factory=list)
    """Older finished jobs replaced by a newer one for the same model (e.g. after a change)."""


def read_study(run_dir: Path) -> tuple[StudyConfig | None, list[str] | None]:
    """The study's resolved config and its job ids, from ``study.json`` (None when absent).

    Accepts the config at the top level or under ``"study"``; keys that are not settings
    (``funcsim_version``, the ``jobs`` list ...) are set aside. The job list, when present
    (entries with an ``id``), says which job folders belong to the current configuration.
    """
    path = Path(run_dir) / STUDY_FILE
    if not path.is_file():
        return None, None
    from pydantic import ValidationError

    data = store.read_json(path)
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    settings = data["study"] if isinstance(data.get("study"), dict) else data
    settings = {k: v for k, v in settings.items() if k in StudyConfig.model_fields}
    try:
        study = StudyConfig.model_validate(settings)
    except ValidationError as err:
        raise StoreError(format_validation_error(err, str(path))) from None
    listed = data.get("jobs")
    ids = None
    if isinstance(listed, list):
        ids = [str(j["id"]) for j in listed if isinstance(j, dict) and "id" in j]
    return study, ids


def _model_key(config: dict[str, Any]) -> tuple[str, ...]:
    keys = ("dataset", "arch", "role", "label", "seed", "student_arch")
    return tuple(str(config.get(k)) for k in keys)


def collect(run_dir: Path) -> StudyRuns:
    """Scan ``run_dir/jobs/*/``: finished jobs (``done``), failed ones (``error.json``).

    Jobs of an earlier configuration of the same folder are ignored: those not in
    ``study.json``'s job list when it has one, else those of other datasets, architectures or
    study names. When two finished jobs still describe the same model, the most recently
    finished one is kept.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir}: study folder not found")
    jobs_dir = run_dir / JOBS_DIR
    if not jobs_dir.is_dir():
        raise StoreError(
            f"{run_dir}: no '{JOBS_DIR}' folder; expected the output folder of `funcsim run`"
        )
    study, job_ids = read_study(run_dir)
    current = set(job_ids) if job_ids else None
    jobs: dict[tuple[str, ...], tuple[float, Job]] = {}
    failed: list[FailedJob] = []
    pending: list[str] = []
    superseded: list[str] = []
    for folder in sorted(p for p in jobs_dir.iterdir() if p.is_dir()):
        config_path = folder / store.CONFIG
        config = store.read_json(config_path) if config_path.is_file() else {}
        if not isinstance(config, dict):
            config = {}
        if current is not None and folder.name not in current:
            continue  # a job of an earlier configuration of this study
        if study is not None and not _belongs(config, study):
            continue
        if store.is_done(folder):
            job = Job(folder.name, folder, config, store.load_run(folder).metrics)
            finished = (folder / store.DONE).stat().st_mtime
            key = _model_key(config)
            if key in jobs:
                older, newer = sorted([jobs[key], (finished, job)], key=lambda t: t[0])
                superseded.append(older[1].job_id)
                jobs[key] = newer
            else:
                jobs[key] = (finished, job)
        elif (folder / ERROR_FILE).is_file():
            error = store.read_json(folder / ERROR_FILE)
            if not isinstance(error, dict):
                error = {"message": str(error)}
            failed.append(
                FailedJob(
                    job_id=folder.name,
                    message=str(error.get("message", "")).strip() or "(no message)",
                    label=str(config.get("label") or error.get("label") or ""),
                    dataset=str(config.get("dataset", "")),
                    arch=str(config.get("arch", "")),
                )
            )
        else:
            pending.append(folder.name)
    if current is not None:
        present = {p.name for p in jobs_dir.iterdir()}
        pending += [i for i in job_ids or [] if i not in present]
    return StudyRuns(
        run_dir=run_dir,
        study=study,
        jobs=[job for _, job in jobs.values()],
        failed=failed,
        pending=pending,
        superseded=sorted(superseded),
    )


def _belongs(config: dict[str, Any], study: StudyConfig) -> bool:
    """False for a job that the current study config does not describe."""
    name = config.get("study")
    if name is not None and name != study.name:
        return False
    if "dataset" in config and config["dataset"] not in study.datasets:
        return False
    return not ("arch" in config and config["arch"] not in study.archs)
