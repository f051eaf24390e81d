"""Every funcsim benchmark in one run, one table: figure, value, target, met?

    python bench/run_all.py --quick          # a few minutes: subsets, the quick study
    python bench/run_all.py                  # the full figures recorded in BENCHMARKS.md
    python bench/run_all.py --full-study     # also the 25-epoch fashion_mnist_lenet study

Each benchmark runs in a fresh process (its imports, threads and memory are its own):

* ``bench/bench_train.py``: training speed against a plain PyTorch loop, fraction of the
  matmul rate, capture share, bf16 (speed and its effect on the function), distillation;
* ``bench/bench_kernels.py``: LeNet's fused stages against PyTorch's kernels, in ``fit`` on
  one thread and stage by stage;
* the parallel local executor and the end-to-end wall time: ``funcsim run quick`` with
  ``--jobs 1`` and ``--jobs 2``, each a fresh process on its own temporary study folder; and
  (not with ``--quick``) the same grid on 6,000 Fashion-MNIST images, where jobs are long
  enough for parallel workers to pay, extrapolated to the 25-epoch fashion_mnist_lenet study;
* ``bench/bench_landscape.py``: the Gram route against scikit-learn's t-SNE on the raw
  vectors (400 x 10,000 x 100; ``--quick``: 100 x 2,000 x 100);
* storage: bytes per stored probability (a file written by ``funcsim.store``) and the size of
  a ``cifar100`` study's prediction store, computed from the preset's jobs.

Ratios are measured side by side in one run; absolute figures depend on the machine and its
load, both printed in the header (load average before and after). The exit status is 0 when
every benchmark ran, whether or not it met its target; 1 if one crashed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

TEST_SET = {
    "cifar100": (10_000, 100),
    "cifar10": (10_000, 10),
    "fashion_mnist": (10_000, 10),
    "mnist": (10_000, 10),
    "digits": (450, 10),
}
"""(test points, classes) of the datasets, for the computed store sizes (no download)."""


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    met: str = ""


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not Unix
        return "n/a"


def checkout_env() -> dict[str, str]:
    """The environment of every benchmark process: this checkout's ``src`` first on the path
    (whatever funcsim is installed), and funcsim's OpenMP wait policy (see funcsim/__init__)
    also for the scripts that import torch before funcsim."""
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run(cmd: list[str], *, timeout: float = 3600) -> str:
    """Run ``cmd`` (in :func:`checkout_env`), echo its output's tail on failure, return stdout."""
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=checkout_env(), timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


# --------------------------------------------------------------------------- benchmarks


def bench_train(quick: bool, tmp: Path) -> tuple[list[Row], dict]:
    out = tmp / "train.json"
    run([sys.executable, str(HERE / "bench_train.py"), "--json", str(out)] + quick * ["--quick"])
    f = json.loads(out.read_text())
    speed = f["speedup_vs_plain_tensor"]
    rows = [
        Row(
            "training fp32: fit (capture incl.) / plain tensor loop, images/s",
            f"{speed:.2f}x ({f['funcsim_img_s_with_capture']:,.0f} vs "
            f"{f['plain_tensor_img_s']:,.0f})",
            ">= 1.25x",
            _met(speed >= 1.25),
        ),
        Row(
            "  fit / plain DataLoader loop",
            f"{f['speedup_vs_plain_dataloader']:.2f}x ({f['plain_dataloader_img_s']:,.0f})",
        ),
        Row(
            "fit training rate / fp32 matmul rate",
            f"{f['fraction_of_matmul_rate']:.0%} (matmul {f['matmul_gflops']:.0f} GFLOP/s, "
            f"{f['lenet_train_mflop_per_image']:.1f} MFLOP/img)",
            ">= 60 %",
            _met(f["fraction_of_matmul_rate"] >= 0.60),
        ),
        Row(
            "  fit, fused stages / PyTorch's kernels (training rate)",
            f"{f['fused_kernels_speedup']:.2f}x "
            f"({f['funcsim_unfused_img_s_train_only']:,.0f} without)",
        ),
    ]
    native = f["bf16_native"]
    bf16 = f["bf16_speedup_vs_plain_tensor"]
    emulated = f.get("bf16_emulated_speedup_vs_plain_tensor")
    note = "native" if native else "not native: fit trains fp32"
    if emulated is not None:
        note += f"; emulated autocast {emulated:.2f}x"
    rows += [
        Row(
            "training sound (bf16 where native) / plain fp32 loop",
            f"{bf16:.2f}x ({note})",
            ">= 1.8x where supported",
            _met(bf16 >= 1.8) if native else "n/a",
        ),
        Row(
            "  bf16 vs fp32 same seed: disagreement / seed-vs-seed",
            f"{f['bf16_over_yardstick']:.2f} ({f['bf16_vs_fp32_disagreement']:.2%} vs "
            f"{f['seed_vs_seed_disagreement']:.2%}, digits, 8 epochs)",
            "report",
            "-",
        ),
        Row(
            "trajectory capture / epoch training time",
            f"{f['capture_share_of_epoch']:.1%}",
            "<= 10 %",
            _met(f["capture_share_of_epoch"] <= 0.10),
        ),
        Row(
            "distillation epoch, teacher cached / plain epoch",
            f"{f['distill_cached_epoch_ratio']:.2f} (+ one-off teacher pass "
            f"{f['distill_teacher_pass_epochs']:.2f} epoch)",
            "<= 1.10",
            _met(f["distill_cached_epoch_ratio"] <= 1.10),
        ),
        Row(
            "distillation epoch, teacher every step / plain epoch",
            f"{f['distill_online_epoch_ratio']:.2f}",
            "report (~1.3)",
            "-",
        ),
    ]
    return rows, f


