"""Numerical faults: a job that diverges fails with its epoch named; the rest of the study
completes and the run exits non-zero listing the failure.

Every job of a study shares ``train.lr``, so the diverging job is made by a setting that only
one job uses: a distillation temperature of 1e30 (``T**2`` overflows float32, the loss turns
NaN in the student's first epoch). The base, the independent model, the quantized and the
pruned models do not distil and must finish.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.reliability import N_JOBS, run_args, write_config

from funcsim import store
from funcsim.cli import main
from funcsim.config import load_study_config
from funcsim.study import expand, job_states
from funcsim.study.execute import run_job_safely


def test_a_diverging_job_fails_alone_with_its_epoch_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "study"
    args = run_args(write_config(tmp_path), run_dir, "--set", "distill.temperature=1e30")
    assert main(args) == 1
    err = capsys.readouterr().err
    student = next(store.jobs_dir(run_dir).glob("distill-*"))
    assert f"failed: {student.name}: KD α=0.5: training loss became" in err
    assert "at epoch 1 of 2" in err and "check the distillation settings" in err
    assert "1 job(s) failed" in err and "Traceback" not in err

    error = store.read_error(student)
    assert error is not None and "at epoch 1 of 2" in error["message"]
    assert "TrainingDivergedError" in error["traceback"] and not store.is_done(student)

    states = {s.id: s for s in job_states(run_dir)}
    assert states[student.name].state == "failed"
    assert sum(s.state == "done" for s in states.values()) == N_JOBS - 1
    assert (store.report_dir(run_dir) / "similarity.csv").is_file()  # reported without it
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"failed: {student.name}: KD α=0.5: training loss became" in out
    assert f"{N_JOBS} jobs: {N_JOBS - 1} done, 1 failed" in out


def test_predictions_that_blew_up_after_the_last_loss_are_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss of the last epoch was finite but the last step broke the weights: the job
    fails rather than store NaN predictions as a finished result."""
    import funcsim.train

    real_fit = funcsim.train.fit

    def fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_fit(*args, **kwargs)
        result.predictions[-1, 5] = np.nan
        return result

    monkeypatch.setattr(funcsim.train, "fit", fit)
    cfg = load_study_config(write_config(tmp_path))
    base = expand(cfg)[0]
    outcome = run_job_safely(base, tmp_path / "study")
    assert not outcome.ok
    assert "the test predictions after epoch 2 hold NaN or infinite values" in outcome.message
    folder = store.job_dir(tmp_path / "study", base.id)
    assert not store.is_done(folder) and not (folder / store.PREDICTIONS).exists()
