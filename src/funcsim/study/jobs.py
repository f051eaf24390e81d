"""Expansion of a :class:`~funcsim.config.StudyConfig` into jobs with dependencies.

For every dataset x architecture the study trains one model per seed (the first seed is the
*base*, the others the *independent* yardstick) and compresses the base::

    train base ──┬── distill (alpha x student)      kind "distill"
                 ├── quantize (bits, extra methods) kind "compress"
                 └── prune (amounts, structured)    kind "compress"
    train independent (one per further seed)        kind "train", no dependency

A job's ``params`` are exactly what its ``config.json`` holds (the contract with the
report, see :data:`JOB_KEYS`); everything protocol-dependent is resolved here (the student's
optimizer, the pruning scope, the training precision), so a job runs from its params and
its dependencies' artifacts alone.

Job ids read as ``<train|distill|quantize|prune>-<dataset>-<arch>-<what>-<hash>``: the hash
covers the job's settings that change its result (not the device, the data folder or the
study's name) and the ids of its dependencies, so changing a setting creates new jobs and
keeps the old ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from funcsim.config import StudyConfig, TrainConfig
from funcsim.errors import ConfigError, UnknownNameError
from funcsim.protocol import get_protocol
from funcsim.store import check_job_id

JobKind = Literal["train", "distill", "compress"]

JOB_KEYS = (
    "job_id", "kind", "study", "protocol", "dataset", "arch", "seed", "role", "label",
    "student_arch", "method", "options", "depends_on", "data", "train",
)  # fmt: skip
"""The keys of every job's ``config.json`` (the contract with :mod:`funcsim.report`)."""

HASH_LENGTH = 8
"""Hex digits of the settings hash in a job id (32 bits: collisions need ~65k jobs)."""

QUANTIZE_METHODS = {16: "float16", 4: "int4_weight_only"}
"""Bits -> registered method; 8 bits follows the protocol's ``int8_mode``."""

EXTRA_LABELS = {
    "float16": "16-bit",
    "bfloat16": "bfloat16",
    "int8_dynamic": "8-bit",
    "int8_static": "int8 static",
    "int4_weight_only": "4-bit",
}
"""Human labels of quantization methods listed in ``quantize.extra``."""

CALIBRATION_SIZE = 512
"""Static int8 quantization calibrates on the first this-many training images."""

_IDENTITY_EXCLUDED_TRAIN = ("device", "eval_batch_size")
"""TrainConfig fields that do not change a job's result (beyond float noise on GPU)."""
_IDENTITY_EXCLUDED_DATA = ("data_dir", "download")
"""DataConfig fields that say where data come from, not which data."""


@dataclass(frozen=True)
class Job:
    """One unit of work: its ``id`` (a safe folder name), ``kind``, ``params`` (the job's
    ``config.json``, keys :data:`JOB_KEYS`) and the ids of the jobs it needs (``deps``)."""

    id: str
    kind: JobKind
    params: dict[str, Any]
    deps: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return str(self.params["label"])

    @property
    def title(self) -> str:
        """``dataset/arch: label``, e.g. ``digits/lenet: KD α=0.5``."""
        return f"{self.params['dataset']}/{self.params['arch']}: {self.label}"

    def summary(self) -> dict[str, Any]:
        """What ``study.json`` lists about the job."""
        p = self.params
        return {
            "id": self.id,
            "kind": self.kind,
            "dataset": p["dataset"],
            "arch": p["arch"],
            "role": p["role"],
            "label": p["label"],
            "deps": list(self.deps),
        }


def _percent(amount: float) -> str:
    return f"{amount * 100:g}%"


def _settings_hash(params: dict[str, Any]) -> str:
    identity = {k: v for k, v in params.items() if k not in ("job_id", "study", "label")}
    identity["train"] = {
        k: v for k, v in params["train"].items() if k not in _IDENTITY_EXCLUDED_TRAIN
    }
    identity["data"] = {k: v for k, v in params["data"].items() if k not in _IDENTITY_EXCLUDED_DATA}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


