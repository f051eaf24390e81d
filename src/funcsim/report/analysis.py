"""The numbers of the report: every model compared with its base, against the independents.

Jobs are grouped by (dataset, base architecture). In each group the base (role ``base``) is
the reference, the ``independent`` models are the yardstick and every other job is a
candidate (distilled, quantized, pruned ...). For each model the final checkpoint's test
predictions are compared with the base's:

* accuracy and its relative deviation ``100 * (acc - acc_base) / acc_base`` (the paper's
  Tables 1-3), disagreement, JS, ``KL(base || model)``, L2 and Fort et al.'s normalised
  disagreement with its limits (:func:`funcsim.similarity.compare_predictions`);
* proximity = disagreement with the base / mean disagreement of the independents with the
  base, with a bootstrap 95 % interval and a verdict (:func:`funcsim.similarity.proximity`).
  An independent model is measured against the *other* independents; when there is only one,
  its proximity is 1 by definition (it is the yardstick) and has no interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funcsim.errors import FuncsimError
from funcsim.report._collect import Job, StudyRuns
from funcsim.similarity import ProximityResult, compare_predictions, proximity

PROXIMITY_METRIC = "disagreement"
"""The distance behind the report's proximity (the fraction of test points that flip)."""
N_BOOT = 1000
"""Bootstrap replicates of each proximity interval."""
BOOT_SEED = 0

BASE, INDEPENDENT, DISTILL = "base", "independent", "distill"
QUANTIZE, PRUNE = "quantize", "prune"
PRUNE_STRUCTURED, QUANTIZE_EXTRA = "prune_structured", "quantize_extra"
TRAJECTORY_ROLES = (BASE, INDEPENDENT, DISTILL)
"""Roles whose models are trained, so their whole trajectory is drawn in the landscape."""

FAMILY_NAMES: dict[str, str] = {
    BASE: "Base",
    INDEPENDENT: "Independent models",
    DISTILL: "Knowledge distillation",
    QUANTIZE: "Quantization",
    PRUNE: "L1 pruning",
    PRUNE_STRUCTURED: "Structured L1 pruning",
    QUANTIZE_EXTRA: "Other quantization",
}
"""Human name of each role's method family (unknown roles are shown by their own name)."""

_DISPLAY: dict[str, str] = {
    "lenet": "LeNet",
    "resnet50": "ResNet-50",
    "resnet18": "ResNet-18",
    "mobilenet": "MobileNet",
    "mobilenet_v1": "MobileNet",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
}


def display_name(name: str) -> str:
    """How the paper writes a dataset or architecture (``cifar10`` -> ``CIFAR-10``)."""
    return _DISPLAY.get(name, name)


def _fmt_number(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True, order=True)
class Column:
    """A column of the accuracy-deviation table: a method family and one setting of it."""

    sort_key: tuple[Any, ...]
    family: str = field(compare=False)
    name: str = field(compare=False)

    @property
    def flat(self) -> str:
        """One-line header for CSV files: ``KD α=0.5``, ``16-bit``, ``L1 10%`` ..."""
        if self.family.startswith("Knowledge Distillation"):
            return f"KD α={self.name}"
        if self.family.startswith("KD"):
            return f"KD α={self.name} → {self.family.split('→', 1)[1].strip()}"
        if self.family == "L1 Pruning":
            return f"L1 {self.name}"
        if self.family == "Structured L1 Pruning":
            return f"structured {self.name}"
        if self.family == "Other quantization":
            return f"extra {self.name}"  # may share a label ("8-bit") with a paper column
        return self.name


