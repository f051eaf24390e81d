"""`--jobs N` workers are forked from a server that imported torch once, and behave as spawned.

Real processes throughout: the server, its forked workers, a driver killed with SIGKILL.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.tiny_study import tiny_config

from funcsim._worker_server import PRELOAD, start_early, start_method, worker_context
from funcsim.executors import get_executor
from funcsim.study import expand, run_study

pytestmark = pytest.mark.skipif(
    start_method() != "forkserver", reason="the fork server exists where the OS can fork"
)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_workers_are_forks_of_a_server_that_imported_torch() -> None:
    start_early()
    with cf.ProcessPoolExecutor(1, mp_context=worker_context()) as pool:
        server = pool.submit(os.getppid).result()
    assert server != os.getpid()  # the parent is the server, not this process
    # The server mapped libtorch before it forked: workers start with torch imported.
    assert "libtorch" in Path(f"/proc/{server}/maps").read_text()


def test_workers_get_the_environment_of_the_moment_the_pool_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_early()  # the server's environment is frozen now, without the fault below
    monkeypatch.setenv("FUNCSIM_FAULT", "train.epoch:1")  # SIGKILL after the first epoch
    cfg = tiny_config("seeds=[0]", "distill.alphas=[]", "quantize.bits=[]", "prune.amounts=[]")
    with get_executor("local", jobs=2) as ex:
        summary = run_study(cfg, tmp_path, ex, jobs=expand(cfg))
    # Without the driver's environment the worker would train to the end.
    assert not summary.ok and list(summary.failed) == [expand(cfg)[0].id]


DRIVER = """
import os, sys, time
from funcsim.executors import get_executor
ex = get_executor("local", jobs=2)
pool = ex._new_pool()
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 120)
time.sleep(120)
"""


def test_a_worker_exits_when_its_driver_is_killed() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert driver.stdout is not None
        worker = int(driver.stdout.readline())
        assert _alive(worker)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "an orphaned worker kept running"
    finally:
        driver.kill()


SERVER_TEARDOWN_DRIVER = """
import os
import funcsim._worker_server as server
server.PRELOAD = ("helpers.teardown_marker", *server.PRELOAD)  # registers its handler first
from funcsim.executors import get_executor
ex = get_executor("local", jobs=2)
pool = ex._new_pool()
print(pool.submit(os.getppid).result(), flush=True)  # the server, all of PRELOAD imported
pool.shutdown()
"""


def test_the_server_exits_without_the_interpreter_teardown(tmp_path: Path) -> None:
    # The server's last preload registers an exit handler that runs before every other (and
    # before the teardown of torch's objects) and ends the process: a handler registered
    # earlier, as torch's are, must never run, and nothing may be left of the server.
    marker = tmp_path / "teardown-ran"
    tests_dir = Path(__file__).resolve().parents[1]
    env = os.environ.copy()
    env["FUNCSIM_TEST_TEARDOWN_MARKER"] = str(marker)
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir), env.get("PYTHONPATH", "")])
    driver = subprocess.run(
        [sys.executable, "-c", SERVER_TEARDOWN_DRIVER],
        capture_output=True,  # returns once every holder of the pipes, the server too, is gone
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    server = int(driver.stdout.split()[0])
    deadline = time.monotonic() + 30
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server)
    assert not marker.exists(), "the server ran the interpreter's teardown"
    assert PRELOAD[-1] == "funcsim._server_exit"