def bench_kernels(quick: bool, tmp: Path) -> tuple[list[Row], dict]:
    out = tmp / "kernels.json"
    run([sys.executable, str(HERE / "bench_kernels.py"), "--json", str(out)] + quick * ["--quick"])
    f = json.loads(out.read_text())
    rows = [
        Row(
            "fit, 1 thread: both fused stages / first stage only / PyTorch's kernels",
            f"{f['fit_both_stages_img_s']:,.0f} / {f['fit_first_stage_img_s']:,.0f} / "
            f"{f['fit_pytorch_img_s']:,.0f} images/s (both / first "
            f"{f['fit_both_vs_first_stage']:.2f}x, both / PyTorch "
            f"{f['fit_both_vs_pytorch']:.2f}x)",
        ),
        Row(
            "  second stage, forward + backward: Winograd + sparse kernels / PyTorch's",
            f"{f['stage2_fused_forward_backward_ms']:.1f} / "
            f"{f['stage2_pytorch_forward_backward_ms']:.1f} ms per batch "
            f"({f['stage2_gradient_share']:.0%} of its pooled outputs pass a gradient)",
        ),
        Row(
            "  second stage, forward: Winograd kernel / PyTorch's",
            f"{f['stage2_fused_forward_ms']:.1f} / "
            f"{f['stage2_pytorch_forward_ms']:.1f} ms per batch",
        ),
        Row(
            "  first stage, forward + backward: fused kernel / PyTorch's",
            f"{f['stage1_fused_forward_backward_ms']:.1f} / "
            f"{f['stage1_pytorch_forward_backward_ms']:.1f} ms per batch",
        ),
        Row(
            "  executed FLOPs, 1 thread: fit's rate / 1-thread matmul",
            f"{f['fit_both_stages_fraction_of_matmul']:.0%} "
            f"({f['fit_both_stages_executed_gflops']:.1f} of {f['matmul_gflops_1_thread']:.0f} "
            f"GFLOP/s, {f['fused_mflop_per_image']:.1f} MFLOP/img; PyTorch's kernels "
            f"{f['fit_pytorch_fraction_of_matmul']:.0%} of {f['pytorch_mflop_per_image']:.1f})",
        ),
    ]
    for stage in ("first", "second"):
        key = f"stage{1 if stage == 'first' else 2}"
        if f"{key}_avx512_forward_backward_ms" in f:
            rows.append(
                Row(
                    f"  {stage} stage, fwd+bwd / forward: 512-bit build / 256-bit build",
                    f"{f[f'{key}_avx512_forward_backward_ms']:.2f} / "
                    f"{f[f'{key}_avx2_forward_backward_ms']:.2f} ms; "
                    f"{f[f'{key}_avx512_forward_ms']:.2f} / {f[f'{key}_avx2_forward_ms']:.2f} ms",
                )
            )
    if "distill_loss_fused_us" in f:
        rows.append(
            Row(
                "  distillation loss fwd+bwd (64x10): C kernel / PyTorch's (cross-entropy)",
                f"{f['distill_loss_fused_us']:.0f} / {f['distill_loss_pytorch_us']:.0f} us "
                f"({f['cross_entropy_pytorch_us']:.0f} us)",
            )
        )
    return rows, f


