"""The report's figures, written as PNG and SVG under ``report/figures/``.

* ``landscape_<dataset>_<arch>``: the functional landscape (the paper's Figures 2-4):
  trajectories of the base, the independents and the distilled students from epoch 0 to the
  end, post-hoc models as single points, embedded by :class:`funcsim.landscape.FunctionalLandscape`
  with the study's landscape settings; ``landscape_<dataset>`` puts the architectures of one
  dataset side by side.
* ``proximity_<dataset>_<arch>``: per model, the accuracy deviation beside the proximity
  with its 95 % interval, so that a small accuracy change with an independent-like function
  is visible at a glance.
* ``diversity_<dataset>_<arch>``: Fort et al.'s diversity-accuracy plane, normalised
  disagreement ``dis / (1 - a)`` against accuracy ``a``, between its analytic limits.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no pyplot state), so building
a report never opens a window or touches a global backend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from funcsim import store
from funcsim.config import LandscapeConfig
from funcsim.report.analysis import (
    BASE,
    DISTILL,
    INDEPENDENT,
    PRUNE,
    PRUNE_STRUCTURED,
    QUANTIZE,
    QUANTIZE_EXTRA,
    TRAJECTORY_ROLES,
    Group,
    ModelResult,
    display_name,
)
from funcsim.similarity import (
    INDEPENDENT_MIN,
    PRESERVING_MAX,
    disagreement_bounds,
    independent_disagreement,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from funcsim.landscape import LandscapeItem

FIGURES_DIR = "figures"
DPI = 150

ROLE_KINDS: dict[str, str] = {
    BASE: "base",
    INDEPENDENT: "independent",
    DISTILL: "distill",
    QUANTIZE: "quantize",
    QUANTIZE_EXTRA: "quantize",
    PRUNE: "prune",
    PRUNE_STRUCTURED: "prune",
}
"""Landscape family (:data:`funcsim.landscape.KINDS`) of each job role; others are ``other``."""

RGBA = tuple[float, float, float, float]


def kind_of(role: str) -> str:
    return ROLE_KINDS.get(role, "other")


def model_colours(models: Sequence[ModelResult]) -> list[RGBA]:
    """The colour of each model, as :func:`funcsim.landscape.plot_landscape` shades it.

    The base is black; each family has a colour map, its members shaded light to dark in
    order (so every figure of the report shows a model in the same colour).
    """
    from matplotlib import colormaps

    from funcsim.landscape.plot import FAMILY_CMAPS, SHADE_RANGE

    members: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        members.setdefault(kind_of(m.role), []).append(i)
    out: list[RGBA] = [(0.0, 0.0, 0.0, 1.0)] * len(models)
    lo, hi = SHADE_RANGE
    for kind, idx in members.items():
        if kind == "base":
            continue
        cmap = colormaps[FAMILY_CMAPS[kind]]
        for j, i in enumerate(idx):
            pos = lo if len(idx) == 1 else lo + (hi - lo) * j / (len(idx) - 1)
            r, g, b, a = (float(v) for v in cmap(pos))
            out[i] = (r, g, b, a)
    return out


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its PNG (embedded in the HTML) and SVG, relative to the report."""

    png: Path
    svg: Path
    caption: str


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, report_dir: Path, stem: str, caption: str) -> FigureFile:
    """Write ``figures/<stem>.png`` and ``.svg`` atomically; return their relative paths."""
    from matplotlib import rc_context

    rel_png = Path(FIGURES_DIR) / f"{stem}.png"
    rel_svg = Path(FIGURES_DIR) / f"{stem}.svg"
    for rel, fmt in ((rel_png, "png"), (rel_svg, "svg")):
        buf = io.BytesIO()
        # fixed metadata and SVG ids (clip paths are named by a salted hash, random unless the
        # salt is set): rebuilding a report from the same numbers gives the same files
        metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
        with rc_context({"svg.hashsalt": "funcsim"}):
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
        store.write_bytes(report_dir / rel, buf.getvalue())
    return FigureFile(rel_png, rel_svg, caption)


# --------------------------------------------------------------------------- proximity


def _finite(x: float) -> bool:
    return math.isfinite(x)


