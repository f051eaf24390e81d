"""The ``funcsim`` executable: a light start-up and an exit that keeps main's code and output."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

HEAVY = ("torch", "numpy", "sklearn", "matplotlib", "scipy")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_importing_the_cli_imports_no_heavy_library() -> None:
    """``--help`` answers at once, and ``run --jobs N`` starts its worker server before torch."""
    result = _python(f"import sys, funcsim.cli; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.stdout.strip() == "[]", result.stderr


def test_entry_exits_with_mains_code_and_flushes_its_output() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "funcsim", "presets"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "quick" in listed.stdout and "fashion_mnist_lenet_sound" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "funcsim", "run", "no_such_preset"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stdout + bad.stderr
    assert "no_such_preset" in bad.stdout + bad.stderr


def test_console_script_is_the_entry() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "funcsim"]
    assert script.value == "funcsim.cli:entry"


def test_status_reads_a_study_without_importing_torch(tmp_path) -> None:
    """``funcsim status`` reads JSON files and markers: it answers without loading torch."""
    from funcsim import store
    from funcsim.config import load_study_config
    from funcsim.study import expand
    from funcsim.study.runner import study_record

    cfg = load_study_config("quick")
    jobs = expand(cfg)
    store.write_study(tmp_path, study_record(cfg), [j.summary() for j in jobs])
    store.mark_done(store.make_dirs(store.job_dir(tmp_path, jobs[0].id)))
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from funcsim.cli import app\n"
        f"result = CliRunner().invoke(app, ['status', {str(tmp_path)!r}])\n"
        "print(result.output)\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "torch loaded: False" in result.stdout, result.stdout
    assert f"{len(jobs)} jobs: 1 done" in result.stdout, result.stdout
