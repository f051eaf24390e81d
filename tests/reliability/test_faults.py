"""The fault-injection hook itself: its spec, and that it does nothing unless asked."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from helpers.reliability import PROCESS_TIMEOUT

from funcsim import _faults


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("train.epoch:3", ("train.epoch", None, 3, "kill")),
        ("store.write/done:1", ("store.write", "done", 1, "kill")),
        ("store.write/similarity.csv:2:hang", ("store.write", "similarity.csv", 2, "hang")),
    ],
)
def test_spec(spec: str, parsed: tuple[object, ...]) -> None:
    assert _faults.parse(spec) == parsed


@pytest.mark.parametrize("spec", ["train.epoch", ":1", "x:0", "x:one", "x:1:explode", "a:1:b:c"])
def test_bad_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="FUNCSIM_FAULT"):
        _faults.parse(spec)


def test_no_effect_unless_the_point_and_count_match(monkeypatch: pytest.MonkeyPatch) -> None:
    _faults.maybe_crash("train.epoch")  # unset: nothing
    monkeypatch.setenv(_faults.ENV, "store.write/done:1")
    _faults.maybe_crash("train.epoch")
    _faults.maybe_crash("store.write", "config.json")  # another file: not counted
    assert _faults._hits == {}


def test_the_nth_pass_kills_the_process() -> None:
    code = (
        "from funcsim._faults import maybe_crash\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    maybe_crash('store.write', 'done')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={_faults.ENV: "store.write/done:3", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["0", "1", "2"]
