"""``funcsim compare A B``: prediction files or run folders; bad files give one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from funcsim import store
from funcsim.cli import main
from funcsim.similarity import compare_predictions

N, C, T = 200, 5, 4


def _probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    z = 3.0 * rng.normal(size=shape)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a": _probs(rng, (T, N, C)),
        "b": _probs(rng, (N, C)),
        "labels": rng.integers(0, C, size=N),
    }


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _run_folder(path: Path, predictions: np.ndarray, labels: np.ndarray) -> Path:
    if predictions.ndim == 2:
        predictions = predictions[None]
    return store.save_run(
        path, predictions=predictions, labels=labels, config={"kind": "train"}, metrics={}
    )


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_npy_files_print_the_metrics_table(
    tmp_path: Path, arrays: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    a = _save(tmp_path / "a.npy", arrays["a"])  # (T, N, C): the last checkpoint is used
    b = _save(tmp_path / "b.npy", arrays["b"])
    code, out, err = _run(["compare", str(a), str(b)], capsys)
    assert code == 0, err
    expected = compare_predictions(arrays["a"][-1], arrays["b"])
    assert "Disagreement" in out and "Jensen-Shannon" in out and "KL(A ‖ B)" in out
    assert f"{100 * expected['disagreement']:.2f} %" in out
    assert f"{expected['js_divergence']:.4f}" in out
    assert "Accuracy A" not in out and "--labels" in out
    assert f"{N} points, {C} classes" in out


def test_labels_option_adds_the_accuracies(
    tmp_path: Path, arrays: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    a = _save(tmp_path / "a.npy", arrays["a"][-1])
    b = _save(tmp_path / "b.npy", arrays["b"])
    labels = _save(tmp_path / "y.npy", arrays["labels"])
    code, out, _ = _run(["compare", str(a), str(b), "--labels", str(labels), "--json"], capsys)
    assert code == 0
    got = json.loads(out)
    expected = compare_predictions(arrays["a"][-1], arrays["b"], arrays["labels"])
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key


def test_run_folders_bring_their_labels(
    tmp_path: Path, arrays: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run_folder(tmp_path / "run-a", arrays["a"], arrays["labels"])
    b = _run_folder(tmp_path / "run-b", arrays["b"], arrays["labels"])
    code, out, err = _run(["compare", str(a), str(b)], capsys)
    assert code == 0, err
    expected = compare_predictions(arrays["a"][-1], arrays["b"], arrays["labels"])
    assert "Accuracy A" in out and "Accuracy B" in out
    assert f"{100 * expected['accuracy_base']:.2f} %" in out
    assert f"{expected['relative_accuracy_deviation']:+.2f} %" in out
    # a run folder against a plain file: the folder's labels are used
    code, out, _ = _run(["compare", str(a), str(_save(tmp_path / "b.npy", arrays["b"]))], capsys)
    assert code == 0 and "Accuracy B" in out
    # the same model twice: no disagreement
    code, out, _ = _run(["compare", str(a), str(a), "--json"], capsys)
    assert json.loads(out)["disagreement"] == 0.0


def _bad(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    b = arrays["b"].copy()
    if name == "nan":
        b[7, 2] = np.nan
    elif name == "negative":
        b[3] = [1.2, -0.2, 0.0, 0.0, 0.0]
    elif name == "not normalised":
        b[5] *= 2.0
    elif name == "shape":
        b = b[:50]
    elif name == "classes":
        b = np.full((N, C + 1), 1.0 / (C + 1), dtype=np.float32)
    elif name == "rank":
        b = b[None, None]
    return b


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nan", "NaN"),
        ("negative", "negative"),
        ("not normalised", "sums to"),
        ("shape", "does not match"),
        ("classes", "does not match"),
        ("rank", "expected predictions of shape"),
    ],
)
def test_bad_prediction_files_are_one_line_errors(
    tmp_path: Path,
    arrays: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
    name: str,
    message: str,
) -> None:
    a = _save(tmp_path / "a.npy", arrays["a"])
    b = _save(tmp_path / "b.npy", _bad(name, arrays))
    code, out, err = _run(["compare", str(a), str(b)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and message in lines[0] and "b.npy" in lines[0]
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("what", ["missing", "pickle", "not npy", "labels differ", "bad labels"])
def test_unreadable_inputs_are_one_line_errors(
    tmp_path: Path,
    arrays: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
    what: str,
) -> None:
    a = _run_folder(tmp_path / "run-a", arrays["a"], arrays["labels"])
    extra: list[str] = []
    if what == "missing":
        b = tmp_path / "missing.npy"
    elif what == "pickle":
        b = tmp_path / "objects.npy"
        np.save(b, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif what == "not npy":
        b = tmp_path / "text.npy"
        b.write_text("not an array")
    elif what == "labels differ":
        b = _run_folder(tmp_path / "run-b", arrays["b"], (arrays["labels"] + 1) % C)
    else:
        b = _save(tmp_path / "b.npy", arrays["b"])
        extra = ["--labels", str(_save(tmp_path / "y.npy", np.full(N, C + 3)))]
    code, _, err = _run(["compare", str(a), str(b), *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
