"""A study: the paper's grid of jobs (train -> distill / quantize / prune), run resumably.

>>> from funcsim.config import load_study_config
>>> from funcsim.study import expand
>>> len(expand(load_study_config("quick")))  # 3 seeds + 3 students + 2 quantized + 5 pruned
13

Expanding a study and reading a study folder (``expand``, ``job_states``, ``collect``) import
no torch, so ``funcsim status`` answers at once; the names that run jobs (``run_study``,
``run_job``, ...) are imported on first use. The function that executes one job is
:func:`funcsim.study.execute.execute` (``funcsim.study.execute`` is its module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from funcsim.study.collect import (
    JobState,
    ModelEntry,
    collect,
    job_states,
    read_study_config,
)
from funcsim.study.jobs import JOB_KEYS, Job, check_names, expand

if TYPE_CHECKING:
    from funcsim.study.execute import Artifacts, JobOutcome, run_job
    from funcsim.study.runner import StudyEvents, StudySummary, run_study

_LAZY = {
    "Artifacts": "funcsim.study.execute",
    "JobOutcome": "funcsim.study.execute",
    "run_job": "funcsim.study.execute",
    "StudyEvents": "funcsim.study.runner",
    "StudySummary": "funcsim.study.runner",
    "run_study": "funcsim.study.runner",
}
"""Names whose modules import torch: loaded when first asked for."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JOB_KEYS",
    "Artifacts",
    "Job",
    "JobOutcome",
    "JobState",
    "ModelEntry",
    "StudyEvents",
    "StudySummary",
    "check_names",
    "collect",
    "expand",
    "job_states",
    "read_study_config",
    "run_job",
    "run_study",
]
