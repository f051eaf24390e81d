"""Fixtures of the reliability tests (helpers in ``helpers.reliability``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.reliability import N_JOBS, job_ids, run_args, write_config

from funcsim._faults import ENV as FAULT_ENV
from funcsim.cli import main


@pytest.fixture(autouse=True)
def _no_fault_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults are only ever injected into subprocesses, never into the test process."""
    monkeypatch.delenv(FAULT_ENV, raising=False)


@pytest.fixture(scope="session")
def reference_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study run once, uninterrupted, in this process (read it, never write it)."""
    root = tmp_path_factory.mktemp("reference")
    run_dir = root / "study"
    assert main(run_args(write_config(root), run_dir)) == 0
    assert len(job_ids(run_dir)) == N_JOBS
    return run_dir


@pytest.fixture
def study_copy(reference_study: Path, tmp_path: Path) -> Path:
    """A private copy of the finished reference study (mtimes kept)."""
    return Path(shutil.copytree(reference_study, tmp_path / "study-copy"))
