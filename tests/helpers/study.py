"""A study folder built from synthetic but realistic prediction arrays (``make_study``).

The report reads only run folders; these are written with :func:`funcsim.store.save_run`
exactly as the study runner writes them. The predictions mimic what the paper observed:
independently trained models and distilled students make their own errors (own noise), the
quantized models are near copies of the base, pruning perturbs the base more and more, and
90 % pruning falls towards chance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from funcsim import store
from funcsim.config import StudyConfig

N_POINTS = 500
EPOCHS = 4


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _trained_logits(
    rng: np.random.Generator, labels: np.ndarray, c: int, accuracy: float
) -> np.ndarray:
    """A model that got ``accuracy`` of the points right, its own random subset of them,
    and its own wrong class elsewhere (errors independent of every other model's)."""
    n = len(labels)
    right = np.zeros(n, dtype=bool)
    right[rng.choice(n, size=round(accuracy * n), replace=False)] = True
    wrong = (labels + rng.integers(1, c, size=n)) % c
    target = np.where(right, labels, wrong)
    return 4.0 * np.eye(c)[target] + 0.8 * rng.normal(size=(n, c))


def _trajectory(rng: np.random.Generator, final: np.ndarray, epochs: int) -> np.ndarray:
    init = 0.1 * rng.normal(size=final.shape)
    steps = [init + (t / epochs) ** 0.5 * (final - init) for t in range(epochs + 1)]
    return _softmax(np.stack(steps))


def _job_id(kind: str, dataset: str, arch: str, role: str, label: str) -> str:
    what = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace("%", "pct")).strip("_")
    return f"{kind}-{dataset}-{arch}-{role}-{what}"


def _config(dataset: str, arch: str, role: str, label: str, seed: int, **extra: Any) -> dict:
    kind = {"base": "train", "independent": "train", "distill": "distill"}.get(role, "compress")
    return {
        "job_id": _job_id(kind, dataset, arch, role, label),
        "kind": kind,
        "study": "synthetic",
        "protocol": "paper",
        "dataset": dataset,
        "arch": arch,
        "seed": seed,
        "role": role,
        "label": label,
        "student_arch": extra.pop("student_arch", None),
        "method": extra.pop("method", None),
        "options": extra.pop("options", {}),
        "depends_on": [],
        "data": {},
        "train": {"epochs": EPOCHS},
        **extra,
    }


def make_study(
    run_dir: Path,
    *,
    datasets: tuple[str, ...] = ("mnist",),
    archs: tuple[str, ...] = ("lenet",),
    n_independents: int = 2,
    classes: int = 10,
    failed: bool = True,
    cross_arch: bool = False,
    beyond_paper: bool = False,
) -> Path:
    """Write ``run_dir/study.json`` (config and job list) and one run folder per job."""
    study = StudyConfig(
        name="synthetic",
        datasets=list(datasets),
        archs=list(archs),
        seeds=list(range(1 + n_independents)),
        train={"epochs": EPOCHS},
        landscape={"method": "pca", "random_state": 42},
    )
    listed: list[dict[str, Any]] = []
    for d_i, dataset in enumerate(datasets):
        rng = np.random.default_rng(100 + d_i)
        labels = rng.integers(0, classes, size=N_POINTS)
        for a_i, arch in enumerate(archs):
            rng = np.random.default_rng(1000 * d_i + a_i)

            def save(
                config: dict, predictions: np.ndarray, labels: np.ndarray = labels, **metrics: Any
            ) -> None:
                acc = float(np.mean(predictions[-1].argmax(1) == labels))
                listed.append(_summary(config))
                store.save_run(
                    store.job_dir(run_dir, config["job_id"]),
                    predictions=predictions,
                    labels=labels,
                    config=config,
                    metrics={"final_test_accuracy": acc, **metrics},
                )

            base_logits = _trained_logits(rng, labels, classes, 0.9)
            save(
                _config(dataset, arch, "base", "base (seed 0)", 0),
                _trajectory(rng, base_logits, EPOCHS),
            )
            for seed in range(1, 1 + n_independents):
                logits = _trained_logits(rng, labels, classes, 0.9 + 0.01 * (-1) ** seed)
                save(
                    _config(dataset, arch, "independent", f"independent (seed {seed})", seed),
                    _trajectory(rng, logits, EPOCHS),
                )
            # the paper's observation: students as accurate as the base, independent-like
            students = [(0.1, None, 0.902), (0.5, None, 0.9), (0.9, None, 0.896)]
            if cross_arch:
                students.append((0.5, "tiny", 0.85))
            for alpha, student, acc in students:
                logits = _trained_logits(rng, labels, classes, acc)
                label = f"KD α={alpha}" + (f" → {student}" if student else "")
                save(
                    _config(
                        dataset,
                        arch,
                        "distill",
                        label,
                        0,
                        student_arch=student,
                        method="distill",
                        options={"alpha": alpha, "temperature": 3},
                    ),
                    _trajectory(rng, logits, EPOCHS),
                )
            for bits, scale in ((16, 0.002), (8, 0.6)):
                logits = base_logits + scale * rng.normal(size=base_logits.shape)
                save(
                    _config(
                        dataset,
                        arch,
                        "quantize",
                        f"{bits}-bit",
                        0,
                        method="quantize",
                        options={"bits": bits},
                    ),
                    _softmax(logits)[None],
                    storage_bytes=1000 * bits,
                )
            for amount in (0.1, 0.3, 0.5, 0.7, 0.9):
                noise = 2.2 * amount**3 * rng.normal(size=base_logits.shape)
                logits = (1.0 - amount**4) * base_logits + noise
                save(
                    _config(
                        dataset,
                        arch,
                        "prune",
                        f"prune {100 * amount:g}%",
                        0,
                        method="prune",
                        options={"amount": amount, "scope": "all"},
                    ),
                    _softmax(logits)[None],
                    storage_bytes=32000,
                    sparsity=amount,
                )
            if beyond_paper:  # structured pruning and extra quantization methods
                noise = 0.3 * rng.normal(size=base_logits.shape)
                save(
                    _config(
                        dataset,
                        arch,
                        "prune_structured",
                        "prune 30% (structured)",
                        0,
                        method="l1_structured",
                        options={"amount": 0.3},
                    ),
                    _softmax(base_logits + noise)[None],
                )
                for method, label in (("int8_static", "int8 static"), ("int8_dynamic", "8-bit")):
                    save(
                        _config(
                            dataset, arch, "quantize_extra", label, 0, method=method, options={}
                        ),
                        _softmax(base_logits + 0.1 * noise)[None],
                    )
    if failed:
        config = _config(datasets[0], archs[0], "prune", "prune 95%", 0, options={"amount": 0.95})
        listed.append(_summary(config))
        store.write_error(
            store.job_dir(run_dir, config["job_id"]),
            "RuntimeError: out of memory",
            label=f"{datasets[0]}/{archs[0]}: prune 95%",
        )
    store.write_study(run_dir, {**study.model_dump(mode="json"), "funcsim_version": "0"}, listed)
    return run_dir


def _summary(config: dict[str, Any]) -> dict[str, Any]:
    """The job's entry in ``study.json`` (as :meth:`funcsim.study.Job.summary` writes it)."""
    keys = ("kind", "dataset", "arch", "role", "label")
    return {"id": config["job_id"], **{k: config[k] for k in keys}, "deps": []}
