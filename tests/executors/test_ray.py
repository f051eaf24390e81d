"""The Ray executor on a real local Ray cluster: same predictions as the local executor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_study import tiny_config

from funcsim import store
from funcsim.executors import get_executor
from funcsim.study import expand, job_states, run_study

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray


STARTS = 2
"""Ray gives its raylet a fixed 30 s to start; on an overloaded machine that can pass."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    for attempt in range(1, STARTS + 1):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on timeout
            ray.shutdown()
            if attempt == STARTS:
                pytest.skip(f"a local Ray cluster did not start ({err})")
    yield
    ray.shutdown()


def test_ray_run_matches_the_local_executor(cluster: None, tmp_path: Path) -> None:
    cfg = tiny_config()
    jobs = expand(cfg)
    with get_executor("local", jobs=1) as ex:
        local = run_study(cfg, tmp_path / "local", ex, jobs=jobs)
    with get_executor("ray") as ex:
        assert ex.describe() == "ray (2 CPUs, 0 GPUs)"
        remote = run_study(cfg, tmp_path / "ray", ex, jobs=jobs)
    assert ray.is_initialized()  # the executor leaves a cluster it did not start running
    assert local.ok and remote.ok and len(remote.completed) == len(jobs)
    for job in jobs:
        a = store.load_run(store.job_dir(tmp_path / "local", job.id))
        b = store.load_run(store.job_dir(tmp_path / "ray", job.id))
        np.testing.assert_array_equal(a.predictions(), b.predictions(), err_msg=job.id)
        np.testing.assert_array_equal(a.labels(), b.labels())
        assert a.config == b.config
        if job.kind != "compress":
            for key, value in a.final_state().items():
                assert np.array_equal(value.numpy(), b.final_state()[key].numpy())


def test_ray_failures_are_recorded_by_the_driver(cluster: None, tmp_path: Path) -> None:
    cfg = tiny_config("seeds=[0]", "distill.alphas=[]", "quantize.bits=[16]", "prune.amounts=[]")
    base, quantized = expand(cfg)
    params = {**base.params, "train": {**base.params["train"], "optimizer": "sgd", "lr": 1e6}}
    diverging = type(base)(id=base.id, kind=base.kind, params=params, deps=base.deps)
    with get_executor("ray") as ex:
        summary = run_study(cfg, tmp_path, ex, jobs=[diverging, quantized])
    assert list(summary.failed) == [base.id] and summary.skipped == [quantized.id]
    error = store.read_error(store.job_dir(tmp_path, base.id))
    assert error is not None and "at epoch 1" in error["message"]
    assert [s.state for s in job_states(tmp_path)] == ["failed", "blocked"]


def test_funcsim_run_on_ray_from_the_command_line(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.tiny_study import tiny_args

    from funcsim.cli import main

    out = tmp_path / "study"
    args = ["--quiet", "run", "--no-report", "--executor", "ray", "--out", str(out), *tiny_args()]
    assert main(args) == 0, capsys.readouterr().err
    assert "7 run now" in capsys.readouterr().out
    assert {s.state for s in job_states(out)} == {"done"}
    assert main([*args, "--address", "auto"]) == 0  # already done: nothing is submitted
    assert "7 already done, 0 run now" in capsys.readouterr().out


def test_tasks_ask_for_a_gpu_when_the_job_trains_on_cuda(cluster: None) -> None:
    base = expand(tiny_config("train.device=cuda", "seeds=[0]"))[0]
    auto = expand(tiny_config("train.device=auto", "seeds=[0]"))[0]
    cpu = expand(tiny_config("train.device=cpu", "seeds=[0]"))[0]
    with get_executor("ray") as ex:
        assert ex._gpus_per_task(base) == 1.0  # type: ignore[attr-defined]
        assert ex._gpus_per_task(auto) == 0.0  # this cluster has no GPU  # type: ignore[attr-defined]
        assert ex._gpus_per_task(cpu) == 0.0  # type: ignore[attr-defined]
