"""The study layout of the store: safe job ids, the lock, study.json, error records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from funcsim import store
from funcsim.errors import StoreError


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "../x", "/abs", "a b", "", "x\x00", "é"])
def test_unsafe_job_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid job id"):
        store.job_dir(tmp_path, bad)


def test_job_dirs_stay_inside_the_study(tmp_path: Path) -> None:
    path = store.job_dir(tmp_path, "train-digits-lenet-s0-0123abcd")
    assert path == (tmp_path / "jobs" / "train-digits-lenet-s0-0123abcd").resolve()
    # A symlinked job folder pointing elsewhere resolves outside jobs/ and is refused.
    (tmp_path / "jobs").mkdir()
    os.symlink(tmp_path.parent, tmp_path / "jobs" / "escape")
    with pytest.raises(StoreError, match="outside"):
        store.job_dir(tmp_path, "escape")


def test_study_json_round_trip_and_not_a_study(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such run folder"):
        store.read_study(tmp_path / "missing")
    with pytest.raises(StoreError, match="not a funcsim study"):
        store.read_study(tmp_path)
    store.write_study(tmp_path, {"name": "x"}, [{"id": "a"}])
    data = store.read_study(tmp_path)
    assert data["config"] == {"name": "x"} and data["jobs"] == [{"id": "a"}]
    (tmp_path / store.STUDY).write_text("[1, 2]")
    with pytest.raises(StoreError, match="not a study file"):
        store.read_study(tmp_path)


def test_error_record_and_clear(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "j"
    store.write_error(job, "it broke", "Traceback ...", label="x")
    assert store.read_error(job)["message"] == "it broke"  # type: ignore[index]
    assert not store.is_done(job)
    (job / ".predictions.npy.abc.tmp").write_bytes(b"half")
    store.clear_job(job)
    assert store.read_error(job) is None
    assert not list(job.glob(".*.tmp"))


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    store.write_json(tmp_path / "x.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_lock_refuses_a_second_run_and_releases(tmp_path: Path) -> None:
    with store.StudyLock(tmp_path) as lock:
        info = lock.holder()
        assert info is not None and info["pid"] == os.getpid()
        with pytest.raises(StoreError, match="in use by another funcsim run"):
            store.StudyLock(tmp_path).acquire()
    assert not (tmp_path / store.LOCK).exists()
    with store.StudyLock(tmp_path):  # free again
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    payload = {"pid": int(dead.stdout), "host": socket.gethostname(), "start": "1"}
    (tmp_path / store.LOCK).write_text(json.dumps(payload))
    with store.StudyLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()  # type: ignore[index]


def test_reused_pid_is_stale(tmp_path: Path) -> None:
    # Our own pid, but a different process start time: the holder died and the pid was reused.
    payload = {"pid": os.getpid(), "host": socket.gethostname(), "start": "0"}
    (tmp_path / store.LOCK).write_text(json.dumps(payload))
    with store.StudyLock(tmp_path):
        pass


def test_lock_from_another_host_is_not_broken(tmp_path: Path) -> None:
    payload = {"pid": 1, "host": "some-other-host", "start": None}
    (tmp_path / store.LOCK).write_text(json.dumps(payload))
    with pytest.raises(StoreError, match="if that run is gone, remove"):
        store.StudyLock(tmp_path).acquire()