_SUMMARY = re.compile(r"(\d+) jobs, .* in ([0-9.]+)s on (.+)$", re.MULTILINE)


def funcsim_run(
    jobs: int, tmp: Path, *overrides: str, tag: str = "quick"
) -> dict[str, float | str]:
    """``funcsim run quick --jobs N [--set ...]`` in a fresh process on a fresh folder."""
    out = tmp / f"{tag}-j{jobs}"
    t0 = time.perf_counter()
    settings = [arg for o in overrides for arg in ("--set", o)]
    stdout = run(
        [sys.executable, "-m", "funcsim", "--quiet", "run", "quick", "-o", str(out)]
        + ["--jobs", str(jobs), *settings]
    )
    wall = time.perf_counter() - t0
    m = _SUMMARY.search(stdout)
    return {
        "wall": wall,
        "jobs_phase": float(m.group(2)) if m else float("nan"),
        "executor": m.group(3) if m else "?",
    }


def bench_study(tmp: Path) -> tuple[list[Row], dict]:
    """The quick study with --jobs 1 and --jobs 2, three times each, interleaved: the fastest
    counts (a few seconds each, so a busy second of the host moves the ratio by 0.05-0.25)."""
    runs = [funcsim_run(jobs, tmp, tag=f"quick{i}") for i in range(3) for jobs in (1, 2)]
    one = min(runs[0::2], key=lambda r: float(r["wall"]))
    two = min(runs[1::2], key=lambda r: float(r["wall"]))
    ratio = float(two["wall"]) / float(one["wall"])
    phase = float(two["jobs_phase"]) / float(one["jobs_phase"])
    rows = [
        Row(
            "parallel executor: quick study wall, --jobs 2 / --jobs 1",
            f"{ratio:.2f} ({float(two['wall']):.1f} s vs {float(one['wall']):.1f} s; "
            f"jobs phase alone {phase:.2f})",
            "<= 0.75",
            _met(ratio <= 0.75),
        ),
        Row(
            "end to end: `funcsim run quick` (fresh process, --jobs 1)",
            f"{float(one['wall']):.1f} s (jobs {float(one['jobs_phase']):.1f} s)",
            "<= 60 s",
            _met(float(one["wall"]) <= 60),
        ),
    ]
    return rows, {"jobs1": one, "jobs2": two, "runs": runs}


SCALING = {"train": 6000, "test": 1000, "epochs": 8}
"""The quick study's grid on a Fashion-MNIST subset: jobs long enough for --jobs 2 to pay."""

FULL_STUDY_IMAGES = 6 * 25 * 60_000
"""Training images of fashion_mnist_lenet: 3 seeds + 3 students x 25 epochs x 60,000."""


def bench_scaling(tmp: Path) -> tuple[list[Row], dict]:
    """--jobs 2 / --jobs 1 where jobs are larger, and the full study extrapolated from it."""
    settings = (
        "datasets=[fashion_mnist]",
        "train.batch_size=64",  # the full study's batch (quick uses 32)
        f"data.train_limit={SCALING['train']}",
        f"data.test_limit={SCALING['test']}",
    )
    one = funcsim_run(1, tmp, *settings, tag="fmnist")
    two = funcsim_run(2, tmp, *settings, tag="fmnist")
    ratio = float(two["wall"]) / float(one["wall"])
    images = 6 * SCALING["epochs"] * SCALING["train"]
    estimate = float(two["jobs_phase"]) * FULL_STUDY_IMAGES / images
    rows = [
        Row(
            f"  same grid, Fashion-MNIST {SCALING['train']:,}/{SCALING['test']:,}: --jobs 2 / 1",
            f"{ratio:.2f} ({float(two['wall']):.0f} s vs {float(one['wall']):.0f} s)",
            "<= 0.75",
            _met(ratio <= 0.75),
        ),
        Row(
            "end to end: fashion_mnist_lenet, 25 epochs, --jobs 2 (extrapolated)",
            f"~{estimate / 60:.0f} min (the row above's jobs phase x "
            f"{FULL_STUDY_IMAGES / images:.1f}; run it: --full-study)",
            "<= 25 min",
            _met(estimate <= 25 * 60),
        ),
    ]
    return rows, {"jobs1": one, "jobs2": two, "extrapolated_full_study_s": estimate}