def column_of(job: Job) -> Column | None:
    """Where a compressed model sits in the paper's table (None for base and independents)."""
    role, opts = job.role, job.options
    if role in (BASE, INDEPENDENT):
        return None
    if role == DISTILL and "alpha" in opts:
        alpha = float(opts["alpha"])
        temp = opts.get("temperature")
        name = _fmt_number(alpha) + ("" if temp in (None, 3, 3.0) else f" (T={temp:g})")
        student = job.student_arch
        if student is None or student == job.arch:
            return Column((0, "", alpha, name), "Knowledge Distillation with α", name)
        arch = display_name(student)
        return Column((10, student, alpha, name), f"KD with α → {arch}", name)
    if role == QUANTIZE and "bits" in opts:
        bits = int(opts["bits"])
        return Column((1, "", -bits, ""), "Quantization", f"{bits}-bit")
    if role in (PRUNE, PRUNE_STRUCTURED) and "amount" in opts:
        amount = float(opts["amount"])
        name = f"{100 * amount:g}%"
        if role == PRUNE:
            return Column((2, "", amount, name), "L1 Pruning", name)
        return Column((11, "", amount, name), "Structured L1 Pruning", name)
    if role == QUANTIZE_EXTRA:
        method = str(job.config.get("method") or job.label)
        return Column((12, method, 0.0, job.label), "Other quantization", job.label)
    return Column((20, role, 0.0, job.label), FAMILY_NAMES.get(role, role), job.label)


@dataclass(frozen=True)
class ModelResult:
    """One model of a group compared with the group's base."""

    job: Job
    column: Column | None
    accuracy: float
    deviation: float
    """Relative accuracy deviation from the base, percent."""
    metrics: dict[str, float]
    """:func:`funcsim.similarity.compare_predictions` (base, this model, labels)."""
    proximity: ProximityResult | None
    note: str = ""

    @property
    def label(self) -> str:
        return self.job.label

    @property
    def role(self) -> str:
        return self.job.role

    @property
    def family(self) -> str:
        student = self.job.student_arch
        if self.role == DISTILL and student is not None and student != self.job.arch:
            return f"Knowledge distillation into {display_name(student)}"
        return FAMILY_NAMES.get(self.role, self.role)

    @property
    def verdict(self) -> str:
        if self.role == BASE:
            return "reference"
        return self.proximity.verdict if self.proximity is not None else "n/a"

    @property
    def disagreement(self) -> float:
        return self.metrics["disagreement"]

    @property
    def storage_bytes(self) -> int | None:
        value = self.job.metrics.get("storage_bytes")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def sparsity(self) -> float | None:
        value = self.job.metrics.get("sparsity")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Group:
    """Every model of one dataset and base architecture."""

    dataset: str
    arch: str
    num_classes: int
    num_points: int
    base: ModelResult
    independents: list[ModelResult]
    candidates: list[ModelResult]
    epochs: int

    @property
    def models(self) -> list[ModelResult]:
        return [self.base, *self.independents, *self.candidates]

    @property
    def title(self) -> str:
        return f"{display_name(self.arch)} on {display_name(self.dataset)}"

    @property
    def slug(self) -> str:
        return f"{self.dataset}_{self.arch}"

    @property
    def independent_disagreement(self) -> float:
        """Mean disagreement of the independents with the base (the yardstick); nan if none."""
        if not self.independents:
            return math.nan
        return float(np.mean([m.disagreement for m in self.independents]))


@dataclass
class Analysis:
    groups: list[Group]
    problems: list[str]
    """One line per group or model that could not be analysed (and why)."""

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(g.dataset for g in self.groups))

    def groups_of(self, dataset: str) -> list[Group]:
        return [g for g in self.groups if g.dataset == dataset]


def _order(study_values: list[str] | None, values: list[str]) -> list[str]:
    found = list(dict.fromkeys(values))
    if not study_values:
        return sorted(found)
    return [v for v in study_values if v in found] + sorted(
        v for v in found if v not in study_values
    )


def analyse(runs: StudyRuns, *, n_boot: int = N_BOOT, random_state: int = BOOT_SEED) -> Analysis:
    """Compare every finished model with its group's base (see the module docstring)."""
    study = runs.study
    datasets = _order(study.datasets, [j.dataset for j in runs.jobs])
    archs = _order(study.archs, [j.arch for j in runs.jobs])
    groups: list[Group] = []
    problems: list[str] = []
    for dataset in datasets:
        for arch in archs:
            jobs = [j for j in runs.jobs if j.dataset == dataset and j.arch == arch]
            if not jobs:
                continue
            try:
                group = _analyse_group(dataset, arch, jobs, problems, n_boot, random_state)
            except FuncsimError as err:
                problems.append(f"{display_name(arch)} on {display_name(dataset)}: {err}")
                continue
            if group is not None:
                groups.append(group)
    return Analysis(groups, problems)


