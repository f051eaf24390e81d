"""The bad-input catalogue (docs/errors.md): every case is one line, exit 2, nothing changed.

Each :class:`Case` is a command line with placeholders, an optional ``make`` that puts the
bad input on disk, and the fragments its one-line error must hold: what is wrong (and where)
and what is allowed. Every case also checks that the finished study and the trained run it
may point at are byte-for-byte and mtime-for-mtime unchanged, that no output folder was
created, and that no code hidden in a file ran. Placeholders: ``{config}`` (the tiny study's
YAML), ``{study}`` (a finished study), ``{run}`` (a finished trained run), ``{tmp}`` (this
case's scratch folder) and ``{out}`` (an output folder that must not appear).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.formats import (
    cifar_arrays,
    idx_bytes,
    malicious_pickle,
    write_bytes,
    write_cifar10,
    write_cifar_batch,
    write_mnist,
)
from helpers.reliability import snapshot, write_config
from safetensors.torch import load, save_file

from funcsim import store
from funcsim.cli import main
from funcsim.models import get_model

PWNED = "pwned"
"""A file that a hostile input would create in the case's scratch folder if it ran."""


@dataclass(frozen=True)
class Case:
    argv: str
    """The command line (split on spaces) with placeholders."""
    expect: tuple[str, ...]
    """Fragments of the error line (placeholders allowed)."""
    make: Callable[[Path, Path], None] | None = None
    """``make(tmp, run)`` writes the bad input under ``tmp`` (``run``: a trained run)."""


# --------------------------------------------------------------------------- bad inputs


def _mnist(tmp: Path, role: str, payload: bytes) -> None:
    written = write_mnist(tmp / "data" / "MNIST" / "raw", n_train=10, n_test=5)
    write_bytes(written.paths[role], payload)


def _labels(n: int, bad_at: int | None = None) -> bytes:
    labels = np.arange(n, dtype=np.uint8) % 10
    if bad_at is not None:
        labels[bad_at] = 10
    return idx_bytes(labels)


def _cifar_missing_labels(tmp: Path, run: Path) -> None:
    path = write_cifar10(tmp / "data").paths["test_batch"]
    data, labels = cifar_arrays(10, 10)
    write_cifar_batch(path, data, labels, drop=(b"labels",))


def _cifar_malicious(tmp: Path, run: Path) -> None:
    path = write_cifar10(tmp / "data").paths["test_batch"]
    write_bytes(path, malicious_pickle(tmp / PWNED))


