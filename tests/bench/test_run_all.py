"""bench/run_all.py: the parts that need no timing (store sizes, the table, the summary
line it parses). The benchmarks themselves are run by hand, never timed in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run_all():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("run_all", None)
    sys.path.remove(str(BENCH))


def test_storage_is_computed_from_the_cifar100_preset(run_all, tmp_path: Path) -> None:
    rows, figures = run_all.bench_storage(tmp_path)
    assert figures["bytes_per_probability"] == pytest.approx(4.0, abs=1e-3)  # float32 .npy
    # 3 seeds and 3 students x 26 sets + 2 quantized + 5 pruned, for each of the 3 archs
    assert figures["sets_per_arch"] == {"lenet": 163, "resnet50": 163, "mobilenet": 163}
    assert "1.96 GB" in rows[1].value  # 3 x 163 x 10,000 x 100 x 4 bytes


def test_table_has_one_row_per_figure(run_all) -> None:
    rows = [run_all.Row("a", "1.00x", ">= 1", "yes"), run_all.Row("b", "2", "", "")]
    lines = run_all.table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| figure")
    assert all(line.count("|") == 5 for line in lines)


def test_study_summary_line_is_parsed(run_all) -> None:
    line = "13 jobs, 0 already done, 13 run now in 41.5s on local (2 processes x 1 threads)"
    m = run_all._SUMMARY.search("report: x\n" + line + "\n")
    assert m and float(m.group(2)) == 41.5 and m.group(3).startswith("local (2")
    assert np.isfinite(float(m.group(2)))


def test_only_runs_exactly_the_named_parts(run_all) -> None:
    assert run_all.select_parts(quick=False, full_study=False, only="full_study") == ["full_study"]
    assert run_all.select_parts(quick=True, full_study=False, only="scaling,study") == [
        "study",
        "scaling",
    ]
    assert "full_study" not in run_all.select_parts(quick=False, full_study=False, only=None)
    assert "scaling" not in run_all.select_parts(quick=True, full_study=True, only=None)
    with pytest.raises(ValueError, match="unknown fast; choose from train, kernels, study"):
        run_all.select_parts(quick=False, full_study=False, only="study,fast")


def test_the_hand_written_baseline_keeps_the_papers_layer_order(run_all) -> None:
    """bench_train's plain loop must not inherit fit's pool-before-ReLU training order."""
    import torch
    from torch import nn

    from funcsim.data import load_dataset
    from funcsim.train import build_model

    bench_train = importlib.import_module("bench_train")  # bench/ is on sys.path (fixture)
    data = load_dataset("digits")
    model = bench_train.hand_written_lenet(data).train()
    assert [type(m) for m in model][:6] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d] * 2
    x = data.x_train[:8]
    assert torch.equal(model(x), build_model("lenet", data, seed=0)(x))
