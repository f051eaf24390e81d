"""Two runs on one study folder: the second is refused while the first lives; a dead one's
lock is taken over.

The first run is made to hang inside its first job (``FUNCSIM_FAULT=train.epoch:1:hang``), so
"while it runs" is certain rather than a race against a fast machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.reliability import (
    N_JOBS,
    PROCESS_TIMEOUT,
    run_args,
    snapshot,
    write_config,
)
from helpers.tiny_study import funcsim_cmd, subprocess_env

from funcsim import store
from funcsim._faults import ENV as FAULT_ENV
from funcsim.cli import main
from funcsim.errors import StoreError

POLL_SECONDS = 0.05


def _wait_until(condition, proc: subprocess.Popen[bytes], what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the first run ended (exit {proc.returncode}) before {what}:\n{err!r}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(POLL_SECONDS)


def test_a_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "study"
    args = run_args(write_config(tmp_path), run_dir)
    lock = store.StudyLock(run_dir)
    first = subprocess.Popen(
        funcsim_cmd(*args),
        env={**subprocess_env(), FAULT_ENV: "train.epoch:1:hang"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # It holds the lock and has recorded the study; it writes nothing more until it
        # finishes its first job, which it never does.
        _wait_until(
            lambda: (lock.holder() or {}).get("pid") == first.pid and store.is_study(run_dir),
            first,
            "it took the lock",
        )
        before = snapshot(run_dir)

        second = subprocess.run(
            funcsim_cmd(*args),
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert lines[0].startswith("error: ") and "is in use by another funcsim run" in lines[0]
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert "wait for it to finish" in lines[0]
        assert snapshot(run_dir) == before  # the refused run touched nothing

        assert main(["status", str(run_dir)]) == 0
        assert f"running now (pid {first.pid}" in capsys.readouterr().out
    finally:
        first.kill()
        first.communicate(timeout=PROCESS_TIMEOUT)
    assert first.returncode == -signal.SIGKILL

    # The dead run's lock is still there, shown as such, and does not block the next run.
    assert lock.holder() is not None
    assert main(["status", str(run_dir)]) == 0
    assert f"lock of a crashed run (pid {first.pid}" in capsys.readouterr().out
    assert main(args) == 0, capsys.readouterr().err
    assert f"{N_JOBS} jobs, 0 already done, {N_JOBS} run now" in capsys.readouterr().out
    assert lock.holder() is None


def _lock_of(pid: int, run_dir: Path, host: str | None = None) -> store.StudyLock:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": host or socket.gethostname(), "start": store._process_start(pid)}
    (run_dir / store.LOCK).write_text(json.dumps(info))
    return store.StudyLock(run_dir)


def test_a_lock_held_by_an_unreaped_killed_process_is_stale(tmp_path: Path) -> None:
    """A run killed while its parent has not yet waited for it is a zombie: dead."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock = _lock_of(child.pid, tmp_path)
        assert not lock.is_stale(lock.holder() or {})  # alive: the lock holds
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while store._process_state(child.pid) != "Z":  # dead, not yet reaped
            assert time.monotonic() < deadline
            time.sleep(POLL_SECONDS)
        assert lock.is_stale(lock.holder() or {})
        with lock:
            assert (lock.holder() or {}).get("pid") == os.getpid()
        assert lock.holder() is None
    finally:
        child.kill()
        child.wait()


def test_a_lock_from_another_host_names_the_file_to_remove(tmp_path: Path) -> None:
    lock = _lock_of(12345, tmp_path, host="elsewhere.example")
    with pytest.raises(StoreError) as info:
        lock.acquire()
    message = str(info.value)
    assert "pid 12345 on host elsewhere.example" in message
    assert f"if that run is gone, remove {tmp_path / store.LOCK}" in message
    assert json.loads((tmp_path / store.LOCK).read_text())["host"] == "elsewhere.example"