def _seed_key(job: Job) -> tuple[int, str]:
    return (job.seed if job.seed is not None else 1 << 30, job.job_id)


def _analyse_group(
    dataset: str,
    arch: str,
    jobs: list[Job],
    problems: list[str],
    n_boot: int,
    random_state: int,
) -> Group | None:
    where = f"{display_name(arch)} on {display_name(dataset)}"
    bases = sorted((j for j in jobs if j.role == BASE), key=_seed_key)
    if not bases:
        problems.append(f"{where}: no finished base model, so nothing can be compared")
        return None
    base_job = bases[0]
    labels = base_job.labels
    base_pred = base_job.final_predictions()
    independents = sorted((j for j in jobs if j.role == INDEPENDENT), key=_seed_key)
    others = [j for j in jobs if j.role not in (BASE, INDEPENDENT) and j is not base_job]
    finals: dict[str, np.ndarray] = {}
    for job in [*independents, *others]:
        try:
            pred = job.final_predictions()
            if pred.shape != base_pred.shape or not np.array_equal(job.labels, labels):
                raise FuncsimError(
                    f"its predictions {pred.shape} or test labels differ from the base's "
                    f"{base_pred.shape}; it was not evaluated on the same test set"
                )
            finals[job.job_id] = pred
        except FuncsimError as err:
            problems.append(f"{where}, {job.label}: left out: {err}")
    independents = [j for j in independents if j.job_id in finals]
    others = [j for j in others if j.job_id in finals]
    ind_preds = [finals[j.job_id] for j in independents]

    def measure(job: Job, pred: np.ndarray, yardstick: list[np.ndarray]) -> ModelResult:
        metrics = compare_predictions(base_pred, pred, labels)
        prox: ProximityResult | None = None
        note = ""
        if job.role == BASE:
            pass
        elif not yardstick:
            note = "no independent models: proximity needs at least one"
        else:
            try:
                prox = proximity(
                    pred,
                    base_pred,
                    yardstick,
                    metric=PROXIMITY_METRIC,
                    n_boot=n_boot,
                    random_state=random_state,
                )
            except FuncsimError as err:
                note = f"proximity undefined: {err}"
        return ModelResult(
            job=job,
            column=column_of(job),
            accuracy=metrics["accuracy"],
            deviation=metrics["relative_accuracy_deviation"],
            metrics=metrics,
            proximity=prox,
            note=note,
        )

    base = measure(base_job, base_pred, [])
    ind_results = []
    for i, job in enumerate(independents):
        rest = ind_preds[:i] + ind_preds[i + 1 :]
        if rest:
            result = measure(job, ind_preds[i], rest)
            if result.proximity is not None:
                result = _with_note(result, "measured against the other independent models")
        else:
            result = _only_independent(measure(job, ind_preds[i], []))
        ind_results.append(result)
    candidates = [measure(job, finals[job.job_id], ind_preds) for job in others]
    candidates.sort(key=lambda m: (m.column or Column((99,), "", ""), m.label))
    epochs = int(base_job.predictions().shape[0]) - 1
    return Group(
        dataset=dataset,
        arch=arch,
        num_classes=int(base_pred.shape[1]),
        num_points=int(base_pred.shape[0]),
        base=base,
        independents=ind_results,
        candidates=candidates,
        epochs=epochs,
    )


def _with_note(result: ModelResult, note: str) -> ModelResult:
    from dataclasses import replace

    return replace(result, note="; ".join(n for n in (result.note, note) if n))


def _only_independent(result: ModelResult) -> ModelResult:
    """The single independent is the yardstick itself: proximity 1 by definition."""
    from dataclasses import replace

    prox = ProximityResult(
        value=1.0,
        low=math.nan,
        high=math.nan,
        metric=PROXIMITY_METRIC,
        verdict="independent-like",
        distance=result.disagreement,
        yardstick=result.disagreement,
        n_boot=0,
        n_independents=1,
    )
    note = "the only independent model is the yardstick: proximity 1 by definition"
    return replace(result, proximity=prox, note=note)
