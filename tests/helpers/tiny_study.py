"""Tiny studies on real data (digits subsets) that run in seconds (tests/study, tests/executors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from funcsim.config import StudyConfig, load_study_config

TINY = [
    "name=tiny",
    "data.train_limit=300",
    "data.test_limit=120",
    "train.epochs=2",
    "train.device=cpu",
    "seeds=[0, 1]",
    "distill.alphas=[0.5]",
    "quantize.bits=[16, 8]",
    "prune.amounts=[0.3, 0.9]",
]
"""Overrides of the quick preset: 2 seeds + 1 student + 2 quantized + 2 pruned = 7 jobs."""


def tiny_config(*extra: str) -> StudyConfig:
    return load_study_config("quick", [*TINY, *extra])


def funcsim_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "funcsim", *args]


def subprocess_env() -> dict[str, str]:
    """One torch thread per process (the suite's rule, see tests/conftest.py)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        funcsim_cmd(*args),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=timeout,
    )


def tiny_args() -> list[str]:
    return [arg for setting in TINY for arg in ("--set", setting)]
