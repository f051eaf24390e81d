"""Crash and resume: ``funcsim run`` SIGKILLed at chosen points, rerun, compared bit for bit.

Each case kills a real ``python -m funcsim run`` subprocess at a deterministic point
(``FUNCSIM_FAULT``, see :mod:`funcsim._faults`): before any job, in the middle of training, in
the middle of a file write, while writing a ``done`` marker, and while writing the report. The
rerun (in this process) must finish the study without recomputing any job that had its
``done`` marker, leave no temp file or lock behind, and end with artifacts that all load and
are byte-identical to those of an uninterrupted run of the same config (``reference_study``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.reliability import N_JOBS, job_ids, run_args, run_until_killed, write_config

from funcsim import store
from funcsim.cli import main
from funcsim.errors import StoreError

NOT_COMPARED = {store.METRICS}
"""Job files whose bytes may differ between runs (timings); every other file must not."""
REPORT_NOT_COMPARED = {"report.md", "report.html"}
"""Report files that name the study folder (which differs between the two runs)."""


@dataclass(frozen=True)
class KillPoint:
    fault: str
    """``FUNCSIM_FAULT`` of the run that is killed."""
    done_before: int
    """Jobs with a ``done`` marker when it dies."""
    leftover: str | None
    """Glob (under RUN_DIR) of the half-written temp file it leaves, if any."""
    holds_lock: bool = True
    """Whether it dies holding the study's lock (the report is built after it is released)."""


KILL_POINTS = {
    # before any job: study.json half-written, the folder holds only the lock and a temp file
    "writing-study-json": KillPoint("store.write/study.json:1", 0, ".study.json.*.tmp"),
    # after the 3rd epoch overall: the independent model's 1st (the base has 2 and is done)
    "during-training": KillPoint("train.epoch:3", 1, None),
    # the independent model's predictions are in a temp file, not yet renamed into place
    "writing-predictions": KillPoint(
        "store.write/predictions.npy:2", 1, f"{store.JOBS}/*/.predictions.npy.*.tmp"
    ),
    # the student's every file is written but its marker: it must be redone, not trusted
    "writing-done-marker": KillPoint("store.write/done:3", 2, f"{store.JOBS}/*/.done.*.tmp"),
    # every job done, the report half written
    "writing-report": KillPoint(
        "store.write/similarity.csv:1", N_JOBS, f"{store.REPORT}/.similarity.csv.*.tmp", False
    ),
}


def _finished(run_dir: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """Jobs with a marker: id -> (marker inode, mtime_ns, predictions inode, mtime_ns, bytes)."""
    state = {}
    jobs = store.jobs_dir(run_dir)
    for marker in jobs.glob(f"*/{store.DONE}") if jobs.is_dir() else []:
        predictions = marker.parent / store.PREDICTIONS
        m, p = marker.stat(), predictions.stat()
        state[marker.parent.name] = (
            m.st_ino,
            m.st_mtime_ns,
            p.st_ino,
            p.st_mtime_ns,
            predictions.read_bytes(),
        )
    return state


def _assert_loads(folder: Path) -> None:
    """Every artifact of a finished job folder loads through the store."""
    run = store.load_run(folder)
    predictions = run.predictions()
    assert predictions.dtype == np.float32 and np.isfinite(predictions).all()
    assert predictions.shape[1] == len(run.labels())
    assert isinstance(run.metrics["final_test_accuracy"], float)
    assert run.config["job_id"] == folder.name
    for name in (store.INIT_WEIGHTS, store.FINAL_WEIGHTS):
        if (folder / name).exists():
            assert store.read_weights(folder / name)


def _assert_same_files(folder: Path, reference: Path, skip: set[str]) -> None:
    names = sorted(p.name for p in reference.iterdir() if p.is_file() and p.name not in skip)
    assert names == sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in skip)
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), folder / name


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    point: str, tmp_path: Path, reference_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kill = KILL_POINTS[point]
    run_dir = tmp_path / "study"
    args = run_args(write_config(tmp_path), run_dir)
    run_until_killed(args, kill.fault)

    # What the crash left: the finished jobs, maybe a half-written file, a stale lock.
    before = _finished(run_dir)
    assert len(before) == kill.done_before, sorted(before)
    if kill.leftover is not None:
        assert list(run_dir.glob(kill.leftover)), f"no {kill.leftover} after the kill"
    assert (run_dir / store.LOCK).is_file() == kill.holds_lock  # stale now: its pid is dead
    for folder in store.jobs_dir(run_dir).glob("*") if before or kill.leftover else []:
        if folder.name not in before:  # half-done: never read back as a result
            with pytest.raises(StoreError, match="not a finished run"):
                store.load_run(folder)

    # The rerun finishes the study, recomputing only what had no marker.
    capsys.readouterr()
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    todo = N_JOBS - kill.done_before
    assert f"{N_JOBS} jobs, {kill.done_before} already done, {todo} run now" in out
    after = _finished(run_dir)
    assert len(after) == N_JOBS
    for job_id, state in before.items():
        assert after[job_id] == state, f"{job_id} was recomputed"
    assert not list(run_dir.rglob("*.tmp")), "temp files left behind"
    assert not (run_dir / store.LOCK).exists()

    # Everything loads and equals the uninterrupted run, byte for byte.
    assert job_ids(run_dir) == job_ids(reference_study)
    for job_id in job_ids(run_dir):
        folder = store.job_dir(run_dir, job_id)
        _assert_loads(folder)
        _assert_same_files(folder, store.job_dir(reference_study, job_id), NOT_COMPARED)
    for sub in ("", "figures"):
        _assert_same_files(
            store.report_dir(run_dir) / sub,
            store.report_dir(reference_study) / sub,
            REPORT_NOT_COMPARED,
        )
