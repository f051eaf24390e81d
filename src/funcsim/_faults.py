"""Fault injection for the reliability tests: die (or hang) at a named point, on purpose.

Set ``FUNCSIM_FAULT`` to ``POINT[/DETAIL]:N[:ACTION]`` and the process stops the N-th time it
passes ``POINT`` (with ``DETAIL``, only passes with that detail count)::

    FUNCSIM_FAULT=train.epoch:3                # SIGKILL after the 3rd training epoch
    FUNCSIM_FAULT=store.write/predictions.npy:2  # SIGKILL halfway through writing the 2nd
                                                 # predictions.npy (temp file written, not renamed)
    FUNCSIM_FAULT=store.write/done:1:hang      # hang instead (the lock stays held)

Points (see ``docs/reliability.md``):

``train.epoch``
    :func:`funcsim.train.fit` after an epoch's evaluation; no detail.
``store.write``
    :mod:`funcsim.store`, every atomic write, after the data are in the temporary file and
    before it is renamed into place; the detail is the file's name (``config.json``,
    ``predictions.npy``, ``done``, ``similarity.csv`` ...).

Actions: ``kill`` (default; ``SIGKILL`` to this process: no cleanup, no ``finally``, exactly
what a power cut or the OOM killer does) and ``hang`` (sleep until killed). Counts are per
process. With the variable unset, :func:`maybe_crash` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "FUNCSIM_FAULT"
"""The environment variable read by :func:`maybe_crash`."""

ACTIONS = ("kill", "hang")

_hits: dict[str, int] = {}


def parse(spec: str) -> tuple[str, str | None, int, str]:
    """``POINT[/DETAIL]:N[:ACTION]`` -> (point, detail or None, n, action).

    >>> parse("store.write/done:2")
    ('store.write', 'done', 2, 'kill')
    """
    parts = spec.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"{ENV}={spec!r}: expected POINT[/DETAIL]:N[:ACTION]")
    point, _, detail = parts[0].partition("/")
    try:
        n = int(parts[1])
    except ValueError:
        raise ValueError(f"{ENV}={spec!r}: N must be a positive integer") from None
    action = parts[2] if len(parts) == 3 else "kill"
    if n < 1 or action not in ACTIONS:
        raise ValueError(f"{ENV}={spec!r}: N must be >= 1 and ACTION one of {', '.join(ACTIONS)}")
    return point, detail or None, n, action


def maybe_crash(point: str, detail: str | None = None) -> None:
    """Kill (or hang) this process here if ``FUNCSIM_FAULT`` says so; otherwise nothing."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want_point, want_detail, n, action = parse(spec)
    if point != want_point or (want_detail is not None and detail != want_detail):
        return
    _hits[spec] = _hits.get(spec, 0) + 1
    if _hits[spec] < n:
        return
    if action == "hang":
        while True:
            time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)