def _damaged_run(damage: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    """A copy of the trained run at ``tmp/run`` with ``damage(final.safetensors)`` applied."""

    def make(tmp: Path, run: Path) -> None:
        copy = Path(shutil.copytree(run, tmp / "run"))
        damage(copy / store.FINAL_WEIGHTS)

    return make


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load(path.read_bytes())  # not load_file: it maps the file we are about to rewrite


def _pickled_weights(path: Path) -> None:
    torch.save(_state(path), path)  # a torch pickle, as torch.save writes it


def _drop_a_key(path: Path) -> None:
    state = _state(path)
    del state["classifier.1.bias"]
    save_file(state, path)


def _model_weights(arch: str, classes: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        model = get_model(arch, in_channels=1, num_classes=classes, image_size=8)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)

    return write


def _predictions(tmp: Path, make_bad: Callable[[np.ndarray], np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    good = rng.dirichlet(np.ones(10), size=20).astype(np.float32)
    np.save(tmp / "a.npy", good)
    np.save(tmp / "b.npy", make_bad(good.copy()))


def _with_nan(p: np.ndarray) -> np.ndarray:
    p[3, 2] = np.nan
    return p


def _with_negative(p: np.ndarray) -> np.ndarray:
    p[0, 0], p[0, 1] = -0.2, p[0, 1] + p[0, 0] + 0.2
    return p


def _broken_study_json(tmp: Path, run: Path) -> None:
    (tmp / "s").mkdir()
    (tmp / "s" / store.STUDY).write_text('{"funcsim_study": 1, "config": ')


def _bad_yaml(tmp: Path, run: Path) -> None:
    (tmp / "bad.yaml").write_text("train: {epochs: 2\nseeds: [0, 1\n")


RUN = "--quiet run {config} --out {study} --jobs 1"
TRAIN = "--quiet train --dataset {dataset} --data-dir {tmp}/data --epochs 1 --out {out}"
COMPRESS = "--quiet compress {tmp}/run --method quantize --bits 8 --out {out}"
COMPARE = "--quiet compare {tmp}/a.npy {tmp}/b.npy"

CASES: dict[str, Case] = {
    # --- study configs ---------------------------------------------------------------------
    "config-unknown-key": Case(
        f"{RUN} --set colour=red", ("colour: unknown key", "allowed keys: name, description")
    ),
    "config-unknown-nested-key": Case(
        f"{RUN} --set train.epoch=3",
        ("train.epoch: unknown key", "did you mean 'epochs'?", "allowed keys: epochs"),
    ),
    "config-wrong-type": Case(
        f"{RUN} --set train.epochs=three", ("train.epochs", "valid integer", "got 'three'")
    ),
    "config-wrong-type-section": Case(
        f"{RUN} --set train=5", ("train: Input should be a valid dictionary", "got 5")
    ),
    "config-zero-epochs": Case(
        f"{RUN} --set train.epochs=0", ("train.epochs", "greater than or equal to 1", "got 0")
    ),
    "config-negative-epochs": Case(
        f"{RUN} --set train.epochs=-5", ("train.epochs", "greater than or equal to 1", "got -5")
    ),
    "config-zero-lr": Case(f"{RUN} --set train.lr=0", ("train.lr", "greater than 0", "got 0")),
    "config-alpha-above-1": Case(
        f"{RUN} --set distill.alphas=[0.5,1.5]", ("distill.alphas", "[0, 1]", "got 1.5")
    ),
    "config-alpha-negative": Case(
        f"{RUN} --set distill.alphas=[-0.1]", ("distill.alphas", "[0, 1]", "got -0.1")
    ),
    "config-temperature-zero": Case(
        f"{RUN} --set distill.temperature=0", ("distill.temperature", "greater than 0", "got 0")
    ),
    "config-temperature-negative": Case(
        f"{RUN} --set distill.temperature=-3", ("distill.temperature", "greater than 0")
    ),
    "config-prune-amount-1": Case(
        f"{RUN} --set prune.amounts=[1.0]", ("prune.amounts", "[0, 1)", "got 1.0")
    ),
    "config-prune-amount-above-1": Case(
        f"{RUN} --set prune.amounts=[0.5,2]", ("prune.amounts", "[0, 1)", "got 2")
    ),
    "config-unsupported-bits": Case(
        f"{RUN} --set quantize.bits=[3]", ("quantize.bits", "one of 16, 8, 4", "got 3")
    ),
    "config-unknown-dataset": Case(
        f"{RUN} --set datasets=[imagenet]",
        ("datasets.0: unknown dataset 'imagenet'", "choose one of: cifar10", "digits"),
    ),
    "config-unknown-arch": Case(
        f"{RUN} --set archs=[vgg16]", ("archs.0: unknown model 'vgg16'", "choose one of: lenet")
    ),
    "config-unknown-method": Case(
        f"{RUN} --set quantize.extra=[int3]",
        ("quantize.extra.0: unknown compression method 'int3'", "choose one of: bfloat16"),
    ),
    "config-unknown-student": Case(
        f"{RUN} --set distill.students=[transformer]",
        ("distill.students.0: unknown student", "'transformer'", "choose one of: lenet"),
    ),
    "config-duplicate-student": Case(
        f"{RUN} --set distill.students=[lenet5,lenet5]",
        ("distill.students", "entries must be distinct", "'lenet5' appears twice"),
    ),
    "config-unknown-protocol": Case(
        f"{RUN} --set protocol=fast", ("protocol: must be 'paper' or 'sound'", "got 'fast'")
    ),
    "config-unknown-optimizer": Case(
        f"{RUN} --set train.optimizer=rmsprop",
        ("train.optimizer: must be 'adam', 'adamax' or 'sgd'", "got 'rmsprop'"),
    ),
    "config-empty-seeds": Case(f"{RUN} --set seeds=[]", ("seeds", "at least 1 item")),
    "config-duplicate-seeds": Case(
        f"{RUN} --set seeds=[0,0]", ("seeds must be distinct", "got [0, 0]")
    ),
    "config-negative-seed": Case(f"{RUN} --set seeds=[0,-1]", ("seeds must be >= 0",)),
    "config-name-escapes": Case(
        f"{RUN} --set name=../x", ("name: must be 1-100 letters, digits", "got '../x'")
    ),
    "config-name-parent": Case(f"{RUN} --set name=..", ("not '.' or '..'", "got '..'")),
    "config-zero-limit": Case(
        f"{RUN} --set data.test_limit=0", ("data.test_limit", "greater than or equal to 1")
    ),
    "config-bad-yaml": Case(
        "--quiet run {tmp}/bad.yaml --out {study}",
        ("{tmp}/bad.yaml: not valid YAML at line 2, column 6",),
        _bad_yaml,
    ),
    "config-missing-file": Case(
        "--quiet run {tmp}/nope.yaml --out {study}",
        ("'{tmp}/nope.yaml': no such file and no such preset", "presets: cifar10"),
    ),
    "config-set-without-value": Case(
        f"{RUN} --set train.epochs", ("--set 'train.epochs': expected KEY=VALUE",)
    ),
    "cli-jobs-zero": Case(f"{RUN} --jobs 0", ("--jobs must be >= 1, got 0",)),
    "cli-unknown-executor": Case(
        f"{RUN} --executor spark", ("unknown executor 'spark'", "choose one of: local, ray")
    ),
    # --- data files (funcsim train) ----------------------------------------------------------
    "data-missing-files": Case(
        TRAIN.replace("{dataset}", "mnist"),
        ("mnist files not found in {tmp}/data/MNIST/raw", "train-images-idx3-ubyte", "--download"),
        lambda tmp, run: (tmp / "data").mkdir(),
    ),
    "data-truncated-idx": Case(
        TRAIN.replace("{dataset}", "mnist"),
        ("train-images-idx3-ubyte.gz: truncated IDX file", "found 7839", "replace the bad file"),
        lambda tmp, run: _mnist(
            tmp, "train_images", idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-1]
        ),
    ),
    "data-wrong-magic": Case(
        TRAIN.replace("{dataset}", "mnist"),
        ("t10k-labels-idx1-ubyte.gz: wrong magic number 0x00010801",),
        lambda tmp, run: _mnist(
            tmp, "test_labels", idx_bytes(np.zeros(5, np.uint8), magic=b"\x00\x01\x08\x01")
        ),
    ),
    "data-count-mismatch": Case(
        TRAIN.replace("{dataset}", "mnist"),
        ("holds 10 images but", "train-labels-idx1-ubyte.gz holds 9 labels"),
        lambda tmp, run: _mnist(tmp, "train_labels", _labels(9)),
    ),
    "data-label-out-of-range": Case(
        TRAIN.replace("{dataset}", "mnist"),
        ("t10k-labels-idx1-ubyte.gz", "label 10 at index 3 is out of range, allowed 0..9"),
        lambda tmp, run: _mnist(tmp, "test_labels", _labels(5, bad_at=3)),
    ),
    "data-cifar-missing-keys": Case(
        TRAIN.replace("{dataset}", "cifar10"),
        ("test_batch: CIFAR batch lacks key(s) b'labels'", "expected b'data'"),
        _cifar_missing_labels,
    ),
    "data-cifar-pickle-payload": Case(
        TRAIN.replace("{dataset}", "cifar10"),
        ("test_batch: refused to unpickle posix.system", "nothing was executed"),
        _cifar_malicious,
    ),
    # --- weights (funcsim compress / distill on a damaged copy of a trained run) -----------
    "weights-missing-file": Case(
        COMPRESS,
        ("{tmp}/run/final.safetensors: weights file not found",),
        _damaged_run(Path.unlink),
    ),
    "weights-truncated": Case(
        COMPRESS,
        ("{tmp}/run/final.safetensors: not a valid safetensors file",),
        _damaged_run(_truncate),
    ),
    "weights-not-safetensors": Case(
        COMPRESS,
        ("{tmp}/run/final.safetensors: not a valid safetensors file",),
        _damaged_run(_pickled_weights),
    ),
    "weights-missing-key": Case(
        COMPRESS,
        ("final.safetensors: weights do not fit", "Missing key(s)", "classifier.1.bias"),
        _damaged_run(_drop_a_key),
    ),
    "weights-wrong-architecture": Case(
        COMPRESS,
        ("final.safetensors: weights do not fit", "size mismatch", "expected the weights of a"),
        _damaged_run(_model_weights("lenet5", 10)),
    ),
    "weights-teacher-class-count": Case(
        "--quiet distill {tmp}/run --student lenet5 --epochs 1 --out {out}",
        ("final.safetensors: weights do not fit", "size mismatch for classifier.3.weight"),
        _damaged_run(_model_weights("lenet", 3)),
    ),
    # --- prediction files (funcsim compare) --------------------------------------------------
    "predictions-shape-mismatch": Case(
        COMPARE,
        ("{tmp}/b.npy: shape (20, 9) does not match (20, 10)",),
        lambda tmp, run: _predictions(tmp, lambda p: p[:, :9] / p[:, :9].sum(1, keepdims=True)),
    ),
    "predictions-nan": Case(
        COMPARE,
        ("{tmp}/b.npy: row 3 holds NaN or infinite values", "all must be finite"),
        lambda tmp, run: _predictions(tmp, _with_nan),
    ),
    "predictions-rows-not-summing-to-1": Case(
        COMPARE,
        ("{tmp}/b.npy: row 0 sums to 1.5", "each row must sum to 1"),
        lambda tmp, run: _predictions(tmp, lambda p: 1.5 * p),
    ),
    "predictions-negative": Case(
        COMPARE,
        ("{tmp}/b.npy: row 0 holds negative values", "must be >= 0"),
        lambda tmp, run: _predictions(tmp, _with_negative),
    ),
    "predictions-pickled-object-array": Case(
        COMPARE,
        ("{tmp}/b.npy: not a readable .npy array",),
        lambda tmp, run: (
            np.save(tmp / "a.npy", np.full((2, 2), 0.5, np.float32)),
            np.save(tmp / "b.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True),
        ),
    ),
    "predictions-missing": Case(COMPARE, ("{tmp}/a.npy: no such file or run folder",)),
    # --- folders -----------------------------------------------------------------------------
    "cli-status-missing-dir": Case("status {tmp}/missing", ("{tmp}/missing: no such run folder",)),
    "cli-status-not-a-study": Case(
        "status {run}", ("not a funcsim study (no study.json)", "output folder of `funcsim run`")
    ),
    "cli-status-broken-study-json": Case(
        "status {tmp}/s", ("{tmp}/s/study.json: not valid JSON",), _broken_study_json
    ),
    "cli-report-missing-dir": Case("--quiet report {tmp}/missing", ("no such run folder",)),
    "cli-report-not-a-study": Case(
        "--quiet report {run}", ("not a funcsim study", "expected the output folder")
    ),
    "cli-compress-missing-run": Case(
        "--quiet compress {tmp}/missing --method prune --amount 0.5",
        ("{tmp}/missing: run folder not found",),
    ),
    "cli-compress-unfinished-run": Case(
        "--quiet compress {tmp} --method prune --amount 0.5",
        ("not a finished run (no 'done' marker)", "funcsim train"),
    ),
    "cli-compress-unknown-method": Case(
        "--quiet compress {run} --method zip --out {out}",
        ("unknown method 'zip'", "choose one of: quantize, prune"),
    ),
    "cli-compress-bad-amount": Case(
        "--quiet compress {run} --method prune --amount 1.5 --out {out}",
        ("amount must lie in [0, 1)", "got 1.5"),
    ),
    "cli-distill-bad-alpha": Case(
        "--quiet distill {run} --alpha 2 --out {out}", ("alpha must lie in [0, 1], got 2.0",)
    ),
    "cli-bad-option-value": Case(
        "--quiet train --epochs abc --out {out}",
        ("Invalid value for '--epochs'", "valid integer", "see `funcsim train --help`"),
    ),
    "cli-unknown-option": Case(
        f"{RUN} --epochs 3", ("No such option: --epochs", "see `funcsim run --help`")
    ),
    "cli-list-unknown": Case("list colours", ("cannot list 'colours'", "datasets, models")),
}


# ------------------------------------------------------------------------------ the test


@pytest.fixture(scope="module")
def places(reference_study: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private finished study, its base model as a trained run, and the study's YAML."""
    root = tmp_path_factory.mktemp("catalogue")
    study = Path(shutil.copytree(reference_study, root / "study"))
    base = next(store.jobs_dir(study).glob("train-*-s0-*"))
    run = Path(shutil.copytree(base, root / "run"))
    return {"study": study, "run": run, "config": write_config(root)}


def _fill(text: str, values: dict[str, Path]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def test_the_catalogue_holds_at_least_30_cases_all_in_the_docs() -> None:
    assert len(CASES) >= 30
    doc = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    assert [name for name in CASES if f"\n| {name} |" not in doc] == []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    name: str, places: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    values = {**places, "tmp": tmp_path, "out": tmp_path / "out"}
    if case.make is not None:
        case.make(tmp_path, places["run"])
    before = {key: snapshot(places[key]) for key in ("study", "run")}
    scratch = snapshot(tmp_path)
    capsys.readouterr()

    code = main(_fill(case.argv, values).split())

    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out and out == ""
    for fragment in case.expect:
        assert _fill(fragment, values) in lines[0], lines[0]
    assert {key: snapshot(places[key]) for key in ("study", "run")} == before
    assert snapshot(tmp_path) == scratch  # nothing written beside the bad input
    assert not (tmp_path / "out").exists() and not (tmp_path / PWNED).exists()
