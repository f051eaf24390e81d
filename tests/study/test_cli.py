"""``funcsim run``, ``funcsim status`` and ``funcsim presets``: exit codes and messages."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from helpers.tiny_study import tiny_args

from funcsim import store
from funcsim.cli import main
from funcsim.config import list_presets


def test_presets_lists_every_preset_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name in list_presets():
        assert name in text
    assert "Table 1" in text and "digits" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
        (
            ["--set", "distill.alphas=[1.5]"],
            "distill.alphas: alpha must lie in [0, 1], got 1.5",
        ),
        (["--set", "prune.amounts=[1.0]"], "pruning amount must lie in [0, 1)"),
        (["--set", "quantize.bits=[3]"], "bits must be one of 16, 8, 4"),
        (["--set", "seeds=[]"], "seeds: List should have at least 1 item"),
        (["--set", "seeds=[1, 1]"], "seeds must be distinct"),
        (["--set", "trian.epochs=3"], "trian: unknown key"),
        (["--set", "datasets=[imagenet]"], "datasets.0: unknown dataset 'imagenet'"),
        (["--set", "archs=[vgg]"], "archs.0: unknown model 'vgg'"),
        (["--set", "protocol=fast"], "protocol: must be 'paper' or 'sound'"),
        (["no-such-preset"], "no such file and no such preset"),
        (["--executor", "spark"], "unknown executor 'spark'"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--device", "tpu"], "train.device"),
    ],
)
def test_bad_study_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "study"
    assert main(["--quiet", "run", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_status_of_a_folder_that_is_not_a_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a funcsim study" in err and len(err.strip().splitlines()) == 1
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_second_concurrent_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    out.mkdir()
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": store._process_start(os.getpid()),
    }
    (out / store.LOCK).write_text(json.dumps(holder))
    assert main(["--quiet", "run", "--out", str(out), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "is in use by another funcsim run" in err and f"pid {os.getpid()}" in err
    assert sorted(p.name for p in out.iterdir()) == [store.LOCK]


def test_failures_exit_1_listing_them_and_status_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    diverge = ["--set", "train.optimizer=sgd", "--set", "train.lr=1e6", "--set", "seeds=[0]"]
    assert main(["--quiet", "run", "--no-report", "--out", str(out), *tiny_args(), *diverge]) == 1
    err = capsys.readouterr().err
    assert "failed: train-digits-lenet-s0-" in err and "at epoch 1 of 2" in err
    assert err.count("skipped:") == 5  # 1 student, 2 quantized, 2 pruned
    assert "1 job(s) failed" in err
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 failed, 5 blocked" in text and "training loss became nan" in text


def test_a_folder_holding_other_things_is_not_made_a_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--quiet", "run", "--out", str(tmp_path), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "not empty and not a funcsim study (holds notes.txt)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_changed_setting_adds_jobs_and_keeps_the_old_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    small = ["--set", "seeds=[0]", "--set", "distill.alphas=[]", "--set", "quantize.bits=[]"]
    args = ["--quiet", "run", "--no-report", "--out", str(out), *tiny_args(), *small]
    assert main([*args, "--set", "prune.amounts=[0.5]"]) == 0
    assert "2 jobs, 0 already done, 2 run now" in capsys.readouterr().out
    assert main([*args, "--set", "prune.amounts=[0.3]"]) == 0
    assert "2 jobs, 1 already done, 1 run now" in capsys.readouterr().out
    assert len(list((out / store.JOBS).iterdir())) == 3
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 jobs: 2 done" in text and "1 job folder(s) from earlier settings kept" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    assert main(["--quiet", "run", "--device", "cuda", "--out", str(out), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' requested but no CUDA GPU is available" in err
    assert not out.exists()
