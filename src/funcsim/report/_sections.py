"""What the report says, section by section, as a :class:`~funcsim.report.document.Document`."""

from __future__ import annotations

from funcsim.config import StudyConfig
from funcsim.landscape.estimator import EXACT_TSNE_MAX
from funcsim.report import findings
from funcsim.report._collect import StudyRuns
from funcsim.report.analysis import (
    N_BOOT,
    Analysis,
    display_name,
)
from funcsim.report.document import (
    Bullets,
    Document,
    FigureBlock,
    Heading,
    Paragraph,
    TableBlock,
)
from funcsim.report.figures import FigureFile
from funcsim.report.tables import accuracy_tables, similarity_table
from funcsim.similarity import INDEPENDENT_MIN, PRESERVING_MAX


def _list(values: list[float] | list[int] | list[str], fmt: str = "{}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def _percent_list(amounts: list[float]) -> str:
    return ", ".join(f"{100 * a:g} %" for a in amounts)


def setup_items(study: StudyConfig, analysis: Analysis) -> list[str]:
    """The experimental setup: data, models, training, each method and the measures."""
    items = []
    data = ", ".join(
        dict.fromkeys(
            f"{display_name(g.dataset)} ({g.num_points} test points, {g.num_classes} classes)"
            for g in analysis.groups
        )
    )
    archs = ", ".join(dict.fromkeys(display_name(g.arch) for g in analysis.groups))
    items.append(f"Datasets: {data or 'none finished'}. Architectures: {archs or 'none'}.")
    from funcsim.protocol import get_protocol

    t, proto = study.train, get_protocol(study.protocol)
    base_seed, others = study.seeds[0], study.seeds[1:]
    items.append(
        f"Study `{study.name}`, protocol `{study.protocol}`. Seed {base_seed} trains the "
        f"base; seeds {_list(others) or 'none'} train the independent models, the "
        "yardstick of how far an independently trained model is from the base."
    )
    items.append(
        f"Training: {t.epochs} epochs, batch size {t.batch_size}, {t.optimizer} "
        f"(lr {t.lr:g}), {t.precision} precision; the softmax outputs on the whole test "
        "set are saved at initialisation and after every epoch, a trajectory of "
        f"{t.epochs + 1} checkpoints."
    )
    d = study.distill
    if d.alphas:
        students = [s for s in d.students if s != "same"]
        cross = (
            f" Students of other architectures ({_list(students)}) start from a fresh "
            "initialisation."
            if students
            else ""
        )
        items.append(
            "Knowledge distillation: the student (same architecture, started from the "
            "base's initial weights) is trained against the base with "
            "α·CE(student, labels) + (1 − α)·T²·KL(teacher_T ‖ student_T), "
            f"T = {d.temperature:g}, α ∈ {{{_list(d.alphas, '{:g}')}}}, optimizer "
            f"{proto.distill_optimizer}, {d.epochs or t.epochs} epochs; small α means "
            f"mostly distillation.{cross}"
        )
    q = study.quantize
    if q.bits or q.extra:
        kinds = {
            16: "16-bit stores the weights as float16 and computes in float32",
            8: f"8-bit is {proto.int8_mode}-range int8 quantization (int8 weights per "
            "output channel, float activations)",
            4: "4-bit stores int4 weights (weight-only)",
        }
        parts = [kinds[b] for b in q.bits if b in kinds]
        extra = f"; beyond the paper: {_list(q.extra)}" if q.extra else ""
        items.append(
            "Quantization, post hoc on the base's final weights: " + "; ".join(parts) + extra + "."
        )
    p = study.prune
    if p.amounts or p.structured_amounts:
        scope = p.scope or proto.prune_scope
        what = (
            "every parameter array, biases and BatchNorm parameters and statistics "
            "included (as the original code did)"
            if scope == "all"
            else "the convolution and linear weights only"
        )
        tune = (
            "no fine-tuning"
            if p.fine_tune_epochs == 0
            else f"{p.fine_tune_epochs} epochs of fine-tuning"
        )
        text = (
            f"L1 pruning, post hoc: one global magnitude threshold zeroes "
            f"{_percent_list(p.amounts)} of {what}, {tune}."
        )
        if p.structured_amounts:
            text += (
                " Structured L1 channel pruning (beyond the paper): "
                f"{_percent_list(p.structured_amounts)}."
            )
        items.append(text)
    lc = study.landscape
    perplexity = (
        "perplexity adapted to the number of checkpoints"
        if lc.perplexity is None
        else (f"perplexity {lc.perplexity:g}")
    )
    variant = {
        "auto": f"exact up to {EXACT_TSNE_MAX:,} checkpoints, Barnes-Hut beyond",
        "exact": "exact",
        "barnes_hut": "Barnes-Hut, scikit-learn's default",
    }[lc.tsne_method]
    how = f"{variant}; {perplexity}; random state" if lc.method == "tsne" else "exact; random state"
    items.append(
        f"Functional landscape: each checkpoint's softmax outputs flattened into one vector "
        f"and embedded in 2-D with {'t-SNE' if lc.method == 'tsne' else 'PCA'} "
        f"({how} {lc.random_state}), as Fort et al. (2019) and the paper do."
    )
    items.append(
        "Measures, each model against the base on the test set: accuracy and its relative "
        "deviation 100·(acc − acc_base)/acc_base (the paper's tables); disagreement (the "
        "fraction of points whose predicted class differs); Jensen-Shannon divergence (bits); "
        "KL(base ‖ model) (nats; Stanton et al.'s predictive KL). **Proximity** = disagreement "
        "with the base divided by the mean disagreement of the independent models with the "
        f"base, with a 95 % bootstrap interval over test points ({N_BOOT} replicates): 0 is "
        "the base's function, 1 an independently trained model's. Verdict: "
        f"**function-preserving** if the interval lies below {PRESERVING_MAX:g}; "
        f"**independent-like** if it contains 1 or lies above {INDEPENDENT_MIN:g}; "
        "**in between** otherwise."
    )
    return items


def compose(
    runs: StudyRuns,
    analysis: Analysis,
    group_figures: dict[str, list[FigureFile]],
    dataset_figures: dict[str, FigureFile],
    files: list[str],
) -> Document:
    """The whole report: summary, setup, tables, figures, findings, failures, files."""
    from funcsim import __version__

    study = runs.study
    doc = Document(f"Does compression preserve the function? Study “{study.name}”")
    doc.add(
        Paragraph(
            "Each compressed model is compared with the model it was compressed from (the "
            "base) by what it computes — its predictions on the test set — not only by its "
            "accuracy, and measured against independently trained models of the same "
            "architecture, after *Compression: A Functional Perspective* (Mason-Williams). "
            f"Generated by funcsim {__version__} from `{runs.run_dir}`."
        )
    )
    doc.add(Heading("Summary"))
    summary = findings.overview(analysis)
    doc.add(Bullets(summary) if summary else Paragraph("No compressed model finished."))
    doc.add(Heading("Setup"), Bullets(setup_items(study, analysis)))

    table_no, figure_no = 0, 0
    doc.add(Heading("Accuracy deviation"))
    doc.add(
        Paragraph(
            "Relative deviation of each compressed model's test accuracy from its base's, in "
            "percent, laid out as the paper's Tables 1–3 (rows: architecture; columns: "
            "distillation α, quantization bits, pruned fraction). "
            "Files: `accuracy_deviation.csv`, `.md`, `.tex`."
        )
    )
    for _, table in accuracy_tables(analysis):
        table_no += 1
        doc.add(TableBlock(table, table_no))

    doc.add(Heading("Functional similarity"))
    if not analysis.groups:
        doc.add(Paragraph("No dataset/architecture pair has a finished base model yet."))
    for dataset in analysis.datasets:
        fig = dataset_figures.get(dataset)
        if fig is not None:
            figure_no += 1
            doc.add(FigureBlock(fig.png, fig.caption, figure_no))
        for group in analysis.groups_of(dataset):
            doc.add(Heading(group.title, 3))
            table_no += 1
            doc.add(TableBlock(similarity_table(group), table_no))
            for fig in group_figures.get(group.slug, []):
                figure_no += 1
                doc.add(FigureBlock(fig.png, fig.caption, figure_no))

    doc.add(Heading("Findings"))
    for group in analysis.groups:
        doc.add(Heading(group.title, 3), Bullets(findings.group_findings(group)))
    _add_problems(doc, runs, analysis)
    doc.add(Heading("Files"))
    doc.add(Bullets([f"`{f}`" for f in files]))
    return doc


def _add_problems(doc: Document, runs: StudyRuns, analysis: Analysis) -> None:
    if runs.failed:
        doc.add(Heading("Failed jobs"))
        doc.add(
            Paragraph(
                f"{len(runs.failed)} job{'s' if len(runs.failed) > 1 else ''} failed; the "
                f"rest of the study went on without {'them' if len(runs.failed) > 1 else 'it'}."
            )
        )
        doc.add(
            Bullets(
                [
                    f"`{f.job_id}`"
                    + (
                        f" ({f.label}, {display_name(f.arch)} on {display_name(f.dataset)})"
                        if f.label
                        else ""
                    )
                    + f": {f.message.splitlines()[0] if f.message else ''}"
                    for f in runs.failed
                ]
            )
        )
    notes = list(analysis.problems)
    if runs.pending:
        notes.append(
            f"{len(runs.pending)} job folder(s) unfinished (interrupted or not yet run): "
            + ", ".join(f"`{p}`" for p in runs.pending[:10])
            + (" …" if len(runs.pending) > 10 else "")
        )
    if runs.blocked:
        notes.append(
            f"{len(runs.blocked)} job(s) not run because a job they depend on failed: "
            + ", ".join(f"`{b}`" for b in runs.blocked[:10])
            + (" …" if len(runs.blocked) > 10 else "")
        )
    if notes:
        doc.add(Heading("Not analysed"), Bullets(notes))


__all__ = ["compose", "setup_items"]
