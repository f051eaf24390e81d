"""Benchmark: FunctionalLandscape (Gram route) vs scikit-learn t-SNE on the raw vectors.

    python bench/bench_landscape.py --quick          # about a minute: 100 x 2,000 x 100
    python bench/bench_landscape.py                  # 400 checkpoints x 10,000 points x 100
    python bench/bench_landscape.py --json OUT       # also write the figures as JSON
    python bench/bench_landscape.py --tracemalloc    # also Python-tracked peaks (extra runs)

Synthetic softmax outputs shaped like a study (``--runs`` training trajectories of
``K / runs`` checkpoints each, moving from near-uniform outputs at epoch 0 to a run-specific
function) are written once, chunk by chunk, to a float32 ``.npy`` in a temporary folder
(1.6 GB for the full size). Each route then runs in its own subprocess, so that its time and
memory are its own:

* ``gram``: ``FunctionalLandscape("tsne").fit(np.load(path, mmap_mode="r"))``;
* ``sklearn``: the paper's route, the array loaded whole into RAM, flattened to
  ``(K, N * C)`` float32 and given to ``sklearn.manifold.TSNE`` with its defaults
  (``init="pca"``, Barnes-Hut) and the same perplexity and ``random_state``;
* ``sklearn1``: the same with OpenMP limited to one thread, as ``FunctionalLandscape`` runs
  its t-SNE step (libgomp's spinning threads slow small t-SNE problems badly on a busy
  machine); BLAS keeps its threads. ``gram`` vs ``sklearn1`` isolates the Gram route's gain.

Reported per route, timed after its imports: wall and CPU time of loading + fitting, peak
RSS (``VmHWM``: also counts the interpreter, its imports and any memory-mapped file pages the
route touched) and peak anonymous RSS (sampled every 20 ms from ``/proc/self/status``: what
the route allocated, plus the interpreter). With ``--tracemalloc`` each route runs a second
time to report the peak of Python-tracked allocations (NumPy included) as well; that run is
not timed, because tracing slows the Gram route by about 40 % (its t-SNE and chunk loop
allocate many small arrays) and scikit-learn's route not at all. The baseline is killed
after ``--cap`` seconds (default 600) and then reported as a lower bound (``>``). The two
embeddings are compared by Procrustes disparity (0 = identical up to rotation, scale and
reflection; t-SNE on float32 vs float64 distances may legitimately land in another local
optimum) and each by its trustworthiness (scikit-learn, 5 neighbours, on the exact distances;
1 = neighbourhoods kept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

RANDOM_STATE = 42
SAMPLE_S = 0.02  # anonymous-RSS sampling period
QUICK = {"checkpoints": 100, "points": 2000, "classes": 100, "runs": 4}
FULL = {"checkpoints": 400, "points": 10_000, "classes": 100, "runs": 16}
ROUTES = ("gram", "sklearn1", "sklearn")


# ----------------------------------------------------------------------------- data


def generate(path: Path, k: int, n: int, c: int, runs: int, seed: int = 0) -> None:
    """Write K softmax arrays (N, C) as float32 to ``path``, one checkpoint at a time."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(scale=2.0, size=(n, c)).astype(np.float32)  # what every run learns
    per_run = max(1, k // runs)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(k, n, c))
    final = None
    for j in range(k):
        run, epoch = divmod(j, per_run)
        if epoch == 0 or final is None:
            # each run converges to its own function: the shared signal plus its own noise
            final = shared + rng.normal(scale=1.5, size=(n, c)).astype(np.float32)
        t = min(1.0, epoch / max(1, per_run - 1))
        z = 4.0 * t * final + rng.normal(scale=0.3, size=(n, c)).astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[j] = e / e.sum(axis=1, keepdims=True)
    out.flush()
    del out


# ----------------------------------------------------------------------------- workers


class _AnonSampler(threading.Thread):
    """Samples RssAnon of this process until stopped; keeps the maximum (bytes)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _status_bytes("RssAnon"))
            time.sleep(SAMPLE_S)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))
        return self.peak


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def worker(route: str, data: Path, perplexity: float, out: Path, trace: bool = False) -> None:
    """Run one route, save its embedding to ``out`` and print a JSON line of measurements
    (with ``trace``, also the peak of Python-tracked allocations; tracing slows the route)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from funcsim.landscape import FunctionalLandscape

    sampler = _AnonSampler()  # imports done: measure the route only
    sampler.start()
    if trace:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    mm = np.load(data, mmap_mode="r")
    if route == "gram":
        est = FunctionalLandscape("tsne", perplexity=perplexity, random_state=RANDOM_STATE)
        embedding = est.fit(mm).embedding_
        t_load = 0.0  # reads the memory map chunk by chunk inside fit
    else:
        raw = np.array(mm).reshape(mm.shape[0], -1)  # (K, N*C) float32, as the paper did
        t_load = time.perf_counter() - t0
        tsne = TSNE(perplexity=perplexity, random_state=RANDOM_STATE)
        with threadpool_limits(limits=1 if route == "sklearn1" else None, user_api="openmp"):
            embedding = tsne.fit_transform(raw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, py_peak = tracemalloc.get_traced_memory() if trace else (0, None)
    anon_peak = sampler.stop()
    np.save(out, embedding)
    print(
        json.dumps(
            {
                "route": route,
                "wall_s": wall,
                "load_s": t_load,
                "cpu_s": cpu,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "peak_anon_bytes": anon_peak,
                "py_peak_bytes": py_peak,
            }
        )
    )


def run_route(
    route: str, data: Path, perplexity: float, out: Path, cap: float, trace: bool = False
) -> dict:
    """One route in a fresh process, timed; with ``trace``, once more for tracemalloc's peak."""
    cmd = [sys.executable, __file__, "--worker", route, "--data", str(data)]
    cmd += ["--perplexity", str(perplexity), "--out", str(out)]
    result = _run_worker(route, cmd, cap)
    if trace and not result["capped"]:
        result["py_peak_bytes"] = _run_worker(route, cmd + ["--trace"], cap).get("py_peak_bytes")
    return result


def _run_worker(route: str, cmd: list[str], cap: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cap, check=False)
    except subprocess.TimeoutExpired:
        return {"route": route, "capped": True, "wall_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        raise RuntimeError(f"{route} worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["capped"] = False
    return result


# ----------------------------------------------------------------------------- report


def _mib(x: float) -> str:
    return f"{x / 2**20:,.0f}"


def report(results: list[dict], k: int, n: int, c: int, raw_bytes: int) -> None:
    print(f"\nK={k} checkpoints x N={n} points x C={c} classes, float32 raw {_mib(raw_bytes)} MiB")
    head = f"{'route':<10}{'wall s':>10}{'load s':>9}{'cpu s':>9}"
    head += f"{'peak RSS MiB':>15}{'peak anon MiB':>15}{'tracemalloc MiB':>17}"
    print(head)
    print("-" * len(head))
    for r in results:
        if r["capped"]:
            print(f"{r['route']:<10}{'>' + format(r['wall_s'], '.1f'):>10}  (killed at the cap)")
            continue
        print(
            f"{r['route']:<10}{r['wall_s']:>10.1f}{r['load_s']:>9.1f}{r['cpu_s']:>9.1f}"
            f"{_mib(r['peak_rss_bytes']):>15}{_mib(r['peak_anon_bytes']):>15}"
            f"{_mib(r['py_peak_bytes']) if r.get('py_peak_bytes') else '-':>17}"
        )
    by = {r["route"]: r for r in results}
    g = by.get("gram")
    if g is None or g["capped"]:
        return
    for name in ("sklearn1", "sklearn"):
        s = by.get(name)
        if s is None:
            continue
        bound = ">= " if s["capped"] else ""
        line = f"{name} / gram: time {bound}{s['wall_s'] / g['wall_s']:.1f}x"
        if not s["capped"]:
            line += (
                f", CPU {s['cpu_s'] / g['cpu_s']:.1f}x"
                f", peak anon memory {s['peak_anon_bytes'] / g['peak_anon_bytes']:.1f}x"
                f", peak RSS {s['peak_rss_bytes'] / g['peak_rss_bytes']:.1f}x"
            )
        print(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--checkpoints", type=int)
    ap.add_argument("--points", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--runs", type=int, help="trajectories the checkpoints form")
    ap.add_argument("--routes", default=",".join(ROUTES), help="comma-separated subset")
    ap.add_argument("--cap", type=float, default=600.0, help="seconds before a route is killed")
    ap.add_argument("--perplexity", type=float, help="default: default_perplexity(K)")
    ap.add_argument("--workdir", type=Path, help="where the .npy goes (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the measurements as JSON here")
    ap.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report each route's peak of Python-tracked allocations (a second, untimed run)",
    )
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=ROUTES, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(args.worker, args.data, args.perplexity, args.out, trace=args.trace)
        return

    from scipy.spatial import procrustes
    from sklearn.manifold import trustworthiness

    from funcsim.landscape import FunctionalLandscape, default_perplexity

    size = dict(QUICK if args.quick else FULL)
    for key in size:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    k, n, c, runs = size["checkpoints"], size["points"], size["classes"], size["runs"]
    perplexity = args.perplexity or default_perplexity(k)
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = set(routes) - set(ROUTES)
    if unknown:
        ap.error(f"--routes: unknown {sorted(unknown)}; choose from {', '.join(ROUTES)}")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        data = Path(tmp) / "predictions.npy"
        t0 = time.perf_counter()
        generate(data, k, n, c, runs)
        print(
            f"generated {data} ({_mib(os.path.getsize(data))} MiB) in "
            f"{time.perf_counter() - t0:.1f} s; perplexity {perplexity:g}"
        )
        results = []
        for route in routes:
            print(f"running {route} ...", flush=True)
            out = Path(tmp) / f"{route}.npy"
            results.append(run_route(route, data, perplexity, out, args.cap, args.tracemalloc))
        report(results, k, n, c, k * n * c * 4)
        summary: dict = {"checkpoints": k, "points": n, "classes": c, "routes": results}
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        done = {r["route"] for r in results if not r["capped"]}
        if not done:
            return
        distances = FunctionalLandscape("pca").fit(np.load(data, mmap_mode="r")).distances_
        emb = {r: np.load(Path(tmp) / f"{r}.npy") for r in sorted(done)}
        print()
        tw_of = {}
        for r, e in emb.items():
            tw_of[r] = trustworthiness(distances, e, n_neighbors=5, metric="precomputed")
            print(f"trustworthiness of {r}: {tw_of[r]:.4f}")
        summary["trustworthiness"] = {r: float(tw) for r, tw in tw_of.items()}
        for r in sorted(done - {"gram"}):
            if "gram" in done:
                disparity = float(procrustes(emb["gram"], emb[r])[2])
                summary.setdefault("procrustes_vs_gram", {})[r] = disparity
                print(f"Procrustes disparity gram vs {r}: {disparity:.3g}")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
