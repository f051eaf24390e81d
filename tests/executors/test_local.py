"""The local executors: in-process and N spawned workers give identical results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_study import tiny_config

from funcsim import store
from funcsim.errors import ConfigError
from funcsim.executors import (
    InProcessExecutor,
    ProcessPoolJobExecutor,
    get_executor,
    threads_per_worker,
)
from funcsim.executors.local import available_cores
from funcsim.study import expand, run_study


def test_threads_are_shared_between_workers() -> None:
    cores = available_cores()
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores) == 1
    assert threads_per_worker(cores * 4) == 1


def test_get_executor_validates_its_options() -> None:
    with get_executor("local") as ex:
        assert isinstance(ex, InProcessExecutor) and ex.describe() == "local (1 process x 1 thread)"
    with get_executor("local", jobs=2) as ex:
        assert isinstance(ex, ProcessPoolJobExecutor) and ex.capacity == 2
    with pytest.raises(ConfigError, match="--jobs must be >= 1"):
        get_executor("local", jobs=0)
    with pytest.raises(ConfigError, match="--address applies to --executor ray"):
        get_executor("local", address="auto")
    with pytest.raises(ConfigError, match="unknown executor 'dask'; choose one of: local, ray"):
        get_executor("dask")
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        get_executor("local", threads=0)
    with get_executor("local", jobs=2, threads=3) as ex:
        assert ex.describe() == "local (2 processes x 3 threads)"


def test_in_process_threads_apply_to_the_job_only(tmp_path: Path) -> None:
    import torch

    cfg = tiny_config("seeds=[0]", "distill.alphas=[]", "quantize.bits=[]", "prune.amounts=[]")
    before = torch.get_num_threads()
    with get_executor("local", threads=2) as ex:
        assert ex.describe() == "local (1 process x 2 threads)"
        assert run_study(cfg, tmp_path, ex).ok
    assert torch.get_num_threads() == before


def test_two_worker_processes_match_the_in_process_run(tmp_path: Path) -> None:
    cfg = tiny_config("seeds=[0, 1]", "quantize.bits=[]", "prune.amounts=[0.5]")
    jobs = expand(cfg)
    with get_executor("local", jobs=1) as ex:
        serial = run_study(cfg, tmp_path / "serial", ex, jobs=jobs)
    with get_executor("local", jobs=2) as ex:
        parallel = run_study(cfg, tmp_path / "parallel", ex, jobs=jobs)
    assert serial.ok and parallel.ok and len(parallel.completed) == len(jobs) == 4
    for job in jobs:
        a = store.load_run(store.job_dir(tmp_path / "serial", job.id))
        b = store.load_run(store.job_dir(tmp_path / "parallel", job.id))
        np.testing.assert_array_equal(a.predictions(), b.predictions())
        assert a.config == b.config


@pytest.mark.parametrize("use_proc", [True, False])
def test_process_identity_ends_with_the_process(
    use_proc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from funcsim.executors import local

    if use_proc and not local._HAS_PROC:
        pytest.skip("no /proc here")
    monkeypatch.setattr(local, "_HAS_PROC", use_proc)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = local._process_identity(child.pid)
        assert alive is not None and alive == local._process_identity(child.pid)
        child.kill()
        child.wait()  # reaped: the pid is gone
        assert local._process_identity(child.pid) is None
    finally:
        child.kill()
    if use_proc:  # a zombie (exited, not yet reaped) counts as ended too
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])
        deadline = 100
        while "\nState:\tZ" not in Path(f"/proc/{zombie.pid}/status").read_text() and deadline:
            time.sleep(0.05)
            deadline -= 1
        assert local._process_identity(zombie.pid) is None
        zombie.wait()
