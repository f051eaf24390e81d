"""The Ray executor: every job a Ray task; the driver alone touches the study folder.

The driver loads each dataset once and puts it in Ray's object store, puts each base
model's weights there when its dependents start, and submits one task per job. A task runs
:func:`funcsim.study.execute.execute` and *returns* the artifacts (predictions, metrics,
weights as safetensors bytes); the driver writes them to ``RUN_DIR``. Workers therefore
need funcsim installed but no shared filesystem and no dataset files.

A task asks for one GPU when the job trains on CUDA (``--device cuda``, or ``auto`` on a
cluster that has GPUs). ``pip install 'funcsim[ray]'`` brings Ray; ``--address`` connects
to a running cluster (``ray start --head`` / ``auto``), without it a local one is started.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from funcsim.errors import ConfigError
from funcsim.executors._base import Executor
from funcsim.study.execute import (
    TEACHER,
    TEACHER_INIT,
    Artifacts,
    JobOutcome,
    canonical_dataset,
    failure,
    job_dataset,
    read_inputs,
    save_artifacts,
)
from funcsim.study.jobs import Job


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'funcsim[ray]' (or use --executor local)"
        ) from None
    return ray


def dataset_payload(job: Job) -> dict[str, Any]:
    """A job's dataset as plain NumPy arrays (what travels to the workers)."""
    data = job_dataset(job)
    return {
        "name": data.name,
        "classes": list(data.classes),
        "x_train": data.x_train.numpy(),
        "y_train": data.y_train.numpy(),
        "x_test": data.x_test.numpy(),
        "y_test": data.y_test.numpy(),
    }


def _dataset_from_payload(payload: dict[str, Any]) -> Any:
    """The Dataset again, copied out of the (read-only) object store exactly as the local
    executors lay it out (:func:`~funcsim.study.execute.canonical_dataset`)."""
    import torch

    from funcsim.data import Dataset

    def tensor(name: str) -> torch.Tensor:
        with warnings.catch_warnings():  # read-only: copied by canonical_dataset below
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.asarray(payload[name]))

    data = Dataset(
        name=payload["name"],
        x_train=tensor("x_train"),
        y_train=tensor("y_train"),
        x_test=tensor("x_test"),
        y_test=tensor("y_test"),
        classes=tuple(payload["classes"]),
    )
    return canonical_dataset(data)


def execute_task(
    job: Job, payload: dict[str, Any], teacher: bytes | None, teacher_init: bytes | None
) -> Artifacts | JobOutcome:
    """The body of a Ray task: the job's artifacts, or its failure (never raises)."""
    from funcsim.study.execute import execute

    inputs = {k: v for k, v in ((TEACHER, teacher), (TEACHER_INIT, teacher_init)) if v}
    try:
        return execute(job, inputs, _dataset_from_payload(payload))
    except Exception as err:  # noqa: BLE001 - recorded by the driver
        return failure(job, err)


def _data_key(job: Job) -> str:
    return json.dumps([job.params["dataset"], job.params["data"]], sort_keys=True)


class RayExecutor(Executor):
    """Runs jobs as Ray tasks on the cluster at ``address`` (None: start a local one)."""

    name = "ray"
    capacity = 1_000_000
    """Ray queues tasks itself: every ready job is submitted at once."""

    def __init__(self, address: str | None = None, **init_options: Any) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            options.update(init_options)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = address or "a new local cluster"
                raise ConfigError(f"could not start Ray at {where}: {err}") from None
        self._task = ray.remote(execute_task)
        self._data: dict[str, Any] = {}
        self._weights: dict[tuple[str, str], Any] = {}
        self._gpus: float | None = None

    def _gpus_per_task(self, job: Job) -> float:
        device = job.params["train"].get("device", "auto")
        if device == "cuda":
            return 1.0
        if device == "auto":
            if self._gpus is None:
                self._gpus = float(self._ray.cluster_resources().get("GPU", 0.0))
            return 1.0 if self._gpus > 0 else 0.0
        return 0.0

    def _dataset_ref(self, job: Job) -> Any:
        key = _data_key(job)
        if key not in self._data:
            self._data[key] = self._ray.put(dataset_payload(job))
        return self._data[key]

    def _input_refs(self, job: Job, run_dir: Path) -> tuple[Any, Any]:
        """Object refs of the base weights a job needs (each put once per study run)."""
        if not job.deps:
            return None, None
        base = job.deps[0]
        wanted = [TEACHER] + ([TEACHER_INIT] if job.kind == "distill" else [])
        if any((base, name) not in self._weights for name in wanted):
            for name, data in read_inputs(job, run_dir).items():
                if (base, name) not in self._weights:
                    self._weights[(base, name)] = self._ray.put(data)
        teacher, init = (
            self._weights[(base, n)] if n in wanted else None for n in (TEACHER, TEACHER_INIT)
        )
        return teacher, init

    def submit(self, job: Job, run_dir: Path) -> cf.Future[Any]:
        teacher, teacher_init = self._input_refs(job, run_dir)
        task = self._task.options(num_gpus=self._gpus_per_task(job), name=job.id)
        ref = task.remote(job, self._dataset_ref(job), teacher, teacher_init)
        return ref.future()  # type: ignore[no-any-return]

    def collect(self, job: Job, run_dir: Path, future: cf.Future[Any]) -> JobOutcome:
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - a worker that died, a lost object ...
            return failure(job, err)
        if isinstance(result, JobOutcome):
            return result
        try:
            save_artifacts(job, run_dir, result)
        except Exception as err:  # noqa: BLE001 - e.g. the disk is full
            return failure(job, err)
        return JobOutcome(job.id, "done", seconds=float(result.metrics.get("job_seconds", 0)))

    def close(self) -> None:
        self._data.clear()
        self._weights.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    def describe(self) -> str:
        resources = self._ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        return f"ray ({cpus} CPUs, {gpus} GPUs)"