def bench_full_study(tmp: Path) -> tuple[list[Row], dict]:
    t0 = time.perf_counter()
    out = tmp / "fmnist"
    run(
        [sys.executable, "-m", "funcsim", "--quiet", "run", "fashion_mnist_lenet", "-o", str(out)]
        + ["--jobs", "2"],
        timeout=4 * 3600,
    )
    wall = time.perf_counter() - t0
    row = Row(
        "end to end: fashion_mnist_lenet study (25 epochs, --jobs 2)",
        f"{wall / 60:.1f} min",
        "<= 25 min",
        _met(wall <= 25 * 60),
    )
    return [row], {"wall": wall}


def bench_landscape(quick: bool, tmp: Path) -> tuple[list[Row], dict]:
    out = tmp / "landscape.json"
    cmd = [sys.executable, str(HERE / "bench_landscape.py"), "--json", str(out)]
    run(cmd + quick * ["--quick"] + ["--workdir", str(tmp)], timeout=3 * 3600)
    f = json.loads(out.read_text())
    by = {r["route"]: r for r in f["routes"]}
    g = by["gram"]
    size = f"{f['checkpoints']}x{f['points']:,}x{f['classes']}"
    rows = []
    for name, label in (("sklearn", "default threads"), ("sklearn1", "1 OpenMP thread")):
        s = by.get(name)
        if s is None:
            continue
        bound = ">= " if s["capped"] else ""
        speed = s["wall_s"] / g["wall_s"]
        rows.append(
            Row(
                f"landscape {size}: sklearn t-SNE ({label}) / Gram route, time",
                f"{bound}{speed:.1f}x ({s['wall_s']:.1f} s vs {g['wall_s']:.1f} s)",
                ">= 10x",
                _met(speed >= 10),
            )
        )
        if not s["capped"]:
            mem = g["peak_anon_bytes"] / s["peak_anon_bytes"]
            rows.append(
                Row(
                    f"  peak anonymous memory, Gram / sklearn ({label})",
                    f"{mem:.3f} ({g['peak_anon_bytes'] / 2**20:,.0f} vs "
                    f"{s['peak_anon_bytes'] / 2**20:,.0f} MiB)",
                    "<= 0.25",
                    _met(mem <= 0.25),
                )
            )
    tw = f.get("trustworthiness", {})
    if tw:
        rows.append(
            Row(
                "  trustworthiness (5-NN), Gram / sklearn",
                " / ".join(f"{tw[r]:.3f}" for r in ("gram", "sklearn1", "sklearn") if r in tw),
            )
        )
    return rows, f


def bench_storage(tmp: Path) -> tuple[list[Row], dict]:
    from funcsim import store
    from funcsim.config import load_study_config
    from funcsim.study.jobs import expand

    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=(26, 10_000)).astype(np.float32)
    path = tmp / "predictions.npy"
    store.write_npy(path, probs)
    per_prob = path.stat().st_size / probs.size

    cfg = load_study_config("cifar100")
    n, c = TEST_SET[cfg.datasets[0]]
    sets_per_arch: dict[str, int] = {}
    for job in expand(cfg):
        p = job.params
        # a trajectory per training (epochs + 1 sets), one set per post-hoc model
        count = int(p["train"]["epochs"]) + 1 if job.kind in ("train", "distill") else 1
        sets_per_arch[p["arch"]] = sets_per_arch.get(p["arch"], 0) + count
    per_arch = {a: k * n * c * per_prob for a, k in sets_per_arch.items()}
    total = sum(per_arch.values())
    detail = ", ".join(f"{a} {k} sets {per_arch[a] / 1e9:.2f} GB" for a, k in sets_per_arch.items())
    rows = [
        Row("storage: bytes per stored probability", f"{per_prob:.3f} (float32 .npy)", "report"),
        Row(
            "storage: cifar100 study prediction store (computed)",
            f"{total / 1e9:.2f} GB ({detail}; x {n:,} x {c})",
            "report",
        ),
    ]
    return rows, {"bytes_per_probability": per_prob, "sets_per_arch": sets_per_arch}


