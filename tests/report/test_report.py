"""The study report: files, table layout, numbers equal to the similarity functions', HTML."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers.study import make_study

from funcsim import similarity, store
from funcsim.cli import main
from funcsim.errors import StoreError
from funcsim.report import build_report
from funcsim.report.analysis import BOOT_SEED, N_BOOT

PAPER_COLUMNS = [
    "KD α=0.1",
    "KD α=0.5",
    "KD α=0.9",
    "16-bit",
    "8-bit",
    "L1 10%",
    "L1 30%",
    "L1 50%",
    "L1 70%",
    "L1 90%",
]
ARCHS = ("lenet", "resnet50")
FIGURES = [
    f"{kind}_mnist_{arch}" for arch in ARCHS for kind in ("landscape", "proximity", "diversity")
] + ["landscape_mnist"]


@pytest.fixture(scope="module")
def report_dir(study_dir: Path) -> Path:
    return build_report(study_dir)


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _runs(study_dir: Path, arch: str = "lenet") -> dict[str, store.RunRecord]:
    """Every finished job of ``arch`` by its label (read straight from the store)."""
    runs = {}
    for folder in sorted((study_dir / "jobs").iterdir()):
        if store.is_done(folder):
            run = store.load_run(folder)
            if run.config["arch"] == arch:
                runs[run.config["label"]] = run
    return runs


def _final(run: store.RunRecord) -> np.ndarray:
    return np.asarray(run.predictions()[-1])


# --------------------------------------------------------------------------- files


def test_every_file_is_written(report_dir: Path) -> None:
    names = [
        "accuracy_deviation.csv",
        "accuracy_deviation.md",
        "accuracy_deviation.tex",
        "similarity.csv",
        "similarity.md",
        "report.md",
        "report.html",
    ]
    names += [f"figures/{stem}.{ext}" for stem in FIGURES for ext in ("png", "svg")]
    for name in names:
        path = report_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert report_dir == report_dir.parent / "report"
    assert not list(report_dir.rglob(".*.tmp")), "temporary files left behind"
    png = (report_dir / "figures" / "proximity_mnist_lenet.png").read_bytes()
    assert png.startswith(b"\x89PNG")


# --------------------------------------------------------------------------- accuracy table


def test_accuracy_deviation_csv_matches_similarity_functions(
    report_dir: Path, study_dir: Path
) -> None:
    rows = _csv(report_dir / "accuracy_deviation.csv")
    assert [(r["dataset"], r["architecture"]) for r in rows] == [("mnist", a) for a in ARCHS]
    assert list(rows[0])[:3] == ["dataset", "architecture", "base_accuracy"]
    assert list(rows[0])[3:] == PAPER_COLUMNS
    by_column = {
        "KD α=0.1": "KD α=0.1",
        "KD α=0.5": "KD α=0.5",
        "KD α=0.9": "KD α=0.9",
        "16-bit": "16-bit",
        "8-bit": "8-bit",
        **{f"L1 {a}%": f"prune {a}%" for a in (10, 30, 50, 70, 90)},
    }
    for row, arch in zip(rows, ARCHS, strict=True):
        runs = _runs(study_dir, arch)
        base = runs["base (seed 0)"]
        labels = base.labels()
        acc_base = similarity.accuracy(_final(base), labels)
        assert float(row["base_accuracy"]) == pytest.approx(acc_base, abs=1e-6)
        for column, label in by_column.items():
            acc = similarity.accuracy(_final(runs[label]), labels)
            expected = similarity.relative_accuracy_deviation(acc, acc_base)
            assert row[column] == f"{expected:.2f}", (arch, column)


def test_accuracy_deviation_markdown_and_latex(report_dir: Path) -> None:
    md = (report_dir / "accuracy_deviation.md").read_text()
    assert "## MNIST" in md
    header = next(line for line in md.splitlines() if line.startswith("| Architecture"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["Architecture", *PAPER_COLUMNS]
    assert re.search(r"^\| LeNet \|", md, re.M) and re.search(r"^\| ResNet-50 \|", md, re.M)

    tex = (report_dir / "accuracy_deviation.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-4}"):
        assert rule in tex
    assert r"\multicolumn{3}{c}{Knowledge Distillation with $\alpha$}" in tex
    assert r"\multicolumn{5}{c}{L1 Pruning}" in tex
    assert r"10\% & 30\%" in tex
    assert tex.count(r"\begin{table}") == 1 and tex.count(r"\end{table}") == 1
    # every % and _ is escaped
    assert not re.search(r"(?<!\\)[%_]", tex.replace(r"\label{tab:accuracy-deviation-mnist}", ""))
    for arch in ("LeNet", "ResNet-50"):
        body = next(line for line in tex.splitlines() if line.startswith(f"{arch} &"))
        assert body.count("&") == len(PAPER_COLUMNS)


# --------------------------------------------------------------------------- similarity


@pytest.mark.parametrize("arch", ARCHS)
def test_similarity_csv_matches_similarity_functions(
    report_dir: Path, study_dir: Path, arch: str
) -> None:
    table = _csv(report_dir / "similarity.csv")
    assert len(table) == 2 * len(_runs(study_dir, arch))
    rows = {r["model"]: r for r in table if r["architecture"] == arch}
    runs = _runs(study_dir, arch)
    assert set(rows) == set(runs)
    base = _final(runs["base (seed 0)"])
    labels = runs["base (seed 0)"].labels()
    independents = [_final(runs[f"independent (seed {s})"]) for s in (1, 2)]
    for label, run in runs.items():
        row, pred = rows[label], _final(run)
        assert row["role"] == run.config["role"]
        assert row["dataset"] == "mnist" and row["job_id"] == run.path.name
        assert float(row["accuracy"]) == pytest.approx(similarity.accuracy(pred, labels), 1e-5)
        for key, fn in (
            ("disagreement", similarity.disagreement),
            ("js_divergence", similarity.js_divergence),
            ("kl_divergence", similarity.kl_divergence),
            ("l2_distance", similarity.l2_distance),
        ):
            assert float(row[key]) == pytest.approx(fn(base, pred), rel=1e-5, abs=1e-9), key
        if run.config["role"] == "base":
            assert row["verdict"] == "reference" and row["proximity"] == ""
            continue
        if run.config["role"] == "independent":
            yardstick = [i for i in independents if not np.array_equal(i, pred)]
        else:
            yardstick = independents
        expected = similarity.proximity(
            pred, base, yardstick, metric="disagreement", n_boot=N_BOOT, random_state=BOOT_SEED
        )
        assert float(row["proximity"]) == pytest.approx(expected.value, rel=1e-5)
        assert float(row["proximity_low"]) == pytest.approx(expected.low, rel=1e-5, abs=1e-9)
        assert float(row["proximity_high"]) == pytest.approx(expected.high, rel=1e-5, abs=1e-9)
        assert row["verdict"] == expected.verdict
    # the synthetic study behaves as the paper found
    assert rows["16-bit"]["verdict"] == "function-preserving"
    assert rows["KD α=0.5"]["verdict"] == "independent-like"
    assert rows["8-bit"]["storage_bytes"] == "8000"
    assert float(rows["prune 30%"]["sparsity"]) == pytest.approx(0.3)


def test_similarity_markdown_lists_every_model(report_dir: Path, study_dir: Path) -> None:
    md = (report_dir / "similarity.md").read_text()
    assert "## LeNet on MNIST" in md and "## ResNet-50 on MNIST" in md
    section = md.split("## ResNet-50 on MNIST")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["Model", "Method", "Accuracy %"]
    assert "Proximity [95% CI]" in header and "Verdict" in header
    assert len(lines) - 1 == len(_runs(study_dir))  # header + one row per model
    assert "measured against the other independent models" in md


# --------------------------------------------------------------------------- documents


def test_report_md_reads_as_a_short_paper(report_dir: Path, study_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert md.startswith("# ")
    for section in ("## Summary", "## Setup", "## Accuracy deviation", "## Findings"):
        assert section in md
    for label in _runs(study_dir):
        assert label in md, label
    for stem in FIGURES:
        assert f"](figures/{stem}.png)" in md
    # findings come from the numbers: one sentence per method family
    findings = md.split("## Findings", 1)[1]
    for family in ("Knowledge distillation:", "Quantization:", "L1 pruning:", "Yardstick:"):
        assert family in findings
    rows = {r["model"]: r for r in _csv(report_dir / "similarity.csv")}
    kd = rows["KD α=0.5"]
    assert f"KD α=0.5 {100 * float(kd['disagreement']):.2f} %" in findings
    assert f"proximity {float(kd['proximity']):.2f} [{float(kd['proximity_low']):.2f}" in findings
    # the KD students keep their accuracy within 1 % but are independent-like
    assert "Accuracy alone misleads for KD α=0.1" in findings
    # the failed job is listed with its message
    assert "## Failed jobs" in md and "RuntimeError: out of memory" in md


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data") and value is not None:
                self.urls.append((tag, name, value))


def test_report_html_is_self_contained(report_dir: Path, study_dir: Path) -> None:
    text = (report_dir / "report.html").read_text()
    parser = _Collector()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert not re.search(r"url\(|@import", text), "CSS must not load anything"
    images = [v for tag, name, v in parser.urls if tag == "img"]
    assert len(images) == len(FIGURES)
    assert all(v.startswith("data:image/png;base64,") for _, _, v in parser.urls)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<table>" in text and "<caption>" in text
    assert 'colspan="3"' in text  # the KD α column group, as in the paper
    for label in _runs(study_dir):
        assert label in text


def test_rebuilding_gives_the_same_tables(study_dir: Path, report_dir: Path) -> None:
    def tables() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in report_dir.glob("[as]*.*")}

    first = tables()
    assert len(first) == 5
    assert build_report(study_dir, figures=False) == report_dir
    assert tables() == first


def test_figures_drawn_by_two_processes_are_the_same_files(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", archs=("lenet", "resnet50"), failed=False)

    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    serial = files(build_report(run_dir, workers=1))
    # a fresh process, as `funcsim run --jobs 2` builds it: no other thread, so it forks
    command = [sys.executable, "-m", "funcsim", "report", str(run_dir), "--jobs", "2"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    parallel = files(run_dir / "report")
    assert parallel == serial
    assert sum(name.endswith(".svg") for name in serial) == 7  # 2 x 3 and the dataset's


def test_drawings_run_in_forked_processes_unless_threads_run() -> None:
    import os
    import threading

    from funcsim.report import _draw

    code = (
        "import os; from funcsim.report import _draw; pids = _draw([os.getpid] * 4, 2); "
        "print(len(pids), os.getpid() in pids, len(set(pids)))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split()[:2] == ["4", "False"]  # in a fresh process: forked
    drawings = [os.getpid] * 4
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:  # forking beside another thread could deadlock the child: one after the other here
        assert _draw(drawings, 2) == [os.getpid()] * 4  # type: ignore[arg-type]
    finally:
        release.set()
        other.join()


def test_a_drawing_error_reaches_the_caller_from_a_process() -> None:
    from funcsim.report import _draw

    def fail() -> None:
        raise ValueError("cannot draw")

    with pytest.raises(ValueError, match="cannot draw"):
        _draw([fail, fail], 2)  # type: ignore[list-item]


def test_stale_figures_are_removed(tmp_path: Path) -> None:
    from funcsim.report import _remove_stale_figures

    folder = tmp_path / "figures"
    folder.mkdir()
    for name in ("landscape_old.png", "landscape_new.png", "landscape_new.svg", "notes.txt"):
        (folder / name).write_text("x")
    _remove_stale_figures(tmp_path, ["figures/landscape_new.png", "figures/landscape_new.svg"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "landscape_new.png",
        "landscape_new.svg",
        "notes.txt",
    ]


def test_tables_without_figures(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", failed=False)
    out = build_report(run_dir, figures=False)
    assert not (out / "figures").exists()
    assert (out / "similarity.csv").is_file()
    html = (out / "report.html").read_text()
    assert "<img" not in html and "Failed jobs" not in html


# --------------------------------------------------------------------------- layouts


def test_several_datasets_and_architectures(tmp_path: Path) -> None:
    run_dir = make_study(
        tmp_path / "study",
        datasets=("mnist", "cifar10"),
        archs=("lenet", "resnet50"),
        cross_arch=True,
        beyond_paper=True,
        failed=False,
    )
    out = build_report(run_dir, figures=False)
    rows = _csv(out / "accuracy_deviation.csv")
    assert [(r["dataset"], r["architecture"]) for r in rows] == [
        ("mnist", "lenet"),
        ("mnist", "resnet50"),
        ("cifar10", "lenet"),
        ("cifar10", "resnet50"),
    ]
    # columns beyond the paper come after the paper's own
    assert list(rows[0])[3:] == [
        *PAPER_COLUMNS,
        "KD α=0.5 → tiny",
        "structured 30%",
        "extra 8-bit",
        "extra int8 static",
    ]
    tex = (out / "accuracy_deviation.tex").read_text()
    assert tex.count(r"\begin{table}") == 2
    assert r"\multicolumn{1}{c}{KD with $\alpha$ $\to$ tiny}" not in tex  # one column: no span
    assert r"KD with $\alpha$ $\to$ tiny & Structured L1 Pruning & \multicolumn{2}{c}" in tex
    md = (out / "accuracy_deviation.md").read_text()
    assert "## MNIST" in md and "## CIFAR-10" in md and "| ResNet-50 |" in md
    assert len(_csv(out / "similarity.csv")) == 4 * 17


def test_a_single_independent_is_the_yardstick(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", n_independents=1, failed=False)
    out = build_report(run_dir, figures=False)
    rows = {r["model"]: r for r in _csv(out / "similarity.csv")}
    ind = rows["independent (seed 1)"]
    assert float(ind["proximity"]) == 1.0
    assert ind["proximity_low"] == "" and "by definition" in ind["note"]
    assert "1.00 (by definition)" in (out / "similarity.md").read_text()


def test_without_independents_there_is_no_proximity(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", n_independents=0, failed=False)
    out = build_report(run_dir, figures=False)
    rows = {r["model"]: r for r in _csv(out / "similarity.csv")}
    assert rows["8-bit"]["proximity"] == "" and rows["8-bit"]["verdict"] == "n/a"
    assert "no independent models" in rows["8-bit"]["note"]
    assert "no yardstick" in (out / "report.md").read_text()


def test_a_group_without_base_is_named_not_analysed(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", failed=False)
    shutil.rmtree(next((run_dir / "jobs").glob("train-*-base-base_seed_0")))
    out = build_report(run_dir, figures=False)
    md = (out / "report.md").read_text()
    assert "## Not analysed" in md and "no finished base model" in md
    assert len(_csv(out / "similarity.csv")) == 0


def test_jobs_of_an_earlier_configuration_are_ignored(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study", failed=False)
    record = json.loads((run_dir / "study.json").read_text())
    record["jobs"] = [j for j in record["jobs"] if j["role"] != "prune"]
    record["jobs"].append({"id": "train-never-run", "kind": "train", "deps": []})
    store.write_json(run_dir / "study.json", record)
    out = build_report(run_dir, figures=False)
    labels = {r["model"] for r in _csv(out / "similarity.csv")}
    assert labels and not any(label.startswith("prune") for label in labels)
    assert "L1 10%" not in _csv(out / "accuracy_deviation.csv")[0]
    assert "train-never-run" in (out / "report.md").read_text()


def test_not_a_study_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError, match="not a funcsim study"):
        build_report(tmp_path)
    with pytest.raises(StoreError, match="no such run folder"):
        build_report(tmp_path / "missing")
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_report_command(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(study_dir), "--no-figures"]) == 0
    assert "report.html" in capsys.readouterr().out


def test_a_study_without_finished_models(tmp_path: Path) -> None:
    run_dir = make_study(tmp_path / "study")
    for folder in (run_dir / "jobs").iterdir():
        if store.is_done(folder):
            shutil.rmtree(folder)
    out = build_report(run_dir)
    md = (out / "report.md").read_text()
    assert "No dataset/architecture pair has a finished base model yet." in md
    assert "RuntimeError: out of memory" in md and "13 job folder(s) unfinished" in md
    assert (out / "accuracy_deviation.csv").read_text().startswith("dataset,architecture")
    assert not (out / "figures").exists()


def _last_line_of_a_fresh_build(code: str, study_dir: Path, tmp_path: Path) -> str:
    """Run ``code`` (which builds the report of ``sys.argv[1]``) in a fresh interpreter on a
    copy of ``study_dir``; return the last line it printed."""
    copy = shutil.copytree(study_dir, tmp_path / "study")
    result = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_preload_imports_what_building_a_report_imports(study_dir: Path, tmp_path: Path) -> None:
    """After ``preload`` (run by ``funcsim run --jobs N`` while workers start) the report
    imports nothing that costs time: no module of torch, scikit-learn, matplotlib or scipy."""
    code = (
        "import sys; from funcsim.report import build_report, preload; preload(); "
        "before = set(sys.modules); build_report(sys.argv[1]); "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('torch', 'sklearn', 'matplotlib', 'scipy')))"
    )
    assert _last_line_of_a_fresh_build(code, study_dir, tmp_path) == "[]"


def test_building_a_report_never_imports_torch(study_dir: Path, tmp_path: Path) -> None:
    """The report reads stored JSON and arrays: ``funcsim report`` does not pay torch's import."""
    code = (
        "import sys; from funcsim.report import build_report; build_report(sys.argv[1]); "
        "print('torch' in sys.modules)"
    )
    assert _last_line_of_a_fresh_build(code, study_dir, tmp_path) == "False"


@pytest.mark.parametrize(
    ("landscape", "words"),
    [
        ({}, "t-SNE (exact up to 1,000 checkpoints, Barnes-Hut beyond; perplexity adapted"),
        (
            {"tsne_method": "barnes_hut", "perplexity": 12},
            "(Barnes-Hut, scikit-learn's default; perplexity 12;",
        ),
        ({"method": "pca"}, "with PCA (exact; random state 42)"),
    ],
)
def test_setup_names_the_landscape_method(landscape: dict, words: str) -> None:
    from funcsim.config import StudyConfig
    from funcsim.report._sections import setup_items
    from funcsim.report.analysis import Analysis

    study = StudyConfig.model_validate({"landscape": landscape})
    items = setup_items(study, Analysis(groups=[], problems=[]))
    assert any(words in item for item in items), items
