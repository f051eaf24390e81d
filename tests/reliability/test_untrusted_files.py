"""Untrusted files stay inert: no unsafe deserialiser in the code, hostile weights and
batches refused unexecuted, no job id or study name reaching outside RUN_DIR.

The CIFAR payload cases (every pickle protocol, inside and outside a batch) are in
``tests/data/test_cifar.py``; the CLI-level one is ``data-cifar-pickle-payload`` of the
bad-input catalogue (``test_bad_input.py``).
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import pytest
from helpers.formats import malicious_pickle

import funcsim
from funcsim import store
from funcsim.cli import main
from funcsim.config import StudyConfig
from funcsim.errors import StoreError

SRC = Path(funcsim.__file__).parent

UNSAFE_CALLS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "numpy.lib.format.read_array",
}
"""Deserialisers that can run code from the data (a dotted name after import aliases)."""
RESTRICTED_UNPICKLER = ("data/cifar.py", "RestrictedUnpickler")
"""The one place allowed to subclass ``pickle.Unpickler`` (it must override find_class)."""


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, its first part resolved through the imports."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expression>"
    return "<missing>"


def unsafe_loads(source: str, filename: str) -> list[str]:
    """Every call in ``source`` that could deserialise code, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {"np": "numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            name = _dotted(node.func, aliases)
            if name in UNSAFE_CALLS:
                found.append(f"{where}: {name}()")
            elif name == "torch.load" and _keyword(node, "weights_only") is not True:
                found.append(f"{where}: torch.load() without weights_only=True")
            elif name == "numpy.load" and _keyword(node, "allow_pickle") is not False:
                found.append(f"{where}: numpy.load() without allow_pickle=False")
        elif isinstance(node, ast.ClassDef):
            bases = {_dotted(b, aliases) for b in node.bases}
            if bases & {"pickle.Unpickler", "_pickle.Unpickler"}:
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                allowed = (filename, node.name) == RESTRICTED_UNPICKLER
                if not allowed or not {"find_class", "persistent_load"} <= methods:
                    found.append(f"{where}: unpickler {node.name}")
    return found


def test_the_guard_finds_what_it_looks_for() -> None:
    hostile = """
import pickle, torch, yaml
import numpy as np
from pickle import loads as l2
pickle.load(f)
l2(b"")
torch.load(p)
torch.load(p, weights_only=False)
np.load(p)
np.load(p, allow_pickle=True)
yaml.load(s)
class U(pickle.Unpickler):
    pass
torch.load(p, weights_only=True)
np.load(p, allow_pickle=False)
yaml.safe_load(s)
"""
    found = unsafe_loads(hostile, "x.py")
    assert sorted(int(hit.split(":")[1]) for hit in found) == list(range(5, 13)), found


def test_no_unsafe_deserialiser_in_the_source() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    found = [
        hit
        for path in files
        for hit in unsafe_loads(path.read_text(), path.relative_to(SRC).as_posix())
    ]
    assert found == []
    cifar = (SRC / RESTRICTED_UNPICKLER[0]).read_text()
    assert f"class {RESTRICTED_UNPICKLER[1]}(pickle.Unpickler)" in cifar  # the guard is live


def test_a_pickle_in_place_of_weights_is_refused_unexecuted(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    weights = tmp_path / "final.safetensors"
    weights.write_bytes(malicious_pickle(target, in_batch=False))
    with pytest.raises(StoreError, match="not a valid safetensors file"):
        store.read_weights(weights)
    assert not target.exists()


def test_weights_payload_through_the_cli_is_refused_unexecuted(
    reference_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = next(store.jobs_dir(reference_study).glob("train-*-s0-*"))
    run = Path(shutil.copytree(base, tmp_path / "run"))
    target = tmp_path / "pwned"
    (run / store.FINAL_WEIGHTS).write_bytes(malicious_pickle(target, via="open", in_batch=False))
    argv = ["--quiet", "compress", str(run), "--method", "prune", "--amount", "0.5"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{run / store.FINAL_WEIGHTS}: not a valid safetensors file" in err
    assert not target.exists() and not (tmp_path / "out").exists()


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """Control: an unrestricted unpickler does run them, so the refusals above mean it."""
    target = tmp_path / "pwned"
    pickle.loads(malicious_pickle(target, via="open", in_batch=False)).close()
    assert target.exists()


# ------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize(
    "job_id", ["../x", "..", ".", "a/b", "/etc", "", "x\x00y", "jobs/../../x", "x" * 201]
)
def test_job_ids_cannot_name_other_folders(job_id: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid job id"):
        store.check_job_id(job_id)
    with pytest.raises(StoreError, match="invalid job id"):
        store.job_dir(tmp_path, job_id)


def test_a_job_folder_linked_outside_the_study_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    jobs = store.jobs_dir(tmp_path / "study")
    jobs.mkdir(parents=True)
    (jobs / "train-x").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="resolves outside"):
        store.job_dir(tmp_path / "study", "train-x")


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "/abs", "x y", ""])
def test_a_study_name_cannot_escape_runs(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        StudyConfig(name=name)


@pytest.mark.parametrize("command", ["status", "report"])
def test_a_tampered_study_json_cannot_reach_outside(
    command: str, study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = json.loads((study_copy / store.STUDY).read_text())
    study["jobs"][0]["id"] = "../../../etc"
    (study_copy / store.STUDY).write_text(json.dumps(study))
    assert main(["--quiet", command, str(study_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: invalid job id '../../../etc': use 1-200 letters, digits, '_', '.' or '-'"
