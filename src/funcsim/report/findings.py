"""Findings stated from the numbers: one sentence per method family, and where accuracy misleads.

Every sentence is generated from an :class:`~funcsim.report.analysis.Analysis`; nothing is
asserted that the numbers of the study do not show. Sentences may hold ``**bold**`` (the
verdicts), which the document renders as Markdown and as HTML.
"""

from __future__ import annotations

import math
from collections import Counter

from funcsim.report.analysis import DISTILL, Analysis, Group, ModelResult
from funcsim.similarity import FUNCTION_PRESERVING, IN_BETWEEN, INDEPENDENT_LIKE

SMALL_DEVIATION_PCT = 1.0
"""|Δacc| (relative, %) at or below which accuracy alone would call a model unchanged."""
LARGE_DEVIATION_PCT = 5.0
"""|Δacc| (relative, %) above which accuracy alone would call a model broken."""


def pct(fraction: float) -> str:
    """``0.0123`` -> ``1.23 %``."""
    return f"{100 * fraction:.2f} %"


def signed(value: float) -> str:
    return f"{value:+.2f} %"


def proximity_text(m: ModelResult) -> str:
    """``proximity 0.04 [0.02, 0.07]`` (or why there is none)."""
    p = m.proximity
    if p is None:
        return "no proximity"
    if not (math.isfinite(p.low) and math.isfinite(p.high)):
        return f"proximity {p.value:.2f}"
    return f"proximity {p.value:.2f} [{p.low:.2f}, {p.high:.2f}]"


def _verdict(m: ModelResult) -> str:
    return m.proximity.verdict if m.proximity is not None else "n/a"


def _farther(m: ModelResult) -> bool:
    """The interval lies wholly above 1: farther from the base than an independent model."""
    p = m.proximity
    return p is not None and math.isfinite(p.low) and p.low > 1.0


def _families(group: Group) -> dict[str, list[ModelResult]]:
    out: dict[str, list[ModelResult]] = {}
    for m in group.candidates:
        out.setdefault(m.family, []).append(m)
    return out


def yardstick_sentence(group: Group) -> str:
    """How far the independent models are from the base: the unit of proximity."""
    inds = group.independents
    if not inds:
        return (
            "No independent model finished, so there is no yardstick: proximities are not "
            "available and only the raw distances can be read."
        )
    accs = [m.accuracy for m in inds]
    acc_range = pct(accs[0]) if len(accs) == 1 else f"{pct(min(accs))}–{pct(max(accs))}"
    noun = "independent model" if len(inds) == 1 else f"{len(inds)} independent models"
    verb = "disagrees" if len(inds) == 1 else "disagree"
    return (
        f"Yardstick: the {noun} ({acc_range} accuracy, base {pct(group.base.accuracy)}) "
        f"{verb} with the base on {pct(group.independent_disagreement)} of the "
        f"{group.num_points} test points on average; this distance is proximity 1."
    )


def _summary_clause(models: list[ModelResult]) -> str:
    verdicts = [_verdict(m) for m in models]
    if len(set(verdicts)) == 1:
        v = verdicts[0]
        if v == "n/a":
            return ""
        every = {1: "", 2: "both "}.get(len(models), "all ")
        return f" — {every}**{v}**"
    preserving = [m for m in models if _verdict(m) == FUNCTION_PRESERVING]
    # settings come ordered by strength (bits down, amount up): find where preservation stops
    if preserving and all(_verdict(m) == FUNCTION_PRESERVING for m in models[: len(preserving)]):
        rest = models[len(preserving) :]
        later = ", ".join(f"{m.label} **{_verdict(m)}**" for m in rest)
        return f" — **function-preserving** up to {preserving[-1].label}; then {later}"
    return " — " + ", ".join(f"{m.label} **{_verdict(m)}**" for m in models)


def family_sentence(family: str, models: list[ModelResult]) -> str:
    """``Quantization: 16-bit disagrees ... (proximity ...), 8-bit ... — both ...``."""
    parts = []
    for i, m in enumerate(models):
        what = "disagrees with the base on " if i == 0 else ""
        tail = " of test points" if i == 0 else ""
        extra = "; farther than an independent model" if _farther(m) else ""
        parts.append(
            f"{m.label} {what}{pct(m.disagreement)}{tail} "
            f"(Δacc {signed(m.deviation)}, {proximity_text(m)}{extra})"
        )
    sentence = f"{family}: " + ", ".join(parts) + _summary_clause(models) + "."
    if models[0].role == DISTILL and len(models) > 1:
        sentence += " " + _distill_alpha_clause(models)
    return sentence


