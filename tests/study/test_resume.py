"""Crash and resume: SIGKILL ``funcsim run`` mid-study, rerun, nothing finished is redone."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_study import funcsim_cmd, subprocess_env

from funcsim import store
from funcsim.cli import main
from funcsim.study import collect, job_states

SETTINGS = [
    "data.train_limit=600",
    "data.test_limit=150",
    "train.epochs=3",
    "train.device=cpu",
]
"""The quick preset's full grid (13 jobs), on a subset, short enough for the suite."""

POLL_SECONDS = 0.02
START_TIMEOUT = 240.0


def _done_markers(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (run_dir / store.JOBS).glob(f"*/{store.DONE}")
    }


def test_sigkill_mid_study_then_rerun_completes_without_recomputing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "study"
    args = ["--quiet", "run", "--out", str(run_dir)]  # no CONFIG: the quick preset
    for setting in SETTINGS:
        args += ["--set", setting]
    proc = subprocess.Popen(
        funcsim_cmd(*args), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not _done_markers(run_dir):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no job finished in time"
            time.sleep(POLL_SECONDS)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    before = _done_markers(run_dir)
    states = job_states(run_dir)
    assert 1 <= len(before) < len(states) == 13
    assert (run_dir / store.LOCK).exists()  # left behind by the killed run: stale now

    # The rerun (in this process: the suite's time goes to work, not to imports).
    assert main(args) == 0, capsys.readouterr().err
    assert f"{len(before)} already done, {13 - len(before)} run now" in capsys.readouterr().out
    after = _done_markers(run_dir)
    assert len(after) == 13
    for job_id, marker in before.items():  # finished jobs were not recomputed
        assert after[job_id] == marker
    assert not (run_dir / store.LOCK).exists()
    assert not list(run_dir.rglob("*.tmp"))

    entries = collect(run_dir)
    assert len(entries) == 13
    for entry in entries:  # every artifact loads
        preds = entry.run.predictions()
        assert np.isfinite(preds).all() and preds.shape[1:] == (150, 10)
        assert entry.run.labels().shape == (150,)
        assert isinstance(entry.run.metrics["final_test_accuracy"], float)
        if entry.kind != "compress" or entry.run.metrics.get("weights_saved"):
            assert entry.run.final_state()
        if entry.kind != "compress":
            assert entry.run.init_state()

    # A third run does nothing but rebuild the report.
    assert main(args) == 0
    assert "13 already done, 0 run now" in capsys.readouterr().out
    assert (run_dir / store.REPORT).is_dir()
    assert _done_markers(run_dir) == after
