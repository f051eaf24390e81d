"""``funcsim run``, ``funcsim status`` and ``funcsim presets``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from funcsim.cli._app import app, console, out, state

if TYPE_CHECKING:  # the study modules import torch: loaded when a command runs
    from funcsim.study import Job, JobOutcome, StudySummary

STATE_STYLE = {"done": "green", "failed": "bold red", "pending": "yellow", "blocked": "magenta"}


class _JobProgress:
    """One Rich bar over the study's jobs (:class:`funcsim.study.StudyEvents`); names the
    running ones and prints failures."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=not enabled,
        )
        self.task = self.progress.add_task("", total=0)
        self.running: dict[str, str] = {}

    def _show(self) -> None:
        names = ", ".join(self.running.values())
        self.progress.update(self.task, description=names[:80])

    def planned(self, jobs: list[Job], done: set[str]) -> None:
        self.progress.update(self.task, total=len(jobs), completed=len(done))

    def started(self, job: Job) -> None:
        self.running[job.id] = job.title
        self._show()

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        self.running.pop(job.id, None)
        self.progress.advance(self.task)
        self._show()
        if not outcome.ok:
            self.progress.console.print(
                f"[bold red]failed:[/] {job.title} ({job.id}): {outcome.message}",
                highlight=False,
            )

    def skipped(self, job: Job) -> None:
        self.progress.advance(self.task)

    def __enter__(self) -> _JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _build_report(run_dir: Path, workers: int = 1) -> Path | None:
    """Build ``RUN_DIR/report`` (its figures drawn by ``workers`` processes); a failure is one
    line (the jobs' results are kept)."""
    from funcsim.cli._app import is_debug
    from funcsim.errors import FuncsimError
    from funcsim.report import build_report

    try:
        return build_report(run_dir, workers=workers)
    except FuncsimError:
        raise
    except Exception as err:
        if is_debug():
            raise
        console.print(
            f"[bold red]error:[/] the report could not be built ({type(err).__name__}: {err}); "
            f"the results are kept, retry with `funcsim --debug report {run_dir}`",
            highlight=False,
        )
        return None


def _print_summary(summary: StudySummary, executor: str) -> None:
    n = len(summary.jobs)
    ran = len(summary.completed)
    parts = [f"{n} jobs", f"{len(summary.already_done)} already done", f"{ran} run now"]
    if summary.failed:
        parts.append(f"[bold red]{len(summary.failed)} failed[/]")
    if summary.skipped:
        parts.append(f"[magenta]{len(summary.skipped)} skipped[/]")
    out.print(f"{', '.join(parts)} in {summary.seconds:.1f}s on {executor}", highlight=False)


@app.command()
def run(
    config: Annotated[
        str | None,
        typer.Argument(help="A preset name (see `funcsim presets`) or a YAML file; default quick."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Study folder (default runs/<study name>)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting, e.g. --set train.epochs=5 (repeatable)."),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Local executor: jobs run in parallel processes.")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Torch threads per local job (default 1, or cores/N with --jobs N); more "
            "speed up large models on an idle machine but change the last bits of results.",
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local (this machine) or ray (a Ray cluster).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (e.g. auto); default: start one."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu or cuda (default: the config's).")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Build RUN_DIR/report at the end.")
    ] = True,
) -> None:
    """Run a study: train, distill, quantize and prune; then write the report.

    Finished jobs are kept and skipped when the command runs again; changing a setting adds
    new jobs beside the old ones. Exits 1 listing the jobs that failed.
    """
    from funcsim.config import load_study_config

    settings = list(overrides or [])
    if device is not None:
        settings.append(f"train.device={device}")
    cfg = load_study_config(config, settings)
    if executor == "local" and jobs > 1:
        from funcsim._worker_server import start_early

        start_early()  # the workers' server imports torch while this process does
        if report:
            from funcsim.report import preload

            preload()  # meanwhile, on the other core: the report's imports (sklearn, matplotlib)

    from funcsim.executors import get_executor
    from funcsim.study import expand, run_study

    if cfg.train.device == "cuda":
        from funcsim.train import resolve_device

        if executor == "local":
            resolve_device("cuda")  # fails here, before any job, when there is no GPU
    planned = expand(cfg)
    run_dir = out_dir or Path("runs") / cfg.name
    progress = not state.quiet
    with get_executor(
        executor, jobs=jobs, address=address, progress=progress, threads=threads
    ) as ex:
        with _JobProgress(progress) as events:
            summary = run_study(cfg, run_dir, ex, events=events, jobs=planned)
        described = ex.describe()
    _print_summary(summary, described)
    # the cores the jobs had now draw the report's figures
    workers = jobs if executor == "local" else 1
    report_dir = _build_report(run_dir, workers) if report else None
    if report_dir is not None:
        out.print(f"report: {report_dir}", highlight=False)
    if summary.failed or summary.skipped or (report and report_dir is None):
        for job_id, outcome in summary.failed.items():
            console.print(f"[bold red]failed:[/] {job_id}: {outcome.message}", highlight=False)
        for job_id in summary.skipped:
            console.print(f"[magenta]skipped:[/] {job_id} (a dependency failed)", highlight=False)
        if summary.failed:
            console.print(
                f"{len(summary.failed)} job(s) failed; details in "
                f"{run_dir}/jobs/<job-id>/error.json; rerun the same command to retry them",
                highlight=False,
            )
        raise typer.Exit(1)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A study folder written by `funcsim run`.")],
) -> None:
    """Show the state (done / pending / failed / blocked) of every job of a study."""
    from funcsim import store
    from funcsim.study import job_states, read_study_config

    cfg = read_study_config(run_dir)
    states = job_states(run_dir)
    table = Table(title=f"{cfg.name} ({cfg.protocol} protocol) in {run_dir}")
    table.add_column("job", no_wrap=True)
    for column in ("model", "state", "accuracy"):
        table.add_column(column, overflow="fold")
    for s in states:  # the id names dataset and architecture; the model column the rest
        acc = f"{s.accuracy:.2%}" if s.accuracy is not None else ""
        style = STATE_STYLE.get(s.state, "")
        table.add_row(s.id, s.label, f"[{style}]{s.state}[/]", acc)
    out.print(table)
    for s in states:
        if s.state == "failed":
            first = s.error.splitlines()[0] if s.error else "(no message)"
            out.print(f"[bold red]failed:[/] {s.id}: {first}", highlight=False)
    counts = {k: sum(s.state == k for s in states) for k in STATE_STYLE}
    line = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    lock = store.StudyLock(run_dir)
    holder, running = lock.holder(), ""
    if holder is not None:
        who = f"pid {holder.get('pid')} on {holder.get('host')}"
        stale = lock.is_stale(holder)
        running = f"; lock of a crashed run ({who})" if stale else f"; running now ({who})"
    out.print(f"{len(states)} jobs: {line}{running}", highlight=False)
    jobs_folder = store.jobs_dir(run_dir)
    listed = {s.id for s in states}
    earlier = (
        [p for p in jobs_folder.iterdir() if p.name not in listed] if jobs_folder.is_dir() else []
    )
    if earlier:
        out.print(
            f"{len(earlier)} job folder(s) from earlier settings kept in {jobs_folder} "
            "(not part of this study)",
            highlight=False,
        )


@app.command()
def presets() -> None:
    """List the study presets shipped with funcsim, with a line on each."""
    from funcsim.config import list_presets, load_study_config

    table = Table(show_header=True, box=None)
    table.add_column("preset", style="bold")
    table.add_column("description")
    for name in list_presets():
        table.add_row(name, load_study_config(name).description)
    out.print(table)
