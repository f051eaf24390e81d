"""The tiny study of the reliability tests, and how to run, kill and snapshot it.

The tiny study (:data:`TINY_STUDY`) has 5 jobs, run in this order with ``--jobs 1``: the base
(seed 0), one independent model (seed 1), one distilled student, the 8-bit model and the 50 %
pruned model. Faults are injected into subprocesses with ``FUNCSIM_FAULT`` (see
:mod:`funcsim._faults`).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

from funcsim import store
from funcsim._faults import ENV as FAULT_ENV
from helpers.tiny_study import funcsim_cmd, subprocess_env

TINY_STUDY = """\
name: tiny
datasets: [digits]
archs: [lenet]
seeds: [0, 1]
data: {train_limit: 200, test_limit: 100}
train: {epochs: 2, device: cpu}
distill: {alphas: [0.5]}
quantize: {bits: [8]}
prune: {amounts: [0.5]}
landscape: {method: pca}
"""
N_JOBS = 5
PROCESS_TIMEOUT = 600.0
"""Seconds a ``funcsim`` subprocess may take (generous: the machine may be loaded)."""


def write_config(folder: Path, text: str = TINY_STUDY) -> Path:
    path = Path(folder) / "tiny.yaml"
    path.write_text(text)
    return path


def run_args(config: Path, run_dir: Path, *extra: str) -> list[str]:
    """``funcsim --quiet run CONFIG --out RUN_DIR --jobs 1 ...``."""
    return ["--quiet", "run", str(config), "--out", str(run_dir), "--jobs", "1", *extra]


def run_until_killed(args: list[str], fault: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m funcsim ARGS`` with ``FUNCSIM_FAULT=fault``; it must die by SIGKILL."""
    proc = subprocess.run(
        funcsim_cmd(*args),
        env={**subprocess_env(), FAULT_ENV: fault},
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"FUNCSIM_FAULT={fault} did not kill the run (exit {proc.returncode}):\n{proc.stderr}"
    )
    return proc


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``folder`` (hidden ones too): relative path -> (sha256, mtime_ns, inode)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path.relative_to(folder))] = (digest, stat.st_mtime_ns, stat.st_ino)
    return state


def job_ids(run_dir: Path) -> list[str]:
    return sorted(p.name for p in store.jobs_dir(run_dir).iterdir())
