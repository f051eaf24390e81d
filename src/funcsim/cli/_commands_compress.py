"""``funcsim compress`` and ``funcsim distill``: one compression of a finished run.

Both build a one-off study job from the run folder's config and run it through
:func:`funcsim.study.execute.execute`, the same code the study runner uses, then write the
result as a run folder beside the input (or at ``--out``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from funcsim.cli._app import app, out, state
from funcsim.errors import ConfigError, StoreError

if TYPE_CHECKING:  # the store imports NumPy: loaded when a command runs, not at CLI start-up
    from funcsim.store import RunRecord

ProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="paper (the original's choices) or sound; sets defaults such as the "
        "pruning scope and the student's optimizer (see funcsim/protocol.py). "
        "Default: the run's own protocol.",
    ),
]
OutOption = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output run folder (default: beside RUN_DIR).")
]


def _load_run(run_dir: Path) -> RunRecord:
    from funcsim import store

    return store.load_run(run_dir)


def _base_params(run: RunRecord) -> dict[str, Any]:
    """dataset / arch / seed / data / train of a ``funcsim train`` or study train run."""
    cfg = run.config
    try:
        train = dict(cfg["train"])
        params = {
            "dataset": cfg["dataset"],
            "arch": cfg["arch"],
            "seed": int(cfg.get("seed") or train.get("seed") or 0),
            "data": dict(cfg.get("data", {})),
            "train": train,
            "protocol": str(cfg.get("protocol") or "paper"),
        }
    except (KeyError, TypeError, ValueError):
        raise StoreError(
            f"{run.path}: config.json lacks dataset/arch/train; expected a funcsim train run"
        ) from None
    if cfg.get("kind") not in (None, "train") or cfg.get("role") not in (
        None,
        "base",
        "independent",
    ):
        raise StoreError(f"{run.path}: not a trained model (kind {cfg.get('kind')!r})")
    return params


def _run(
    kind: str, run: RunRecord, params: dict[str, Any], target: Path, label: str
) -> dict[str, Any]:
    from funcsim import store
    from funcsim.study.execute import (
        INPUT_FILES,
        TEACHER,
        TEACHER_INIT,
        execute,
        job_dataset,
    )
    from funcsim.study.jobs import Job

    names = [TEACHER, TEACHER_INIT] if kind == "distill" else [TEACHER]
    inputs = {n: store.read_bytes(run.path / INPUT_FILES[n], "weights file") for n in names}
    # --out may be any folder name; the job id (in config.json, in messages) is a safe slug of it
    job_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.name).strip("._")[:200] or kind
    params = {
        **params,
        "job_id": job_id,
        "kind": kind,
        "study": None,
        "label": label,
        "depends_on": [str(run.path)],
    }
    job = Job(id=store.check_job_id(job_id), kind=kind, params=params)  # type: ignore[arg-type]
    art = execute(job, inputs, job_dataset(job), progress=not state.quiet)
    store.save_run(
        target,
        predictions=art.predictions,
        labels=art.labels,
        config=params,
        metrics=art.metrics,
        init_state=art.init_weights,
        final_state=art.final_weights,
    )
    return art.metrics


@app.command("compress")
def compress_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished `funcsim train` run folder.")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="quantize, prune, or a registered method (see `funcsim list methods`).",
        ),
    ],
    bits: Annotated[int | None, typer.Option("--bits", help="quantize: 16, 8 or 4.")] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="quantize --bits 8: dynamic (paper) or static.")
    ] = None,
    compute: Annotated[
        str | None, typer.Option("--compute", help="16-bit: float32 (paper) or native.")
    ] = None,
    amount: Annotated[
        float | None, typer.Option("--amount", help="prune: fraction in [0, 1) to zero.")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="prune: weights (sound) or all (paper: BatchNorm too)."),
    ] = None,
    structured: Annotated[
        bool, typer.Option("--structured", help="prune: L1 channel pruning instead.")
    ] = False,
    fine_tune_epochs: Annotated[
        int, typer.Option("--fine-tune-epochs", help="prune: epochs of fine-tuning (paper 0).")
    ] = 0,
    protocol: ProtocolOption = None,
    out_dir: OutOption = None,
) -> None:
    """Compress a trained model post hoc (no training) and record its test predictions.

    Writes predictions.npy of shape (1, N_test, C), the compressed weights where they are
    plain tensors, and metrics (accuracy, storage bytes, sparsity ...).
    """
    from funcsim.compress import list_methods
    from funcsim.compress._api import method_options
    from funcsim.protocol import get_protocol
    from funcsim.study.jobs import QUANTIZE_METHODS

    run = _load_run(run_dir)
    params = _base_params(run)
    proto = get_protocol(protocol or params["protocol"])
    if method == "quantize":
        if bits not in (16, 8, 4):
            raise ConfigError(f"--bits must be one of 16, 8, 4 with --method quantize; got {bits}")
        static = (mode or proto.int8_mode) == "static"
        name = QUANTIZE_METHODS.get(bits) or ("int8_static" if static else "int8_dynamic")
        role, label = "quantize", f"{bits}-bit" + (" static" if static and bits == 8 else "")
    elif method == "prune":
        if amount is None:
            raise ConfigError("--amount is required with --method prune (a fraction in [0, 1))")
        name = "l1_structured" if structured else "l1_unstructured"
        role = "prune_structured" if structured else "prune"
        label = f"prune {amount * 100:g}%" + (" (structured)" if structured else "")
    elif method in list_methods():
        name, role, label = method, "quantize_extra", method
    else:
        names = ", ".join(["quantize", "prune", *list_methods()])
        raise ConfigError(f"unknown method {method!r}; choose one of: {names}")
    accepted = method_options(name)
    given = {"amount": amount, "compute": compute}
    if "scope" in accepted:
        given["scope"] = scope or proto.prune_scope
    elif scope is not None:
        raise ConfigError(f"--scope does not apply to method {name!r}")
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for key in options:
        if key not in accepted:
            raise ConfigError(f"--{key} does not apply to method {name!r}")
    if fine_tune_epochs < 0:
        raise ConfigError(f"--fine-tune-epochs must be >= 0, got {fine_tune_epochs}")
    if fine_tune_epochs:
        options["fine_tune_epochs"] = fine_tune_epochs
    if method == "quantize":
        options["bits"] = bits  # recorded for the report; methods ignore what they do not take
    params.update(  # "protocol" stays the run's: it defines the architecture
        {
            "role": role,
            "student_arch": None,
            "method": name,
            "options": options,
        }
    )
    slug = label.replace(" ", "").replace("%", "pct").replace("(", "-").replace(")", "")
    target = out_dir or run_dir.parent / f"{run_dir.name}-{slug}"
    metrics = _run("compress", run, params, target, label)
    out.print(
        f"{label} ({name}): test accuracy {metrics['final_test_accuracy']:.2%}, "
        f"{metrics['storage_bytes']:,} bytes stored -> {target}"
    )


@app.command("distill")
def distill_cmd(
    teacher_run_dir: Annotated[
        Path, typer.Argument(help="The teacher's `funcsim train` run folder.")
    ],
    alpha: Annotated[
        float,
        typer.Option("--alpha", help="Weight of the hard-label loss, in [0, 1] (0.1 = 90 % KD)."),
    ] = 0.5,
    temperature: Annotated[
        float, typer.Option("--temperature", "-T", help="Softmax temperature > 0.")
    ] = 3.0,
    epochs: Annotated[
        int | None, typer.Option("--epochs", "-e", help="Default: as the teacher.")
    ] = None,
    student: Annotated[
        str,
        typer.Option(
            "--student",
            help="same (self-distillation from the teacher's initial "
            "weights) or an architecture name.",
        ),
    ] = "same",
    protocol: ProtocolOption = None,
    out_dir: OutOption = None,
) -> None:
    """Distil a trained teacher into a student, recording the student's trajectory.

    Loss: alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)). Writes
    predictions.npy of shape (epochs+1, N_test, C) like `funcsim train`.
    """
    from funcsim.compress.distill import check_distill_options
    from funcsim.config import TrainConfig, validated
    from funcsim.models._api import MODELS
    from funcsim.protocol import get_protocol

    check_distill_options(alpha, temperature)
    teacher = _load_run(teacher_run_dir)
    params = _base_params(teacher)
    proto = get_protocol(protocol or params["protocol"])
    student_arch = params["arch"] if student == "same" else student
    MODELS.get(student_arch)
    update: dict[str, Any] = {"optimizer": proto.distill_optimizer}
    if epochs is not None:
        update["epochs"] = epochs
    train = validated(TrainConfig, "distill options", **{**params["train"], **update})
    params.update(
        {
            "protocol": proto.name,
            "role": "distill",
            "student_arch": student_arch,
            "method": None,
            "options": {"alpha": alpha, "temperature": temperature},
            "train": train.model_dump(mode="json"),
        }
    )
    arrow = "" if student == "same" else f" → {student_arch}"
    label = f"KD α={alpha:g}{arrow}"
    target = out_dir or teacher_run_dir.parent / (
        f"{teacher_run_dir.name}-kd{alpha:g}" + ("" if student == "same" else f"-{student_arch}")
    )
    metrics = _run("distill", teacher, params, target, label)
    out.print(f"{label}: test accuracy {metrics['final_test_accuracy']:.2%} -> {target}")