def draw_proximity(group: Group) -> Figure:
    """Accuracy deviation (left) beside proximity with its 95 % interval (right), per model."""
    models = [*group.independents, *group.candidates]
    n = max(1, len(models))
    fig = _new_figure(9.0, 1.4 + 0.32 * n)
    ax_acc, ax_prox = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 1.5]})
    y = np.arange(len(models))[::-1]
    colors = model_colours(group.models)[1:]

    devs = [m.deviation if _finite(m.deviation) else 0.0 for m in models]
    ax_acc.barh(y, devs, color=colors, alpha=0.8, height=0.6)
    ax_acc.axvline(0.0, color="black", lw=0.8)
    ax_acc.set_yticks(y, [m.label for m in models])
    ax_acc.set_xlabel("Δ accuracy vs base (relative %)", fontsize=9)
    ax_acc.set_title("Accuracy", fontsize=10)

    ax_prox.axvspan(0.0, PRESERVING_MAX, color="#2ca02c", alpha=0.08, lw=0)
    ax_prox.axvline(1.0, color="#7f7f7f", ls="--", lw=1.0)
    ax_prox.axvline(INDEPENDENT_MIN, color="#7f7f7f", ls=":", lw=0.8)
    xmax = 1.25
    for yi, m, c in zip(y, models, colors, strict=True):
        p = m.proximity
        if p is None or not _finite(p.value):
            continue
        xmax = max(xmax, p.value * 1.1)
        if _finite(p.low) and _finite(p.high):
            ax_prox.errorbar(
                p.value,
                yi,
                xerr=[[p.value - p.low], [p.high - p.value]],
                fmt="o",
                color=c,
                capsize=3,
                ms=5,
            )
            xmax = max(xmax, p.high * 1.05)
        else:
            ax_prox.plot(p.value, yi, "D", color=c, ms=5, mfc="white")
    ax_prox.set_xlim(0.0, xmax)
    ax_prox.set_xlabel(
        "proximity (0 = the base's function, 1 = an independent model's)", fontsize=9
    )
    ax_prox.set_title("Proximity to the base, 95 % interval", fontsize=10)
    top = len(models) - 0.45
    ax_prox.text(
        PRESERVING_MAX / 2,
        top,
        "function-\npreserving",
        ha="center",
        va="top",
        fontsize=7,
        color="#2ca02c",
    )
    ax_prox.text(1.0, top, " independent", ha="left", va="top", fontsize=7, color="#555555")
    ax_prox.tick_params(axis="y", left=False)
    for ax in (ax_acc, ax_prox):
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(models) - 0.3)
    fig.suptitle(f"{group.title}: accuracy vs function", fontsize=11)
    return fig


# --------------------------------------------------------------------------- diversity plane


def draw_diversity(group: Group) -> Figure:
    """Fort et al.'s plane: ``dis / (1 - a)`` against ``a``, between the analytic limits."""
    fig = _new_figure(6.4, 4.6)
    ax = fig.subplots()
    r, c = group.base.accuracy, max(2, group.num_classes)
    models = [m for m in [*group.independents, *group.candidates] if m.accuracy < 1.0]
    accs = [m.accuracy for m in models] + [r]
    lo_a = max(0.0, min(accs) - 0.05)
    hi_a = min(0.999, max(accs) + 0.02)
    grid = np.linspace(lo_a, hi_a, 200)
    lower = [disagreement_bounds(a, r, c).lower / (1 - a) for a in grid]
    upper = [disagreement_bounds(a, r, c).upper / (1 - a) for a in grid]
    indep = [independent_disagreement(a, r, c) / (1 - a) for a in grid]
    ax.fill_between(grid, lower, upper, color="#cccccc", alpha=0.35, lw=0, label="attainable")
    ax.plot(grid, lower, color="#555555", lw=1.0, label="lower limit |r - a| / (1 - a)")
    ax.plot(grid, indep, color="#555555", lw=1.0, ls="--", label="independent errors")
    colours = dict(zip((id(m) for m in group.models), model_colours(group.models), strict=True))
    seen: set[str] = set()
    for m in models:
        nd = m.metrics["normalized_disagreement"]
        if not _finite(nd):
            continue
        label = m.family if m.family not in seen else None
        seen.add(m.family)
        ax.scatter(m.accuracy, nd, color=colours[id(m)], s=28, zorder=3, label=label)
    ax.axvline(r, color="black", lw=0.8, ls=":")
    ax.set_xlabel("accuracy a (dotted: base accuracy r)")
    ax.set_ylabel("disagreement with base / (1 - a)")
    ax.set_title(f"{group.title}: diversity vs accuracy (Fort et al. 2019)", fontsize=10)
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------- landscape


@dataclass(frozen=True)
class Checkpoints:
    """The prediction sets of one landscape and, per model, which rows are its checkpoints."""

    sets: list[np.ndarray]
    models: list[tuple[ModelResult, slice]]

    def items(self) -> list[LandscapeItem]:
        from funcsim.landscape import LandscapeItem

        return [
            LandscapeItem(m.label, kind_of(m.role), rows.start, rows.stop)
            for m, rows in self.models
        ]


