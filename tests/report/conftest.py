"""Fixtures of the report tests: a synthetic study folder (see ``helpers.study``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.study import make_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two architectures on one dataset, with a failed job."""
    return make_study(tmp_path_factory.mktemp("study"), archs=("lenet", "resnet50"))