# --------------------------------------------------------------------------- main


def machine() -> str:
    import torch

    sys.path.insert(0, str(HERE))
    from bench_train import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
        f"{checkout_env()['OMP_WAIT_POLICY']}), GPU: {gpu}"
    )


def table(rows: list[Row]) -> str:
    head = Row("figure", "value", "target", "met?")
    widths = [max(len(getattr(r, f)) for r in [head, *rows]) for f in ("figure", "value")]
    lines = []
    for i, r in enumerate([head, *rows]):
        lines.append(
            f"| {r.figure:<{widths[0]}} | {r.value:<{widths[1]}} | {r.target:<24} | {r.met:<4} |"
        )
        if i == 0:
            lines.append(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * 26}|------|")
    return "\n".join(lines)


PARTS = ("train", "kernels", "study", "scaling", "landscape", "storage", "full_study")
"""Every benchmark, in the order they run."""


def select_parts(*, quick: bool, full_study: bool, only: str | None) -> list[str]:
    """The benchmarks to run: all but ``full_study`` (and ``scaling`` with ``quick``) unless
    ``full_study`` adds it; ``only`` (comma-separated) runs exactly the parts it names."""
    if only:
        wanted = only.split(",")
        unknown = sorted(set(wanted) - set(PARTS))
        if unknown:
            raise ValueError(
                f"--only: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}"
            )
        return [p for p in PARTS if p in wanted]
    skipped = {name for name, skip in (("scaling", quick), ("full_study", not full_study)) if skip}
    return [p for p in PARTS if p not in skipped]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    ap.add_argument("--full-study", action="store_true", help="also the 25-epoch study")
    ap.add_argument("--only", help=f"comma-separated subset of: {','.join(PARTS)}")
    ap.add_argument("--json", type=Path, help="write every figure as JSON here")
    args = ap.parse_args(argv)
    try:
        parts = select_parts(quick=args.quick, full_study=args.full_study, only=args.only)
    except ValueError as err:
        ap.error(str(err))

    sys.path.insert(0, str(HERE.parent / "src"))  # this checkout's funcsim, as the children
    started = datetime.datetime.now().astimezone()
    header = [
        f"command: python bench/run_all.py {' '.join(argv if argv is not None else sys.argv[1:])}",
        f"machine: {machine()}",
        f"date: {started:%Y-%m-%d %H:%M %Z}; load average (1, 5, 15 min) at start: "
        f"{load_average()}",
    ]
    print("\n".join(header), flush=True)
    rows: list[Row] = []
    figures: dict[str, object] = {}
    failed = False
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="funcsim-bench-") as name:
        tmp = Path(name)
        for part in parts:
            try:
                if part == "train":
                    new, figures[part] = bench_train(args.quick, tmp)
                elif part == "kernels":
                    new, figures[part] = bench_kernels(args.quick, tmp)
                elif part == "study":
                    new, figures[part] = bench_study(tmp)
                elif part == "scaling":
                    new, figures[part] = bench_scaling(tmp)
                elif part == "landscape":
                    new, figures[part] = bench_landscape(args.quick, tmp)
                elif part == "storage":
                    new, figures[part] = bench_storage(tmp)
                else:
                    new, figures[part] = bench_full_study(tmp)
            except Exception as err:  # noqa: BLE001 - report it in the table, go on
                failed = True
                new = [Row(f"{part}: FAILED", str(err).splitlines()[0][:120])]
                print(err, file=sys.stderr)
            rows += new
            print(f"[{part} done, load average {load_average()}]", flush=True)
    header.append(f"load average at end: {load_average()}; total {time.perf_counter() - t0:.0f} s")
    print()
    print("\n".join(header))
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "figures": figures}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
