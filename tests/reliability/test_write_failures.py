"""A write that fails (disk full, no permission) leaves no marker, no half file, and names
the path.

Failures are injected at the last step of an atomic write (``os.replace`` raising
``ENOSPC``) or at its first (``mkstemp`` raising ``EACCES``): tests run as root, which
``chmod`` does not stop.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.reliability import N_JOBS, run_args, snapshot, write_config

from funcsim import store
from funcsim.cli import main
from funcsim.errors import StoreError
from funcsim.study import job_states

DISK_FULL = os.strerror(errno.ENOSPC)


def _fail_replace(monkeypatch: pytest.MonkeyPatch, hit: Callable[[Path], bool]) -> list[Path]:
    """``os.replace`` onto a path for which ``hit(path)`` fails with ENOSPC; returns the hits."""
    real, hits = os.replace, []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if hit(Path(dst)):
            hits.append(Path(dst))
            raise OSError(errno.ENOSPC, DISK_FULL)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return hits


def _temp_files(folder: Path) -> list[Path]:
    return list(folder.rglob(store.TEMP_PATTERN))


def test_a_failed_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "table.csv"
    store.write_text(path, "old\n")
    _fail_replace(monkeypatch, lambda p: p == path)
    with pytest.raises(StoreError) as info:
        store.write_text(path, "new\n")
    assert str(info.value) == f"could not write {path}: {DISK_FULL}"
    assert path.read_text() == "old\n" and not _temp_files(tmp_path)


def test_no_permission_to_write_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(StoreError, match=f"could not write {tmp_path / 'x.json'}: Permission"):
        store.write_json(tmp_path / "x.json", {})
    with pytest.raises(StoreError, match="could not write the lock"):
        store.StudyLock(tmp_path).acquire()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "run"
    with pytest.raises(StoreError, match=f"could not create the folder {target}"):
        store.write_text(target / "x", "")


RUN_FILES = [
    store.CONFIG,
    store.INIT_WEIGHTS,
    store.FINAL_WEIGHTS,
    store.PREDICTIONS,
    store.LABELS,
    store.METRICS,
    store.DONE,
]


def _save(run_dir: Path) -> None:
    store.save_run(
        run_dir,
        predictions=np.full((2, 3, 4), 0.25, np.float32),
        labels=np.arange(3),
        config={"kind": "train"},
        metrics={"final_test_accuracy": 0.5},
        init_state={"w": torch.zeros(2)},
        final_state={"w": torch.ones(2)},
    )


@pytest.mark.parametrize("failing", RUN_FILES)
def test_a_run_folder_whose_write_fails_is_never_read_as_finished(
    failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    _fail_replace(monkeypatch, lambda p: p.name == failing)
    with pytest.raises(StoreError) as info:
        _save(run_dir)
    assert str(info.value) == f"could not write {run_dir / failing}: {DISK_FULL}"
    assert not store.is_done(run_dir) and not (run_dir / failing).exists()
    assert not _temp_files(tmp_path)
    with pytest.raises(StoreError, match="not a finished run"):
        store.load_run(run_dir)

    monkeypatch.undo()  # space again: the same write succeeds over the leftovers
    _save(run_dir)
    assert store.load_run(run_dir).final_state()["w"].tolist() == [1.0, 1.0]


def test_train_cli_disk_full_is_one_line_and_leaves_no_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _fail_replace(monkeypatch, lambda p: p.name == store.PREDICTIONS)
    argv = ["--quiet", "train", "--epochs", "1", "--train-limit", "100", "--test-limit", "50"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: could not write {out / store.PREDICTIONS}: {DISK_FULL}"
    assert not store.is_done(out) and not _temp_files(tmp_path)


def test_a_full_disk_while_writing_the_report_keeps_results_and_old_tables(
    study_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = store.report_dir(study_copy) / "similarity.csv"
    jobs_before = snapshot(store.jobs_dir(study_copy))
    old_table = table.read_bytes()
    _fail_replace(monkeypatch, lambda p: p == table)
    assert main(["--quiet", "report", str(study_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: could not write {table}: {DISK_FULL}"
    assert snapshot(store.jobs_dir(study_copy)) == jobs_before
    assert table.read_bytes() == old_table and not _temp_files(study_copy)


def test_a_job_whose_marker_and_error_cannot_be_written_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills while the 8-bit model's marker and then its error record are written."""
    run_dir = tmp_path / "study"
    args = run_args(write_config(tmp_path), run_dir, "--no-report")
    hits = _fail_replace(
        monkeypatch,
        lambda p: p.parent.name.startswith("quantize-") and p.name in (store.DONE, store.ERROR),
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    victim = hits[0].parent
    assert [h.name for h in hits] == [store.DONE, store.ERROR]
    assert f"could not write {victim / store.DONE}: {DISK_FULL}" in err
    assert f"the error could not be recorded: could not write {victim / store.ERROR}" in err
    assert not store.is_done(victim) and not (victim / store.ERROR).exists()
    assert not _temp_files(run_dir)
    states = {s.id: s.state for s in job_states(run_dir)}
    assert states[victim.name] == "pending" and list(states.values()).count("done") == N_JOBS - 1

    monkeypatch.undo()
    assert main(args) == 0
    assert f"{N_JOBS - 1} already done, 1 run now" in capsys.readouterr().out
    assert store.load_run(victim).predictions().shape[0] == 1
