"""Imported by the workers' server only (the last entry of its preload list): the server
exits without the interpreter's teardown.

The server (:mod:`funcsim._worker_server`) imported torch and funcsim and has nothing to
flush or close. When its driver is gone it raises ``SystemExit``, and CPython then tears down
torch's ~400,000 objects and modules: about 1 s of CPU on a busy core after every ``funcsim
run --jobs N``, during which the server still holds the driver's stdout and stderr, so a pipe
(``| tee``, CI logs, ``subprocess.run(capture_output=True)``) stays open that second longer
than the driver lives (measured: the driver exited 0.26 s after writing its report, the
server 1.06 s after the driver). An exit handler registered after torch's runs first
(``atexit`` is last in, first out) and ends the process at once. The workers forked from the
server never run it: multiprocessing ends them with ``os._exit``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # e.g. closed by a test harness: exit all the same
            if stream is not None:
                stream.flush()
    os._exit(0)


atexit.register(_exit_now)