def landscape_checkpoints(group: Group) -> Checkpoints:
    """Trained models contribute every epoch (trajectory), post-hoc models their final point."""
    sets: list[np.ndarray] = []
    models: list[tuple[ModelResult, slice]] = []
    for m in group.models:
        preds = m.job.predictions()
        rows = list(preds) if m.role in TRAJECTORY_ROLES else [preds[-1]]
        models.append((m, slice(len(sets), len(sets) + len(rows))))
        sets.extend(rows)
    return Checkpoints(sets, models)


def embed(checkpoints: Checkpoints, cfg: LandscapeConfig) -> np.ndarray:
    """2-D coordinates of every checkpoint with the study's landscape settings."""
    from funcsim.landscape import FunctionalLandscape

    est = FunctionalLandscape(
        cfg.method,
        perplexity=cfg.perplexity,
        random_state=cfg.random_state,
        tsne_method=cfg.tsne_method,
    )
    return np.asarray(est.fit(checkpoints.sets).embedding_)


def _method_name(cfg: LandscapeConfig) -> str:
    return "t-SNE" if cfg.method == "tsne" else "PCA"


def landscape_caption(cfg: LandscapeConfig, where: str) -> str:
    return (
        f"Functional landscape of {where} ({_method_name(cfg)} of the flattened test-set "
        "softmax outputs): trajectories run from epoch 0 (open circle) to the final model; "
        "post-hoc models are single points; the base is the black star."
    )


def save_landscape(
    group: Group, checkpoints: Checkpoints, embedding: np.ndarray, cfg: LandscapeConfig, out: Path
) -> FigureFile:
    """``landscape_<dataset>_<arch>`` through :func:`funcsim.landscape.plot_landscape`."""
    from funcsim.landscape import plot_landscape

    stem = f"landscape_{group.slug}"
    plot_landscape(
        embedding,
        checkpoints.items(),
        path=out / FIGURES_DIR / stem,
        title=f"Functional landscape: {group.title}",
        axis_label=_method_name(cfg),
    )
    rel = Path(FIGURES_DIR) / stem
    return FigureFile(
        rel.with_suffix(".png"), rel.with_suffix(".svg"), landscape_caption(cfg, group.title)
    )


def draw_landscape_on(
    ax: Axes, embedding: np.ndarray, checkpoints: Checkpoints, title: str
) -> None:
    """One panel in the style of :func:`funcsim.landscape.plot_landscape`."""
    from funcsim.landscape.plot import POINT_MARKERS

    colours = model_colours([m for m, _ in checkpoints.models])
    order = sorted(range(len(colours)), key=lambda i: checkpoints.models[i][0].role == BASE)
    for i in order:
        m, rows = checkpoints.models[i]
        xy, colour = embedding[rows], colours[i]
        is_base = m.role == BASE
        marker = POINT_MARKERS[kind_of(m.role)]
        size = 14 if is_base else 7
        if len(xy) > 1:
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=1.4 if is_base else 1.0, alpha=0.8)
            ax.plot(xy[0, 0], xy[0, 1], "o", mfc="white", mec=colour, ms=3.5)
            ax.plot(xy[-1, 0], xy[-1, 1], marker, color=colour, ms=size, mec="white", mew=0.6)
        else:
            ax.plot(xy[0, 0], xy[0, 1], marker, color=colour, ms=size, mec="black", mew=0.5)
            ax.annotate(
                m.label,
                (xy[0, 0], xy[0, 1]),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=6,
                color="0.25",
            )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(alpha=0.2)


def save_dataset_landscape(
    dataset: str,
    panels: Sequence[tuple[Group, Checkpoints, np.ndarray]],
    cfg: LandscapeConfig,
    out: Path,
) -> FigureFile:
    """``landscape_<dataset>``: one panel per architecture (each embedded on its own)."""
    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = _new_figure(4.6 * cols, 4.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (group, checkpoints, embedding) in zip(axes, panels, strict=False):
        draw_landscape_on(ax, embedding, checkpoints, display_name(group.arch))
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{display_name(dataset)} functional landscape", fontsize=12)
    caption = landscape_caption(cfg, f"every architecture on {display_name(dataset)}")
    return save_figure(fig, out, f"landscape_{dataset}", caption)


def save_proximity(group: Group, out: Path) -> FigureFile:
    caption = (
        f"{group.title}: relative accuracy deviation (left) beside proximity to the base with "
        "its 95 % bootstrap interval (right; 1 = as far as an independent model, green = "
        "function-preserving)."
    )
    return save_figure(draw_proximity(group), out, f"proximity_{group.slug}", caption)


def save_diversity(group: Group, out: Path) -> FigureFile:
    caption = (
        f"{group.title}: disagreement with the base normalised by the model's error rate "
        "against its accuracy (Fort et al. 2019), between the lowest attainable value and "
        "the value expected of independent errors."
    )
    return save_figure(draw_diversity(group), out, f"diversity_{group.slug}", caption)
