"""``funcsim compress`` / ``funcsim distill`` on a finished ``funcsim train`` run."""

from __future__ import annotations

import numpy as np
import pytest

from funcsim.cli import main
from funcsim.data import load_dataset
from funcsim.store import load_run
from funcsim.train import build_model, load_state, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "base"
    argv = [
        "--quiet",
        "train",
        "--epochs",
        "2",
        "--train-limit",
        "300",
        "--test-limit",
        "80",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    return run


@pytest.mark.parametrize(
    ("args", "method", "key"),
    [
        (["--method", "quantize", "--bits", "16"], "float16", "storage_bytes"),
        (["--method", "quantize", "--bits", "8"], "int8_dynamic", "storage_bytes"),
        (["--method", "prune", "--amount", "0.5", "--scope", "all"], "l1_unstructured", "sparsity"),
        (["--method", "prune", "--amount", "0.3"], "l1_unstructured", "sparsity"),
    ],
)
def test_compress_writes_a_post_hoc_run(trained, tmp_path, args, method, key):
    out = tmp_path / "c"
    assert main(["--quiet", "compress", str(trained), *args, "--out", str(out)]) == 0
    run = load_run(out)
    assert run.predictions().shape == (1, 80, 10)
    assert run.config["method"] == method
    assert key in run.metrics
    if "--amount" in args:
        assert run.metrics["sparsity"] == pytest.approx(
            float(args[args.index("--amount") + 1]), abs=0.01
        )


def test_paper_protocol_prunes_everything_sound_only_weights(trained, tmp_path):
    for protocol, scope in [("paper", "all"), ("sound", "weights")]:
        out = tmp_path / protocol
        argv = [
            "--quiet",
            "compress",
            str(trained),
            "--method",
            "prune",
            "--amount",
            "0.2",
            "--protocol",
            protocol,
            "--out",
            str(out),
        ]
        assert main(argv) == 0
        assert load_run(out).config["options"]["scope"] == scope


def test_distill_records_a_student_trajectory_from_the_teachers_init(trained, tmp_path):
    out = tmp_path / "kd"
    argv = [
        "--quiet",
        "distill",
        str(trained),
        "--alpha",
        "0.1",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    run, teacher = load_run(out), load_run(trained)
    assert run.predictions().shape == (2, 80, 10)
    np.testing.assert_array_equal(run.predictions()[0], teacher.predictions()[0])
    assert run.config["train"]["optimizer"] == "adamax"  # the paper's student optimizer
    assert run.config["options"] == {"alpha": 0.1, "temperature": 3.0}
    data = load_dataset("digits", test_limit=80)
    student = load_state(build_model("lenet", data, 0), run.final_state(), "student")
    np.testing.assert_allclose(predict(student, data.x_test), run.predictions()[-1], atol=1e-5)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["compress", "{run}", "--method", "quantize", "--bits", "3"], "--bits must be one of"),
        (
            ["compress", "{run}", "--method", "prune", "--amount", "1.0"],
            "amount must lie in [0, 1)",
        ),
        (["compress", "{run}", "--method", "prune"], "--amount is required"),
        (["compress", "{run}", "--method", "zip"], "unknown method 'zip'"),
        (["compress", "{missing}", "--method", "prune", "--amount", "0.1"], "run folder not found"),
        (["distill", "{run}", "--alpha", "1.5"], "alpha must lie in [0, 1]"),
        (["distill", "{run}", "--temperature", "0"], "temperature must be > 0"),
        (["distill", "{run}", "--student", "vgg"], "unknown model 'vgg'"),
    ],
)
def test_bad_compress_input_is_one_line_exit_2(trained, tmp_path, capsys, argv, needle):
    argv = [a.format(run=trained, missing=tmp_path / "none") for a in argv]
    assert main(["--quiet", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