def _distill_alpha_clause(models: list[ModelResult]) -> str:
    """Does α change how close the student gets? Compare the proximity intervals."""
    with_ci = [m for m in models if m.proximity is not None and math.isfinite(m.proximity.low)]
    if len(with_ci) < 2:
        return ""
    lo = max(m.proximity.low for m in with_ci if m.proximity is not None)
    hi = min(m.proximity.high for m in with_ci if m.proximity is not None)
    if lo <= hi:
        return "The intervals overlap: α does not measurably change how close the student gets."
    best = min(with_ci, key=lambda m: m.proximity.value if m.proximity else math.inf)
    return f"The intervals do not all overlap; {best.label} gets closest to the base."


def accuracy_misleads(group: Group) -> list[str]:
    """Where accuracy and function tell different stories (both directions)."""
    out = []
    hidden = [
        m
        for m in group.candidates
        if abs(m.deviation) <= SMALL_DEVIATION_PCT and _verdict(m) == INDEPENDENT_LIKE
    ]
    if hidden:
        names = ", ".join(
            f"{m.label} (Δacc {signed(m.deviation)}, {proximity_text(m)})" for m in hidden
        )
        out.append(
            f"Accuracy alone misleads for {names}: the accuracy is within "
            f"{SMALL_DEVIATION_PCT:g} % of the base's, yet the model is as far from the base "
            "as an independently trained one."
        )
    robust = [
        m
        for m in group.candidates
        if abs(m.deviation) > LARGE_DEVIATION_PCT
        and _verdict(m) in (FUNCTION_PRESERVING, IN_BETWEEN)
    ]
    if robust:
        names = ", ".join(
            f"{m.label} (Δacc {signed(m.deviation)}, {proximity_text(m)}, {_verdict(m)})"
            for m in robust
        )
        out.append(
            f"Conversely, {names} lose{'s' if len(robust) == 1 else ''} more than "
            f"{LARGE_DEVIATION_PCT:g} % accuracy yet stay{'s' if len(robust) == 1 else ''} "
            "closer to the base than an independent model."
        )
    if not out and group.candidates and group.independents:
        out.append(
            "Here accuracy and function agree: no model keeps its accuracy within "
            f"{SMALL_DEVIATION_PCT:g} % while computing an independent-like function."
        )
    return out


def group_findings(group: Group) -> list[str]:
    """The findings of one (dataset, architecture) group, one sentence per method family."""
    sentences = [yardstick_sentence(group)]
    for family, models in _families(group).items():
        sentences.append(family_sentence(family, models))
    sentences += accuracy_misleads(group)
    return sentences


def overview(analysis: Analysis) -> list[str]:
    """Study-wide tally per method family: how many models got each verdict."""
    tally: dict[str, Counter[str]] = {}
    for g in analysis.groups:
        for m in g.candidates:
            tally.setdefault(m.family, Counter())[_verdict(m)] += 1
    lines = []
    n_groups = len(analysis.groups)
    where = "the study" if n_groups == 1 else f"{n_groups} dataset/architecture pairs"
    for family, counts in tally.items():
        total = sum(counts.values())
        parts = [
            f"{counts[v]} of {total} **{v}**" for v in (*VERDICT_ORDER, "n/a") if counts.get(v)
        ]
        lines.append(f"{family} across {where}: " + ", ".join(parts) + ".")
    misleading = [
        f"{m.label} ({g.title})"
        for g in analysis.groups
        for m in g.candidates
        if abs(m.deviation) <= SMALL_DEVIATION_PCT and _verdict(m) == INDEPENDENT_LIKE
    ]
    if misleading:
        lines.append(
            f"Accuracy within {SMALL_DEVIATION_PCT:g} % of the base but an independent-like "
            f"function: {', '.join(misleading)}."
        )
    return lines


VERDICT_ORDER = (FUNCTION_PRESERVING, IN_BETWEEN, INDEPENDENT_LIKE)

__all__ = [
    "LARGE_DEVIATION_PCT",
    "SMALL_DEVIATION_PCT",
    "accuracy_misleads",
    "family_sentence",
    "group_findings",
    "overview",
    "proximity_text",
    "yardstick_sentence",
]
