"""The study report: tables, figures and a short paper, written to ``RUN_DIR/report/``.

:func:`build_report` reads a study folder (``study.json`` and the finished jobs under
``jobs/``), compares every model with its base (:mod:`.analysis`) and writes::

    report/accuracy_deviation.{csv,md,tex}   the paper's Tables 1-3
    report/similarity.{csv,md}               every model vs its base, proximity and verdict
    report/figures/*.{png,svg}               landscapes, proximity and diversity plots
    report/report.md, report/report.html     the short paper (HTML self-contained)

Every file is written atomically; rebuilding from the same jobs gives the same report.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from funcsim import store

if TYPE_CHECKING:
    import numpy as np

    from funcsim.config import LandscapeConfig
    from funcsim.report.analysis import Analysis, Group
    from funcsim.report.figures import FigureFile

__all__ = ["REPORT_DIR", "build_report", "preload"]

REPORT_DIR = "report"

PRELOAD = (
    "funcsim.report.analysis",
    "funcsim.report.figures",
    "funcsim.report._sections",
    "funcsim.landscape.estimator",
    "funcsim.landscape._tsne",
    "funcsim.landscape.plot",
    "threadpoolctl",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "matplotlib.backends.backend_svg",
)
"""What :func:`build_report` imports that costs time (no torch: the report reads stored arrays)."""


def preload() -> None:
    """Import now what :func:`build_report` will import (1-3.5 s of CPU, measured).

    ``funcsim run --jobs N`` calls it while the workers' server imports torch on another core,
    so that the report does not pay these imports after the last job.
    """
    for name in PRELOAD:
        importlib.import_module(name)


def build_report(run_dir: Path | str, *, figures: bool = True, workers: int = 1) -> Path:
    """Write the report of the study in ``run_dir``; return the report folder.

    ``figures=False`` skips the figures (the tables and documents take a fraction of the
    time); figure files of an earlier build are then left as they are. ``workers`` > 1 draws
    the figures in that many forked processes (:func:`_draw`; the same files).

    Raises :class:`funcsim.errors.StoreError` when ``run_dir`` is not a study folder.
    Failed jobs are listed in the report; groups without a finished base are skipped and
    named under "Not analysed".
    """
    from funcsim.report import tables
    from funcsim.report._collect import collect
    from funcsim.report._sections import compose
    from funcsim.report.analysis import analyse
    from funcsim.report.document import to_html_document, to_markdown_document

    run_dir = Path(run_dir)
    runs = collect(run_dir)
    analysis = analyse(runs)
    out = run_dir / REPORT_DIR
    written: list[str] = []

    def write(name: str, text: str) -> None:
        store.write_text(out / name, text)
        written.append(name)

    write("accuracy_deviation.csv", tables.accuracy_csv(analysis))
    write("accuracy_deviation.md", tables.accuracy_markdown(analysis))
    write("accuracy_deviation.tex", tables.accuracy_latex(analysis))
    write("similarity.csv", tables.similarity_csv(analysis))
    write("similarity.md", tables.similarity_markdown(analysis))

    group_figs: dict[str, list[FigureFile]] = {}
    dataset_figs: dict[str, FigureFile] = {}
    if figures:
        group_figs, dataset_figs = _figures(analysis, out, runs.study.landscape, workers)
    figure_files = [
        str(p)
        for figs in [*group_figs.values(), list(dataset_figs.values())]
        for f in figs
        for p in (f.png, f.svg)
    ]
    if figures:
        _remove_stale_figures(out, figure_files)
    files = [*written, "report.md", "report.html", *sorted(figure_files)]
    doc = compose(runs, analysis, group_figs, dataset_figs, files)
    store.write_text(out / "report.md", to_markdown_document(doc))
    store.write_text(out / "report.html", to_html_document(doc, out))
    return out


def _figures(
    analysis: Analysis, out: Path, cfg: LandscapeConfig, workers: int = 1
) -> tuple[dict[str, list[FigureFile]], dict[str, FigureFile]]:
    """Draw every figure; a landscape that cannot be embedded is noted, not fatal.

    The embeddings are computed here, then the figures drawn by :func:`_draw` (matplotlib's
    rendering and the PNG/SVG encoding are most of a report's time)."""
    from funcsim.errors import FuncsimError
    from funcsim.report import figures as F

    group_figs: dict[str, list[FigureFile]] = {}
    dataset_figs: dict[str, FigureFile] = {}
    drawings: list[tuple[list[FigureFile] | str, Callable[[], FigureFile]]] = []  # (to, draw)
    for dataset in analysis.datasets:
        panels: list[tuple[Group, F.Checkpoints, np.ndarray]] = []
        for group in analysis.groups_of(dataset):
            figs = group_figs.setdefault(group.slug, [])
            checkpoints = F.landscape_checkpoints(group)
            try:
                embedding = F.embed(checkpoints, cfg)
            except FuncsimError as err:
                analysis.problems.append(f"{group.title}: no landscape figure: {err}")
            else:
                panels.append((group, checkpoints, embedding))
                draw = functools.partial(F.save_landscape, group, checkpoints, embedding, cfg, out)
                drawings.append((figs, draw))
            drawings.append((figs, functools.partial(F.save_proximity, group, out)))
            drawings.append((figs, functools.partial(F.save_diversity, group, out)))
        if len(panels) > 1:
            draw = functools.partial(F.save_dataset_landscape, dataset, panels, cfg, out)
            drawings.append((dataset, draw))
    for (to, _), figure in zip(drawings, _draw([d for _, d in drawings], workers), strict=True):
        if isinstance(to, str):
            dataset_figs[to] = figure
        else:
            to.append(figure)
    return group_figs, dataset_figs


_PENDING: list[Callable[[], FigureFile]] = []
"""The drawings :func:`_draw` hands to its forked processes (inherited, not pickled)."""


def _draw_pending(index: int) -> FigureFile:
    return _PENDING[index]()


def _draw(drawings: list[Callable[[], FigureFile]], workers: int) -> list[FigureFile]:
    """Run the drawings, in this process or in ``workers`` forked ones; results in order.

    Forked, not spawned: the children inherit the drawings and their data (a study's
    checkpoints can be large) instead of receiving copies. Only where fork exists and this
    process runs no other Python thread (forking a threaded process can deadlock the child);
    otherwise, and for ``workers`` <= 1, one after the other. A drawing's error is raised here
    either way.
    """
    global _PENDING
    if workers <= 1 or len(drawings) < 2 or threading.active_count() > 1:
        return [draw() for draw in drawings]
    import multiprocessing  # here: a report drawn in one process needs neither
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return [draw() for draw in drawings]
    _PENDING = drawings
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(drawings)), mp_context=context) as pool:
            return list(pool.map(_draw_pending, range(len(drawings))))
    finally:
        _PENDING = []


def _remove_stale_figures(out: Path, keep: list[str]) -> None:
    """Delete figure files of an earlier build that this build did not write."""
    folder = out / "figures"
    if not folder.is_dir():
        return
    wanted = {Path(k).name for k in keep}
    for path in folder.iterdir():
        if path.is_file() and path.suffix in (".png", ".svg") and path.name not in wanted:
            path.unlink()
