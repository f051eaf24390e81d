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

from funcsim._worker_server import start_early, start_method, worker_context
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
