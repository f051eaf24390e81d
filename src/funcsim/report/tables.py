"""The report's tables as data (:class:`Table`) and their CSV, Markdown, HTML and LaTeX text.

* **Accuracy deviation** (the paper's Tables 1-3): one table per dataset, a row per
  architecture, a column per compression setting (KD α, quantization bits, L1 pruning
  amount, then any method beyond the paper), values ``100 * (acc - acc_base) / acc_base``
  with two decimals.
* **Similarity**: one table per (dataset, architecture), a row per model: accuracy, its
  deviation, disagreement with the base, JS, ``KL(base || model)``, proximity with its 95 %
  interval and the verdict. The CSV holds every number at full precision (plus L2, Fort et
  al.'s normalised disagreement and its limits, storage and sparsity).
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

from funcsim.report.analysis import Analysis, Column, Group, ModelResult, display_name

MISSING = "—"
"""Shown in a table cell for a setting that was not run (or failed)."""


@dataclass
class Table:
    """A rectangular table of formatted cells with optional spanning column groups."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)
    """``(label, span)`` headers above ``columns`` (spans add up to ``len(columns)``)."""
    align: str = ""
    """One of ``l``/``r``/``c`` per column (default: first left, the rest right)."""
    notes: list[str] = field(default_factory=list)
    flat_columns: list[str] = field(default_factory=list)
    """One-row header names for formats without column groups (Markdown); default columns."""

    def __post_init__(self) -> None:
        if not self.align:
            self.align = "l" + "r" * (len(self.columns) - 1)
        if self.groups and sum(span for _, span in self.groups) != len(self.columns):
            raise ValueError("column groups must span all columns")


