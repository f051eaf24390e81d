"""Reading a study folder back: its config, the state of every job, the finished models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funcsim import store
from funcsim.config import StudyConfig
from funcsim.errors import StoreError
from funcsim.store import RunRecord

DONE, FAILED, PENDING, BLOCKED = "done", "failed", "pending", "blocked"
"""Job states shown by ``funcsim status``; ``blocked`` = pending behind a failed job."""


@dataclass(frozen=True)
class ModelEntry:
    """A finished job of a study, as the report sees it."""

    job_id: str
    dataset: str
    arch: str
    role: str
    label: str
    options: dict[str, Any]
    run: RunRecord
    kind: str = ""
    seed: int = 0
    student_arch: str | None = None
    method: str | None = None


@dataclass(frozen=True)
class JobState:
    """One job's line in ``funcsim status``."""

    id: str
    kind: str
    dataset: str
    arch: str
    role: str
    label: str
    state: str
    deps: tuple[str, ...] = ()
    error: str = ""
    accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_study_config(run_dir: Path) -> StudyConfig:
    """The StudyConfig recorded in ``RUN_DIR/study.json``."""
    data = dict(store.read_study(run_dir)["config"])
    data.pop("funcsim_version", None)
    try:
        return StudyConfig.model_validate(data)
    except ValueError as err:
        raise StoreError(f"{Path(run_dir) / store.STUDY}: invalid study config ({err})") from None


def job_states(run_dir: Path) -> list[JobState]:
    """The state of every job of the study in ``run_dir`` (in the study's job order)."""
    entries = store.read_study(run_dir)["jobs"]
    states: list[JobState] = []
    by_id: dict[str, str] = {}
    for entry in entries:
        folder = store.job_dir(run_dir, entry["id"])
        deps = tuple(entry.get("deps", ()))
        error, accuracy = "", None
        if store.is_done(folder):
            state = DONE
            try:
                accuracy = store.load_run(folder).metrics.get("final_test_accuracy")
            except StoreError as err:
                error = str(err)
        elif (record := store.read_error(folder)) is not None:
            state, error = FAILED, str(record.get("message", ""))
        elif any(by_id.get(d) in (FAILED, BLOCKED) for d in deps):
            state = BLOCKED
        else:
            state = PENDING
        by_id[entry["id"]] = state
        states.append(
            JobState(
                id=entry["id"],
                kind=entry.get("kind", ""),
                dataset=entry.get("dataset", ""),
                arch=entry.get("arch", ""),
                role=entry.get("role", ""),
                label=entry.get("label", ""),
                state=state,
                deps=deps,
                error=error,
                accuracy=accuracy if isinstance(accuracy, float) else None,
            )
        )
    return states


def collect(run_dir: Path) -> list[ModelEntry]:
    """Every finished job of the study in ``run_dir``, in the study's job order.

    Only the jobs of the study as last run are listed (a folder left by an earlier setting
    is kept on disk but not reported).
    """
    entries: list[ModelEntry] = []
    for state in job_states(run_dir):
        if state.state != DONE:
            continue
        run = store.load_run(store.job_dir(run_dir, state.id))
        cfg = run.config
        entries.append(
            ModelEntry(
                job_id=state.id,
                dataset=cfg["dataset"],
                arch=cfg["arch"],
                role=cfg["role"],
                label=cfg["label"],
                options=dict(cfg.get("options") or {}),
                run=run,
                kind=cfg.get("kind", ""),
                seed=int(cfg.get("seed", 0)),
                student_arch=cfg.get("student_arch"),
                method=cfg.get("method"),
            )
        )
    return entries
