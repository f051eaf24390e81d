"""Expansion of every preset into jobs: counts, dependencies, ids and params."""

from __future__ import annotations

import pytest
from helpers.tiny_study import tiny_config

from funcsim.config import list_presets, load_study_config
from funcsim.errors import ConfigError
from funcsim.study import JOB_KEYS, expand
from funcsim.study.jobs import Job


def _count(cfg) -> dict[str, int]:  # type: ignore[no-untyped-def]
    groups = len(cfg.datasets) * len(cfg.archs)
    return {
        "train": groups * len(cfg.seeds),
        "distill": groups * len(cfg.distill.alphas) * len(cfg.distill.students),
        "compress": groups
        * (
            len(cfg.quantize.bits)
            + len(cfg.quantize.extra)
            + len(cfg.prune.amounts)
            + len(cfg.prune.structured_amounts)
        ),
    }


EXPECTED_TOTAL = {
    "quick": 13,  # 3 train + 3 distill + 2 quantize + 5 prune
    "mnist_lenet": 13,
    "fashion_mnist_lenet": 13,
    "fashion_mnist_lenet_sound": 18,  # + bfloat16, int8 static, 3 structured prunes
    "cifar10": 39,  # 3 architectures x 13
    "cifar100": 39,
}


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_expands_into_a_dag(preset: str) -> None:
    cfg = load_study_config(preset)
    jobs = expand(cfg)
    assert len(jobs) == EXPECTED_TOTAL[preset]
    kinds = {k: sum(j.kind == k for j in jobs) for k in ("train", "distill", "compress")}
    assert kinds == _count(cfg)
    ids = [j.id for j in jobs]
    assert len(set(ids)) == len(ids)
    position = {job_id: i for i, job_id in enumerate(ids)}
    bases = {
        (j.params["dataset"], j.params["arch"]): j.id for j in jobs if j.params["role"] == "base"
    }
    for job in jobs:
        assert set(job.params) == set(JOB_KEYS)
        assert job.params["job_id"] == job.id
        assert job.params["depends_on"] == list(job.deps)
        for dep in job.deps:  # topological order
            assert position[dep] < position[job.id]
        if job.kind == "train":
            assert job.deps == ()
        else:  # every compressed model derives from its group's base
            assert job.deps == (bases[(job.params["dataset"], job.params["arch"])],)


def test_quick_roles_labels_and_methods() -> None:
    jobs = expand(load_study_config("quick"))
    assert [j.label for j in jobs] == [
        "base (seed 0)", "independent (seed 1)", "independent (seed 2)",
        "KD α=0.1", "KD α=0.5", "KD α=0.9", "16-bit", "8-bit",
        "prune 10%", "prune 30%", "prune 50%", "prune 70%", "prune 90%",
    ]  # fmt: skip
    by_label = {j.label: j for j in jobs}
    assert by_label["16-bit"].params["method"] == "float16"
    assert by_label["8-bit"].params["method"] == "int8_dynamic"
    assert by_label["prune 30%"].params["options"] == {"amount": 0.3, "scope": "all"}
    assert by_label["KD α=0.5"].params["options"] == {"alpha": 0.5, "temperature": 3.0}
    assert by_label["KD α=0.5"].params["student_arch"] == "lenet"
    assert by_label["KD α=0.5"].params["train"]["optimizer"] == "adamax"  # paper protocol
    assert by_label["base (seed 0)"].id.startswith("train-digits-lenet-s0-")


def test_protocol_is_resolved_into_the_jobs() -> None:
    sound = {j.label: j for j in expand(load_study_config("quick", ["protocol=sound"]))}
    assert sound["prune 30%"].params["options"]["scope"] == "weights"
    assert sound["KD α=0.5"].params["train"]["optimizer"] == "adam"
    assert sound["base (seed 0)"].params["train"]["precision"] == "bf16"
    explicit = {
        j.label: j
        for j in expand(
            load_study_config(
                "quick", ["protocol=sound", "train.precision=fp32", "prune.scope=all"]
            )
        )
    }
    assert explicit["base (seed 0)"].params["train"]["precision"] == "fp32"
    assert explicit["prune 30%"].params["options"]["scope"] == "all"


def test_ids_are_stable_and_a_changed_setting_makes_new_jobs() -> None:
    first = [j.id for j in expand(tiny_config())]
    assert first == [j.id for j in expand(tiny_config())]
    # Where the data live and which device trains do not change a result's identity.
    assert first == [
        j.id for j in expand(tiny_config("data.data_dir=/elsewhere", "train.device=auto"))
    ]
    changed = {j.label: j.id for j in expand(tiny_config("prune.amounts=[0.3, 0.5]"))}
    old = {j.label: j.id for j in expand(tiny_config())}
    assert changed["prune 30%"] == old["prune 30%"]  # kept
    assert "prune 50%" in changed and "prune 90%" not in changed
    # Training the base longer changes the base and everything derived from it.
    longer = {j.label: j.id for j in expand(tiny_config("train.epochs=3"))}
    assert not set(longer.values()) & set(old.values())


def test_cross_architecture_students_and_extras() -> None:
    cfg = load_study_config(
        "quick",
        [
            "distill.students=[same, lenet5]",
            "quantize.extra=[int8_static]",
            "prune.structured_amounts=[0.5]",
            "prune.fine_tune_epochs=1",
        ],
    )
    jobs: dict[str, Job] = {j.label: j for j in expand(cfg)}
    cross = jobs["KD α=0.5 → lenet5"]
    assert cross.params["student_arch"] == "lenet5" and cross.params["arch"] == "lenet"
    assert "-lenet5-a0.5-" in cross.id
    assert jobs["int8 static"].params["role"] == "quantize_extra"
    structured = jobs["prune 50% (structured) + 1 ep FT"]
    assert structured.params["method"] == "l1_structured"
    assert structured.params["options"] == {"amount": 0.5, "fine_tune_epochs": 1}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("datasets=[nope]", "datasets.0: unknown dataset 'nope'"),
        ("archs=[lenet, resnet]", "archs.1: unknown model 'resnet'"),
        ("distill.students=[same, vgg]", "distill.students.0: unknown student"),
        ("quantize.extra=[int3]", "quantize.extra.0: unknown compression method 'int3'"),
    ],
)
def test_unknown_names_are_config_errors(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match="choose one of") as err:
        expand(load_study_config("quick", [override]))
    assert field in str(err.value)