# --------------------------------------------------------------------------- renderers


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown (column groups folded into the header names)."""
    align = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_md_cell(c) for c in table.flat_columns or table.columns) + " |",
        "|" + "|".join(align[a] for a in table.align) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    text = "\n".join(lines) + "\n"
    if table.caption:
        text = f"**{table.caption}**\n\n" + text
    if table.notes:
        text += "\n" + "\n".join(f"{note}  " for note in table.notes) + "\n"
    return text


def to_html(table: Table) -> str:
    """An HTML ``<table>`` (escaped), column groups as a spanning header row."""
    esc = html.escape
    cls = {"l": "l", "r": "r", "c": "c"}
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{esc(table.caption)}</caption>")
    parts.append("<thead>")
    if table.groups:
        cells = "".join(
            f'<th colspan="{span}" class="grp">{esc(label)}</th>'
            if span > 1
            else f"<th>{esc(label)}</th>"
            for label, span in table.groups
        )
        parts.append(f"<tr>{cells}</tr>")
    cells = "".join(
        f'<th class="{cls[a]}">{esc(c)}</th>'
        for c, a in zip(table.columns, table.align, strict=True)
    )
    parts.append(f"<tr>{cells}</tr></thead><tbody>")
    for row in table.rows:
        cells = "".join(
            f'<td class="{cls[a]}">{esc(c)}</td>' for c, a in zip(row, table.align, strict=True)
        )
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    if table.notes:
        parts.append('<p class="notes">' + "<br>".join(esc(note) for note in table.notes) + "</p>")
    return "\n".join(parts) + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "α": r"$\alpha$",
    "→": r"$\to$",
    "‖": r"$\|$",
    "−": "-",
    "—": "--",
    "–": "--",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters (and spell α, →, ‖ in math mode).

    >>> tex_escape("KD α=0.5 & 10% of x_1")
    'KD $\\\\alpha$=0.5 \\\\& 10\\\\% of x\\\\_1'
    """
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table, label: str = "") -> str:
    """A ``table`` float with booktabs rules (``\\usepackage{booktabs}``), escaped."""
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\begin{tabular}{" + table.align + "}",
        r"\toprule",
    ]
    if table.groups:
        cells, rules, col = [], [], 1
        for text, span in table.groups:
            if span > 1:
                cells.append(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(text)}}}")
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            else:
                cells.append(tex_escape(text))
            col += span
        lines.append(" & ".join(cells) + r" \\")
        if rules:
            lines.append(" ".join(rules))
    lines.append(" & ".join(tex_escape(c) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    if table.caption:
        lines.append(r"\caption{" + tex_escape(table.caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- accuracy deviation


def _columns_of(groups: list[Group]) -> list[Column]:
    cols = {m.column.sort_key: m.column for g in groups for m in g.candidates if m.column}
    return [cols[k] for k in sorted(cols)]


def _cells(group: Group) -> dict[tuple[object, ...], float]:
    return {m.column.sort_key: m.deviation for m in group.candidates if m.column is not None}


def _dev(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:.2f}"


def accuracy_tables(analysis: Analysis) -> list[tuple[str, Table]]:
    """``(dataset, table)`` laid out like the paper's Tables 1-3, one per dataset."""
    out = []
    for dataset in analysis.datasets:
        groups = analysis.groups_of(dataset)
        columns = _columns_of(groups)
        spans: list[tuple[str, int]] = [("", 1)]
        for col in columns:
            if spans[-1][0] == col.family and len(spans) > 1:
                spans[-1] = (col.family, spans[-1][1] + 1)
            else:
                spans.append((col.family, 1))
        rows = []
        for g in groups:
            cells = _cells(g)
            rows.append([display_name(g.arch), *(_dev(cells.get(c.sort_key)) for c in columns)])
        caption = "Percentage deviation in accuracy from the base model on " + display_name(dataset)
        out.append(
            (
                dataset,
                Table(
                    columns=["Architecture", *(c.name for c in columns)],
                    rows=rows,
                    caption=caption,
                    groups=spans if columns else [],
                    flat_columns=["Architecture", *(c.flat for c in columns)],
                ),
            )
        )
    return out


def accuracy_markdown(analysis: Analysis) -> str:
    return "\n".join(
        f"## {display_name(dataset)}\n\n" + to_markdown(table)
        for dataset, table in accuracy_tables(analysis)
    )


def accuracy_latex(analysis: Analysis) -> str:
    return "\n".join(
        to_latex(table, label=f"tab:accuracy-deviation-{dataset}")
        for dataset, table in accuracy_tables(analysis)
    )


def accuracy_csv(analysis: Analysis) -> str:
    """One row per (dataset, architecture); a column per setting (empty when not run)."""
    columns = _columns_of(analysis.groups)
    header = ["dataset", "architecture", "base_accuracy", *(c.flat for c in columns)]
    rows: list[list[object]] = []
    for g in analysis.groups:
        cells = _cells(g)
        values = [cells.get(c.sort_key) for c in columns]
        rows.append(
            [
                g.dataset,
                g.arch,
                f"{g.base.accuracy:.6f}",
                *("" if v is None or not math.isfinite(v) else f"{v:.2f}" for v in values),
            ]
        )
    return to_csv(header, rows)


# --------------------------------------------------------------------------- similarity


def format_proximity(m: ModelResult) -> str:
    p = m.proximity
    if p is None:
        return MISSING
    if not (math.isfinite(p.low) and math.isfinite(p.high)):
        return f"{p.value:.2f} (by definition)" if p.n_boot == 0 else f"{p.value:.2f}"
    return f"{p.value:.2f} [{p.low:.2f}, {p.high:.2f}]"


_SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"


def similarity_table(group: Group) -> Table:
    """The per-model similarity table of one (dataset, architecture) group."""
    notes: list[str] = []
    rows = []
    for m in group.models:
        label = m.label
        if m.note:
            if m.note not in notes:
                notes.append(m.note)
            index = notes.index(m.note)
            label += _SUPERSCRIPTS[index] if index < len(_SUPERSCRIPTS) else f" [{index + 1}]"
        rows.append(
            [
                label,
                m.family,
                f"{100 * m.accuracy:.2f}",
                f"{m.deviation:+.2f}" if m.role != "base" else "0.00",
                f"{100 * m.disagreement:.2f}",
                f"{m.metrics['js_divergence']:.4f}",
                f"{m.metrics['kl_divergence']:.4f}",
                format_proximity(m) if m.role != "base" else "0",
                m.verdict,
            ]
        )
    marks = [
        _SUPERSCRIPTS[i] if i < len(_SUPERSCRIPTS) else f"[{i + 1}]" for i in range(len(notes))
    ]
    return Table(
        columns=[
            "Model",
            "Method",
            "Accuracy %",
            "Δacc %",
            "Disagreement %",
            "JS (bits)",
            "KL(base‖model)",
            "Proximity [95% CI]",
            "Verdict",
        ],
        rows=rows,
        caption=f"Functional similarity to the base: {group.title}",
        align="llrrrrrrl",
        notes=[f"{mark} {note}" for mark, note in zip(marks, notes, strict=True)],
    )


def similarity_markdown(analysis: Analysis) -> str:
    return "\n".join(
        f"## {g.title}\n\n" + to_markdown(similarity_table(g)) for g in analysis.groups
    )


SIMILARITY_CSV_COLUMNS = [
    "dataset",
    "architecture",
    "model",
    "role",
    "job_id",
    "seed",
    "accuracy",
    "accuracy_deviation_pct",
    "disagreement",
    "js_divergence",
    "kl_divergence",
    "l2_distance",
    "normalized_disagreement",
    "disagreement_lower",
    "disagreement_upper",
    "disagreement_independent",
    "proximity",
    "proximity_low",
    "proximity_high",
    "verdict",
    "storage_bytes",
    "sparsity",
    "note",
]


def _num(x: float | int | None) -> str:
    if x is None:
        return ""
    if isinstance(x, int):
        return str(x)
    return "" if not math.isfinite(x) else f"{x:.6g}"


def similarity_csv(analysis: Analysis) -> str:
    """Every model of every group with all the numbers (see :data:`SIMILARITY_CSV_COLUMNS`)."""
    rows: list[list[object]] = []
    for g in analysis.groups:
        for m in g.models:
            p, mm = m.proximity, m.metrics
            rows.append(
                [
                    g.dataset,
                    g.arch,
                    m.label,
                    m.role,
                    m.job.job_id,
                    "" if m.job.seed is None else m.job.seed,
                    _num(m.accuracy),
                    _num(m.deviation),
                    _num(m.disagreement),
                    _num(mm["js_divergence"]),
                    _num(mm["kl_divergence"]),
                    _num(mm["l2_distance"]),
                    _num(mm["normalized_disagreement"]),
                    _num(mm["disagreement_lower"]),
                    _num(mm["disagreement_upper"]),
                    _num(mm["disagreement_independent"]),
                    _num(p.value) if p else "",
                    _num(p.low) if p else "",
                    _num(p.high) if p else "",
                    m.verdict,
                    _num(m.storage_bytes),
                    _num(m.sparsity),
                    m.note,
                ]
            )
    return to_csv(SIMILARITY_CSV_COLUMNS, rows)
