"""Fixtures of the study tests (helpers in ``helpers.tiny_study``)."""

from __future__ import annotations

import pytest
from helpers.tiny_study import tiny_config

from funcsim.config import StudyConfig


@pytest.fixture
def tiny() -> StudyConfig:
    return tiny_config()
