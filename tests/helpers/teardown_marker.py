"""Test helper: imported into the workers' server ahead of its preload list, it writes the
file named by ``FUNCSIM_TEST_TEARDOWN_MARKER`` if the server runs its exit handlers (the
interpreter's teardown, which :mod:`funcsim._server_exit` skips)."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

_MARKER = os.environ.get("FUNCSIM_TEST_TEARDOWN_MARKER")
if _MARKER:
    atexit.register(Path(_MARKER).write_text, "the server ran its exit handlers")
