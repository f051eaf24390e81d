"""``funcsim report`` and ``funcsim compare``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from funcsim.cli._app import app, out

# (key, name shown, what it means); {a} and {b} are replaced by A and B
_METRICS: tuple[tuple[str, str, str], ...] = (
    ("disagreement", "Disagreement", "points whose predicted class differs"),
    ("js_divergence", "Jensen-Shannon", "bits, in [0, 1]"),
    ("kl_divergence", "KL(A ‖ B)", "nats (Stanton et al.'s predictive KL)"),
    ("l2_distance", "L2 distance", "mean distance of probability rows"),
    ("accuracy_base", "Accuracy A", "test accuracy of A"),
    ("accuracy", "Accuracy B", "test accuracy of B"),
    ("relative_accuracy_deviation", "Δ accuracy", "100·(acc B − acc A) / acc A"),
    (
        "normalized_disagreement",
        "Normalised disagreement",
        "disagreement / (1 − acc B), Fort et al.",
    ),
    ("disagreement_lower", "Disagreement, lowest possible", "|acc A − acc B|"),
    ("disagreement_upper", "Disagreement, highest possible", "given both accuracies"),
    (
        "disagreement_independent",
        "Disagreement if independent",
        "if B's errors were independent of A's",
    ),
)
_PERCENT = {"disagreement", "accuracy_base", "accuracy"} | {
    "disagreement_lower",
    "disagreement_upper",
    "disagreement_independent",
}


def _format(key: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if key in _PERCENT:
        return f"{100 * value:.2f} %"
    if key == "relative_accuracy_deviation":
        return f"{value:+.2f} %"
    return f"{value:.4f}"


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Study folder written by `funcsim run`.")],
    no_figures: Annotated[
        bool, typer.Option("--no-figures", help="Tables and documents only (faster).")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Draw the figures in this many processes.")
    ] = 1,
) -> None:
    """Write the study's report: tables, figures, report.md and a self-contained report.html.

    Everything goes to RUN_DIR/report/: accuracy_deviation.{csv,md,tex} (the paper's Tables
    1-3), similarity.{csv,md} (every model against its base, proximity and verdict),
    figures/ (functional landscapes, proximity plots) and report.md / report.html.
    """
    from funcsim.report import build_report

    folder = build_report(run_dir, figures=not no_figures, workers=jobs)
    out.print(f"report written to {folder / 'report.html'} (and report.md, tables, figures)")


@app.command()
def compare(
    a: Annotated[
        Path,
        typer.Argument(
            metavar="A", help="Reference: predictions .npy ((N, C) or (T, N, C)) or run folder."
        ),
    ],
    b: Annotated[
        Path, typer.Argument(metavar="B", help="Candidate: predictions .npy or run folder.")
    ],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", "-l", help="Test labels .npy of shape (N,) (default: a run's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Compare two models by their test-set predictions: disagreement, JS, KL, accuracy.

    A and B are prediction files (.npy, shape (N, C), or (T, N, C) whose last checkpoint is
    used) or run folders (their final predictions and labels). A is the reference (the base).
    """
    from rich.table import Table

    from funcsim._compare import compare_stored, load_labels, load_predictions

    pa, pb = load_predictions(a), load_predictions(b)
    given = load_labels(labels) if labels is not None else None
    metrics = compare_stored(pa, pb, given)
    if as_json:
        out.print_json(
            json.dumps({k: (v if math.isfinite(v) else None) for k, v in metrics.items()})
        )
        return
    n, c = pa.predictions.shape
    table = Table(title=f"A = {a}\nB = {b}\n{n} points, {c} classes", title_justify="left")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    table.add_column("Meaning", style="dim")
    for key, name, meaning in _METRICS:
        if key in metrics:
            table.add_row(name, _format(key, metrics[key]), meaning)
    out.print(table)
    if "accuracy" not in metrics:
        out.print("no labels: pass --labels PATH (or run folders) for the accuracies")