class _Group:
    """Builds the jobs of one (dataset, architecture) pair of a study."""

    def __init__(self, cfg: StudyConfig, dataset: str, arch: str) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.arch = arch
        self.protocol = get_protocol(cfg.protocol)
        self.data = cfg.data.model_dump(mode="json")
        self.jobs: list[Job] = []

    def train_config(self, seed: int, **update: Any) -> TrainConfig:
        """The study's TrainConfig with the protocol's precision unless set explicitly."""
        train = self.cfg.train
        if "precision" not in train.model_fields_set:
            update.setdefault("precision", self.protocol.train_precision)
        return train.model_copy(update={"seed": seed, **update})

    def add(
        self,
        kind: JobKind,
        slug: str,
        *,
        seed: int,
        role: str,
        label: str,
        train: TrainConfig,
        deps: tuple[str, ...] = (),
        student_arch: str | None = None,
        method: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Job:
        params: dict[str, Any] = {
            "job_id": "",
            "kind": kind,
            "study": self.cfg.name,
            "protocol": self.cfg.protocol,
            "dataset": self.dataset,
            "arch": self.arch,
            "seed": seed,
            "role": role,
            "label": label,
            "student_arch": student_arch,
            "method": method,
            "options": dict(options or {}),
            "depends_on": list(deps),
            "data": self.data,
            "train": train.model_dump(mode="json"),
        }
        prefix = kind if kind != "compress" else role.split("_")[0]  # quantize | prune
        job_id = check_job_id(
            f"{prefix}-{self.dataset}-{self.arch}-{slug}-{_settings_hash(params)}"
        )
        params["job_id"] = job_id
        job = Job(id=job_id, kind=kind, params=params, deps=deps)
        self.jobs.append(job)
        return job

    def expand(self) -> list[Job]:
        cfg, base_seed = self.cfg, self.cfg.seeds[0]
        base = self.add(
            "train", f"s{base_seed}", seed=base_seed, role="base",
            label=f"base (seed {base_seed})", train=self.train_config(base_seed),
        )  # fmt: skip
        for seed in cfg.seeds[1:]:
            self.add(
                "train", f"s{seed}", seed=seed, role="independent",
                label=f"independent (seed {seed})", train=self.train_config(seed),
            )  # fmt: skip
        self.expand_distill(base)
        self.expand_quantize(base)
        self.expand_prune(base)
        return self.jobs

    def expand_distill(self, base: Job) -> None:
        d = self.cfg.distill
        student_cfg = self.train_config(
            self.cfg.seeds[0],
            optimizer=self.protocol.distill_optimizer,
            epochs=d.epochs or self.cfg.train.epochs,
        )
        for student in d.students:
            student_arch = self.arch if student == "same" else student
            cross = student_arch != self.arch
            for alpha in d.alphas:
                self.add(
                    "distill",
                    f"{student_arch}-a{alpha:g}" if cross else f"a{alpha:g}",
                    seed=self.cfg.seeds[0],
                    role="distill",
                    label=f"KD α={alpha:g}" + (f" → {student_arch}" if cross else ""),
                    train=student_cfg,
                    deps=(base.id,),
                    student_arch=student_arch,
                    options={"alpha": alpha, "temperature": d.temperature},
                )

    def expand_quantize(self, base: Job) -> None:
        q = self.cfg.quantize
        base_cfg = self.train_config(self.cfg.seeds[0])
        int8 = f"int8_{self.protocol.int8_mode}"
        for bits in q.bits:
            method = int8 if bits == 8 else QUANTIZE_METHODS[bits]
            self.add(
                "compress", f"q{bits}", seed=self.cfg.seeds[0], role="quantize",
                label=f"{bits}-bit", train=base_cfg, deps=(base.id,), method=method,
                options={"bits": bits},
            )  # fmt: skip
        for method in q.extra:
            self.add(
                "compress", method.replace("_", ""), seed=self.cfg.seeds[0],
                role="quantize_extra", label=EXTRA_LABELS.get(method, method),
                train=base_cfg, deps=(base.id,), method=method, options={},
            )  # fmt: skip

    def expand_prune(self, base: Job) -> None:
        p = self.cfg.prune
        scope = p.scope or self.protocol.prune_scope
        tuned = p.fine_tune_epochs > 0
        base_cfg = self.train_config(self.cfg.seeds[0])
        suffix = f" + {p.fine_tune_epochs} ep FT" if tuned else ""
        for amount in p.amounts:
            options: dict[str, Any] = {"amount": amount, "scope": scope}
            if tuned:
                options["fine_tune_epochs"] = p.fine_tune_epochs
            self.add(
                "compress", f"p{amount * 100:g}", seed=self.cfg.seeds[0], role="prune",
                label=f"prune {_percent(amount)}{suffix}", train=base_cfg, deps=(base.id,),
                method="l1_unstructured", options=options,
            )  # fmt: skip
        for amount in p.structured_amounts:
            options = {"amount": amount}
            if tuned:
                options["fine_tune_epochs"] = p.fine_tune_epochs
            self.add(
                "compress", f"ps{amount * 100:g}", seed=self.cfg.seeds[0],
                role="prune_structured", label=f"prune {_percent(amount)} (structured){suffix}",
                train=base_cfg, deps=(base.id,), method="l1_structured", options=options,
            )  # fmt: skip


def check_names(cfg: StudyConfig) -> None:
    """Reject datasets, architectures, students and methods that are not registered.

    The message names the config field, e.g. ``archs.1: unknown model 'resnet'; choose one
    of: ...``.
    """
    from funcsim.compress import list_methods
    from funcsim.data import list_datasets
    from funcsim.models import list_models

    def check(field: str, names: list[str], valid: list[str], kind: str) -> None:
        for i, name in enumerate(names):
            if name not in valid:
                raise UnknownNameError(
                    f"config: {field}.{i}: unknown {kind} {name!r}; "
                    f"choose one of: {', '.join(valid)}"
                )

    check("datasets", cfg.datasets, list_datasets(), "dataset")
    check("archs", cfg.archs, list_models(), "model")
    students = [s for s in cfg.distill.students if s != "same"]
    check("distill.students", students, list_models(), "student ('same' or a model)")
    check("quantize.extra", cfg.quantize.extra, list_methods(), "compression method")
    methods = list_methods()
    needed = [QUANTIZE_METHODS.get(b, "") for b in cfg.quantize.bits if b != 8]
    if 8 in cfg.quantize.bits:
        needed.append(f"int8_{get_protocol(cfg.protocol).int8_mode}")
    if cfg.prune.amounts:
        needed.append("l1_unstructured")
    if cfg.prune.structured_amounts:
        needed.append("l1_structured")
    missing = [m for m in needed if m not in methods]
    if missing:
        raise ConfigError(
            f"config: compression method(s) {', '.join(missing)} not available in this "
            f"installation (registered: {', '.join(methods)})"
        )


def expand(cfg: StudyConfig, *, check: bool = True) -> list[Job]:
    """The study's jobs, every job after its dependencies (a topological order).

    ``check`` first verifies that every name in the config is registered
    (:func:`check_names`). Ids are unique; a collision is a bug and raises.
    """
    if check:
        check_names(cfg)
    jobs: list[Job] = []
    for dataset in cfg.datasets:
        for arch in cfg.archs:
            jobs.extend(_Group(cfg, dataset, arch).expand())
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise RuntimeError("two jobs of the study share an id")  # pragma: no cover
    return jobs
