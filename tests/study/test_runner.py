"""Running a tiny study in-process: artifacts, resume, failure isolation, collect."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tiny_study import tiny_config

from funcsim import store
from funcsim.config import StudyConfig
from funcsim.executors import get_executor
from funcsim.study import JOB_KEYS, Job, collect, expand, job_states, run_study


def _run(cfg: StudyConfig, run_dir: Path, jobs: list[Job] | None = None):  # type: ignore[no-untyped-def]
    with get_executor("local", jobs=1) as ex:
        return run_study(cfg, run_dir, ex, jobs=jobs)


def _diverging(job: Job) -> Job:
    """The same job with a learning rate that makes SGD diverge in its first epoch."""
    params = {**job.params, "train": {**job.params["train"], "optimizer": "sgd", "lr": 1e6}}
    return dataclasses.replace(job, params=params)


def test_tiny_study_runs_resumes_and_collects(tiny: StudyConfig, tmp_path: Path) -> None:
    summary = _run(tiny, tmp_path)
    jobs = summary.jobs
    assert summary.ok and len(summary.completed) == len(jobs) == 7
    for job in jobs:
        run = store.load_run(store.job_dir(tmp_path, job.id))
        assert set(run.config) == set(JOB_KEYS) and run.config == json.loads(json.dumps(job.params))
        preds = run.predictions()
        epochs = tiny.train.epochs
        assert preds.shape == ((epochs + 1) if job.kind != "compress" else 1, 120, 10)
        np.testing.assert_allclose(preds.sum(axis=-1), 1.0, atol=1e-4)
        assert 0.0 <= run.metrics["final_test_accuracy"] <= 1.0
        assert run.labels().shape == (120,)
        if job.kind == "compress":
            assert run.metrics["storage_bytes"] > 0
        else:
            assert run.init_state() and run.final_state()
    by_label = {j.label: j for j in jobs}
    pruned = store.load_run(store.job_dir(tmp_path, by_label["prune 90%"].id))
    assert pruned.metrics["sparsity"] >= 0.89
    assert pruned.metrics["weights_saved"] is True
    # Self-distillation starts from the base's initial weights.
    base = store.load_run(store.job_dir(tmp_path, by_label["base (seed 0)"].id))
    student = store.load_run(store.job_dir(tmp_path, by_label["KD α=0.5"].id))
    for key, value in base.init_state().items():
        assert np.array_equal(value.numpy(), student.init_state()[key].numpy())
    np.testing.assert_array_equal(base.predictions()[0], student.predictions()[0])

    markers = {j.id: (store.job_dir(tmp_path, j.id) / store.DONE).stat() for j in jobs}
    again = _run(tiny, tmp_path)
    assert again.completed == [] and len(again.already_done) == 7
    for job in jobs:
        now = (store.job_dir(tmp_path, job.id) / store.DONE).stat()
        assert (now.st_ino, now.st_mtime_ns) == (
            markers[job.id].st_ino,
            markers[job.id].st_mtime_ns,
        )

    entries = collect(tmp_path)
    assert [e.job_id for e in entries] == [j.id for j in jobs]
    assert entries[0].role == "base" and entries[0].label == "base (seed 0)"
    assert {e.role for e in entries} == {"base", "independent", "distill", "quantize", "prune"}
    assert entries[2].options == {"alpha": 0.5, "temperature": 3.0}
    assert {s.state for s in job_states(tmp_path)} == {"done"}


def test_a_failing_job_is_recorded_and_the_rest_complete(tiny: StudyConfig, tmp_path: Path) -> None:
    jobs = expand(tiny)
    independent = next(j for j in jobs if j.params["role"] == "independent")
    jobs = [_diverging(j) if j.id == independent.id else j for j in jobs]
    summary = _run(tiny, tmp_path, jobs)
    assert list(summary.failed) == [independent.id] and summary.skipped == []
    assert len(summary.completed) == len(jobs) - 1
    folder = store.job_dir(tmp_path, independent.id)
    assert not store.is_done(folder)
    error = store.read_error(folder)
    assert (
        error is not None
        and "epoch 1" in error["message"]
        and "lower the learning rate" in error["message"]
    )
    assert "TrainingDivergedError" in error["traceback"]
    states = {s.id: s.state for s in job_states(tmp_path)}
    assert states[independent.id] == "failed" and list(states.values()).count("done") == 6
    assert independent.id not in {e.job_id for e in collect(tmp_path)}

    # A rerun retries only the failed job; fixed, it completes and the record goes away.
    summary = _run(tiny, tmp_path, expand(tiny))
    assert summary.completed == [independent.id] and summary.ok
    assert store.read_error(folder) is None and store.is_done(folder)


def test_dependents_of_a_failed_base_are_skipped(tiny: StudyConfig, tmp_path: Path) -> None:
    jobs = expand(tiny)
    base = jobs[0]
    jobs = [_diverging(base), *jobs[1:]]
    summary = _run(tiny, tmp_path, jobs)
    assert list(summary.failed) == [base.id]
    assert set(summary.skipped) == {j.id for j in jobs if j.deps}
    assert summary.completed == [jobs[1].id]  # the independent model does not need the base
    states = {s.id: s.state for s in job_states(tmp_path)}
    assert states[base.id] == "failed"
    assert {states[j] for j in summary.skipped} == {"blocked"}


def test_a_write_failure_leaves_no_marker_and_names_the_path(
    tiny: StudyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = expand(tiny)
    victim = next(j for j in jobs if j.label == "16-bit")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the disk fills up while the 16-bit model's predictions land
        name = os.readlink(f"/proc/self/fd/{fd}")
        if victim.id in name and ".predictions.npy." in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    summary = _run(tiny, tmp_path, jobs)
    assert list(summary.failed) == [victim.id] and len(summary.completed) == len(jobs) - 1
    folder = store.job_dir(tmp_path, victim.id)
    message = summary.failed[victim.id].message
    assert "could not write" in message and str(folder / store.PREDICTIONS) in message
    assert "No space left on device" in message
    assert not store.is_done(folder) and not (folder / store.PREDICTIONS).exists()
    assert not list(folder.glob(".*.tmp"))
    monkeypatch.undo()
    assert _run(tiny, tmp_path, jobs).completed == [victim.id]


def test_pruned_weights_stay_zero_through_fine_tuning(tmp_path: Path) -> None:
    cfg = tiny_config(
        "seeds=[0]", "distill.alphas=[]", "quantize.bits=[]", "prune.amounts=[0.6]",
        "prune.fine_tune_epochs=2",
    )  # fmt: skip
    base, pruned = expand(cfg)
    assert pruned.params["options"] == {"amount": 0.6, "scope": "all", "fine_tune_epochs": 2}
    assert _run(cfg, tmp_path).ok
    run = store.load_run(store.job_dir(tmp_path, pruned.id))
    assert run.predictions().shape == (1, 120, 10)
    metrics = run.metrics
    assert len(metrics["fine_tune_test_accuracy"]) == 3
    assert metrics["final_test_accuracy"] == pytest.approx(metrics["fine_tune_test_accuracy"][-1])
    tuned = run.final_state()
    before = store.load_run(store.job_dir(tmp_path, base.id)).final_state()
    zeros = sum(int((t == 0).sum()) for t in tuned.values())
    assert zeros / sum(t.numel() for t in tuned.values()) >= 0.6 - 1e-3
    changed = [
        k for k in tuned if not torch.equal(tuned[k][tuned[k] != 0], before[k][tuned[k] != 0])
    ]
    assert changed  # fine-tuning moved the surviving weights
