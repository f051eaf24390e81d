"""A study: the paper's grid of jobs (train -> distill / quantize / prune), run resumably.

>>> from funcsim.config import load_study_config
>>> from funcsim.study import expand
>>> len(expand(load_study_config("quick")))  # 3 seeds + 3 students + 2 quantized + 5 pruned
13
"""

from funcsim.study.collect import (
    JobState,
    ModelEntry,
    collect,
    job_states,
    read_study_config,
)
from funcsim.study.execute import Artifacts, JobOutcome, execute, run_job
from funcsim.study.jobs import JOB_KEYS, Job, check_names, expand
from funcsim.study.runner import StudyEvents, StudySummary, run_study

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
    "execute",
    "expand",
    "job_states",
    "read_study_config",
    "run_job",
    "run_study",
]
