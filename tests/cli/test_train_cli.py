"""``funcsim train`` / ``funcsim list`` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funcsim.cli import main
from funcsim.store import load_run


def test_train_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "--quiet",
            "train",
            "--dataset",
            "digits",
            "--arch",
            "lenet",
            "--seed",
            "0",
            "--epochs",
            "2",
            "--train-limit",
            "300",
            "--test-limit",
            "90",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    for name in [
        "init.safetensors",
        "final.safetensors",
        "predictions.npy",
        "labels.npy",
        "metrics.json",
        "config.json",
        "done",
    ]:
        assert (out / name).is_file(), name
    run = load_run(out)
    assert run.predictions().shape == (3, 90, 10)
    assert run.config["train"]["epochs"] == 2 and run.config["arch"] == "lenet"
    assert len(run.metrics["test_accuracy"]) == 3
    assert set(run.init_state()) == set(run.final_state())
    assert "test accuracy" in capsys.readouterr().out
    np.testing.assert_array_equal(run.labels().shape, (90,))
    assert json.loads((out / "config.json").read_text())["kind"] == "train"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--arch", "nope"], "unknown model 'nope'"),
        (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--lr", "-1"], "lr"),
        (["train", "--optimizer", "rmsprop"], "optimizer"),
        (["list", "things"], "cannot list"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    code = main(["--quiet", *argv, *(["--out", str(tmp_path / "x")] if argv[0] == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("what", ["datasets", "models"])
def test_list(what, capsys):
    assert main(["list", what]) == 0
    names = capsys.readouterr().out.split()
    assert ("digits" in names) if what == "datasets" else ("lenet" in names)
