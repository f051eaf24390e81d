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

import importlib
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


def build_report(run_dir: Path | str, *, figures: bool = True) -> Path:
    """Write the report of the study in ``run_dir``; return the report folder.

    ``figures=False`` skips the figures (the tables and documents take a fraction of the
    time); figure files of an earlier build are then left as they are.

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
        group_figs, dataset_figs = _figures(analysis, out, runs.study.landscape)
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
    analysis: Analysis, out: Path, cfg: LandscapeConfig
) -> tuple[dict[str, list[FigureFile]], dict[str, FigureFile]]:
    """Draw every figure; a landscape that cannot be embedded is noted, not fatal."""
    from funcsim.errors import FuncsimError
    from funcsim.report import figures as F

    group_figs: dict[str, list[FigureFile]] = {}
    dataset_figs: dict[str, FigureFile] = {}
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
                figs.append(F.save_landscape(group, checkpoints, embedding, cfg, out))
            figs.append(F.save_proximity(group, out))
            figs.append(F.save_diversity(group, out))
        if len(panels) > 1:
            dataset_figs[dataset] = F.save_dataset_landscape(dataset, panels, cfg, out)
    return group_figs, dataset_figs


def _remove_stale_figures(out: Path, keep: list[str]) -> None:
    """Delete figure files of an earlier build that this build did not write."""
    folder = out / "figures"
    if not folder.is_dir():
        return
    wanted = {Path(k).name for k in keep}
    for path in folder.iterdir():
        if path.is_file() and path.suffix in (".png", ".svg") and path.name not in wanted:
            path.unlink()
