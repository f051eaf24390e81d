"""On-disk layout of runs and studies; the only module that builds paths and writes files.

Every write goes to a temporary file in the same folder and is renamed into place
(``os.replace`` is atomic on POSIX), so a reader never sees half a file. A run folder is
complete when its ``done`` marker exists; the marker is written last.

A *run folder* (one trained, distilled or compressed model) holds::

    config.json          resolved settings that produced it
    init.safetensors     initial weights (trained runs)
    final.safetensors    final weights (or the compressed model's state)
    predictions.npy      (epochs+1, N_test, C) float32 softmax trajectory; (1, N, C) post hoc
    labels.npy           (N_test,) int64 test labels
    metrics.json         per-epoch accuracy/loss, sizes, timings
    done                 marker, written last

A *study folder* (``funcsim run``) holds::

    study.json           marker of a study: the resolved StudyConfig and its job list
    .lock                pid and host of the run in progress (stale when that pid is dead)
    jobs/<job-id>/       one run folder per job; ``error.json`` instead of ``done`` on failure
    report/              tables, figures, report.md, report.html

Job ids are safe names (``^[A-Za-z0-9_.-]+$``) and :func:`job_dir` checks that the folder it
returns lies inside ``RUN_DIR/jobs``, so no id can reach outside the study.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError

from funcsim._faults import maybe_crash
from funcsim.errors import StoreError

if TYPE_CHECKING:  # torch is imported where weights are read or written: status needs none
    import torch

CONFIG = "config.json"
INIT_WEIGHTS = "init.safetensors"
FINAL_WEIGHTS = "final.safetensors"
PREDICTIONS = "predictions.npy"
LABELS = "labels.npy"
METRICS = "metrics.json"
DONE = "done"
ERROR = "error.json"

STUDY = "study.json"
JOBS = "jobs"
REPORT = "report"
LOCK = ".lock"
STUDY_FORMAT = 1
"""Version of the study layout, recorded in ``study.json``."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()
"""Mode of written files: what ``open()`` would give (``mkstemp`` alone makes them 0600)."""


def make_dirs(path: Path) -> Path:
    """``mkdir -p path``; a failure (no space, no permission, a file in the way) names it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"could not create the folder {path}: {err.strerror or err}") from err
    return path


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        raise StoreError(f"could not remove {path}: {err.strerror or err}") from err


TEMP_PATTERN = ".*.tmp"
"""Names of the temporary files of :func:`write_bytes` (``.<name>.<pid>.<random>.tmp``)."""
_TEMP_PID = re.compile(r"\.(\d+)\.[^.]+\.tmp$")


def _temp_prefix(name: str) -> str:
    """``.<name>.<pid>.``: the writer's pid tells a live write from a crashed one."""
    return f".{name}.{os.getpid()}."


def _is_abandoned(temp: Path) -> bool:
    """Whether a temp file's writer is gone (a temp file without a pid counts as gone)."""
    match = _TEMP_PID.search(temp.name)
    if match is None:
        return True
    pid = int(match.group(1))
    return pid != os.getpid() and not _pid_alive(pid)


@contextlib.contextmanager
def _atomic_open(path: Path) -> Iterator[io.BufferedWriter]:
    """Open a temp file beside ``path``; on success fsync and rename it onto ``path``."""
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StoreError(f"could not write {path}: {err.strerror or err}") from err
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            maybe_crash("store.write", path.name)  # fault injection (tests); no-op when unset
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, StoreError):
            raise StoreError(f"could not write {path}: {err.strerror or err}") from err
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with _atomic_open(Path(path)) as fh:
        fh.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_bytes(path: Path, what: str = "file") -> bytes:
    """The bytes of ``path``; a missing or unreadable file is a StoreError naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: {what} not found") from None
    except OSError as err:
        raise StoreError(f"{path}: could not read the {what} ({err.strerror or err})") from None


def read_json(path: Path) -> Any:
    path = Path(path)
    data = read_bytes(path)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: not valid JSON ({err})") from None


def write_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` array (never pickled objects)."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found") from None
    except (ValueError, OSError) as err:
        raise StoreError(f"{path}: not a readable .npy array ({err})") from None


def weights_to_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as safetensors bytes (tensors made contiguous, shared storage split)."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return st_save(tensors)


def weights_from_bytes(data: bytes, source: str | Path = "weights") -> dict[str, torch.Tensor]:
    """Parse safetensors bytes; anything else is refused with ``source`` named."""
    from safetensors.torch import load as st_load

    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise StoreError(f"{source}: not a valid safetensors file ({err})") from None


def write_weights(path: Path, state: Mapping[str, torch.Tensor] | bytes) -> None:
    """Save a state dict (or safetensors bytes, checked first) as a safetensors file."""
    if isinstance(state, bytes):
        weights_from_bytes(state, path)
        write_bytes(path, state)
    else:
        write_bytes(path, weights_to_bytes(state))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict; anything else is refused with the path named."""
    path = Path(path)
    return weights_from_bytes(read_bytes(path, "weights file"), path)


def mark_done(run_dir: Path) -> None:
    write_text(Path(run_dir) / DONE, "")


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def save_run(
    run_dir: Path,
    *,
    predictions: np.ndarray,
    labels: np.ndarray,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    init_state: Mapping[str, torch.Tensor] | bytes | None = None,
    final_state: Mapping[str, torch.Tensor] | bytes | None = None,
) -> Path:
    """Write one run folder (layout in the module docstring); the ``done`` marker comes last.

    ``predictions`` (T, N, C) float32 softmax (T = epochs + 1, or 1 for post-hoc models).
    Weights are state dicts or safetensors bytes. A leftover ``error.json`` is removed
    before the marker is written.
    """
    run_dir = make_dirs(Path(run_dir))
    _unlink(run_dir / DONE)
    write_json(run_dir / CONFIG, dict(config))
    if init_state is not None:
        write_weights(run_dir / INIT_WEIGHTS, init_state)
    if final_state is not None:
        write_weights(run_dir / FINAL_WEIGHTS, final_state)
    write_npy(run_dir / PREDICTIONS, np.asarray(predictions, dtype=np.float32))
    write_npy(run_dir / LABELS, np.asarray(labels, dtype=np.int64))
    write_json(run_dir / METRICS, dict(metrics))
    _unlink(run_dir / ERROR)
    mark_done(run_dir)
    return run_dir


class RunRecord:
    """A finished run folder, read lazily: ``config``, ``metrics``, ``predictions`` ..."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir)
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: run folder not found")
        if not is_done(self.path):
            raise StoreError(
                f"{self.path}: not a finished run (no '{DONE}' marker); expected the output "
                "folder of funcsim train, distill or compress"
            )

    @property
    def config(self) -> dict[str, Any]:
        data = read_json(self.path / CONFIG)
        if not isinstance(data, dict):
            raise StoreError(f"{self.path / CONFIG}: expected a JSON object")
        return data

    @property
    def metrics(self) -> dict[str, Any]:
        data = read_json(self.path / METRICS)
        if not isinstance(data, dict):
            raise StoreError(f"{self.path / METRICS}: expected a JSON object")
        return data

    def predictions(self, mmap: bool = False) -> np.ndarray:
        """(T, N, C) float32 softmax trajectory."""
        return read_npy(self.path / PREDICTIONS, mmap=mmap)

    def labels(self) -> np.ndarray:
        return read_npy(self.path / LABELS)

    def init_state(self) -> dict[str, torch.Tensor]:
        return read_weights(self.path / INIT_WEIGHTS)

    def final_state(self) -> dict[str, torch.Tensor]:
        return read_weights(self.path / FINAL_WEIGHTS)


def load_run(run_dir: Path) -> RunRecord:
    """Open a finished run folder (raises :class:`StoreError` naming the path otherwise)."""
    return RunRecord(Path(run_dir))


# --- study folders ------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a safe folder name (letters, digits, ``_ . -``; not ``.``/``..``)."""
    if (
        not isinstance(job_id, str)
        or not _SAFE_NAME.fullmatch(job_id)
        or job_id in (".", "..")
        or len(job_id) > 200
    ):
        raise StoreError(f"invalid job id {job_id!r}: use 1-200 letters, digits, '_', '.' or '-'")
    return job_id


def jobs_dir(run_dir: Path) -> Path:
    return Path(run_dir) / JOBS


def job_dir(run_dir: Path, job_id: str) -> Path:
    """``RUN_DIR/jobs/<job_id>``, refusing ids that are unsafe or resolve outside RUN_DIR."""
    check_job_id(job_id)
    base = jobs_dir(run_dir).resolve()
    path = (base / job_id).resolve()
    if path.parent != base:
        raise StoreError(f"job id {job_id!r} resolves outside {base}")
    return path


def report_dir(run_dir: Path) -> Path:
    return Path(run_dir) / REPORT


def is_study(run_dir: Path) -> bool:
    return (Path(run_dir) / STUDY).is_file()


def check_study_target(run_dir: Path) -> None:
    """Refuse to turn a folder that holds other things into a study folder.

    A study may go into a new or empty folder, or one that already is a study (``study.json``,
    or only the lock of a run that died before writing it).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"{run_dir}: exists and is not a folder")
    if not run_dir.is_dir() or is_study(run_dir):
        return
    # the lock and temp files of a run killed before it wrote study.json do not count
    other = [
        p.name for p in run_dir.iterdir() if not (p.name.startswith(LOCK) or p.match(TEMP_PATTERN))
    ]
    if other:
        raise StoreError(
            f"{run_dir}: not empty and not a funcsim study (holds {', '.join(sorted(other)[:3])}"
            f"{' ...' if len(other) > 3 else ''}); choose a new or empty folder with --out"
        )


def write_study(run_dir: Path, config: Mapping[str, Any], jobs: list[Mapping[str, Any]]) -> None:
    """Record the study: its resolved config and the list of its jobs (``study.json``)."""
    write_json(
        Path(run_dir) / STUDY,
        {"funcsim_study": STUDY_FORMAT, "config": dict(config), "jobs": [dict(j) for j in jobs]},
    )


def read_study(run_dir: Path) -> dict[str, Any]:
    """The contents of ``study.json``; a folder that is not a study is a one-line error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir}: no such run folder")
    if not is_study(run_dir):
        raise StoreError(
            f"{run_dir}: not a funcsim study (no {STUDY}); expected the output folder of "
            "`funcsim run`"
        )
    data = read_json(run_dir / STUDY)
    if (
        not isinstance(data, dict)
        or data.get("funcsim_study") != STUDY_FORMAT
        or not isinstance(data.get("config"), dict)
        or not isinstance(data.get("jobs"), list)
    ):
        raise StoreError(f"{run_dir / STUDY}: not a study file of this funcsim version")
    return data


def write_error(run_dir: Path, message: str, traceback: str = "", **extra: Any) -> None:
    """Record a failed job in its folder (``error.json``); no ``done`` marker is written."""
    run_dir = make_dirs(Path(run_dir))
    _unlink(run_dir / DONE)
    write_json(
        run_dir / ERROR,
        {"message": message, "traceback": traceback, "time": time.time(), **extra},
    )


def read_error(run_dir: Path) -> dict[str, Any] | None:
    """The recorded failure of a job folder, or None."""
    path = Path(run_dir) / ERROR
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except StoreError as err:
        return {"message": str(err), "traceback": ""}
    return data if isinstance(data, dict) else {"message": str(data), "traceback": ""}


def clear_job(run_dir: Path) -> None:
    """Before a job (re)starts: drop its error record and temp files of an interrupted write."""
    run_dir = Path(run_dir)
    _unlink(run_dir / ERROR)
    if run_dir.is_dir():
        for tmp in run_dir.glob(TEMP_PATTERN):
            _unlink(tmp)


def clear_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temp files that processes killed mid-write left in a study folder.

    The folder itself, ``report/`` (all levels) and every job folder are swept; a temp file
    is removed only when the process that wrote it (its pid is in the name) is dead, so a
    report being built or a lock being taken by another process at the same moment is left
    alone. Returns what was removed.
    """
    run_dir = Path(run_dir)
    candidates = [
        *run_dir.glob(TEMP_PATTERN),
        *report_dir(run_dir).rglob(TEMP_PATTERN),
        *jobs_dir(run_dir).glob(f"*/{TEMP_PATTERN}"),
    ]
    removed = [p for p in candidates if p.is_file() and _is_abandoned(p)]
    for path in removed:
        _unlink(path)
    return removed


# --- the lock of a study folder -----------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """A token that changes when ``pid`` is reused (Linux: start time in clock ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (Linux: R, S, D, Z = zombie ...), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A killed run whose parent has not reaped it yet is a zombie: dead, holding nothing.
    return _process_state(pid) not in ("Z", "X")


class StudyLock:
    """An exclusive lock on a study folder: ``RUN_DIR/.lock`` holding pid, host and start.

    The lock file is written completely under a temporary name and then hard-linked into
    place, which fails atomically if another run holds it: no two runs can both succeed,
    and a reader never sees a half-written lock. A lock left by a crashed run on this host
    (its pid is dead, or was reused by a process that started later) is stale and taken
    over; a lock held from another host cannot be checked and is reported with the command
    to remove it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._held = False

    def _payload(self) -> bytes:
        info = {
            "pid": self.pid,
            "host": self.host,
            "start": _process_start(self.pid),
            "time": time.time(),
        }
        return (json.dumps(info) + "\n").encode()

    def holder(self) -> dict[str, Any] | None:
        """The lock's contents, or None when there is no lock."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_stale(self, info: dict[str, Any]) -> bool:
        """Whether the holder described by ``info`` is a dead process on this host."""
        if info.get("host") != self.host:
            return False
        pid = info.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            return True
        start = info.get("start")
        return start is not None and _process_start(pid) not in (None, start)

    def acquire(self) -> StudyLock:
        make_dirs(self.run_dir)
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=_temp_prefix(LOCK[1:]), suffix=".tmp", dir=self.run_dir
            )
        except OSError as err:
            raise StoreError(f"{self.path}: could not write the lock ({err})") from err
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._payload())
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self._held = True
                    return self
                except FileExistsError:
                    info = self.holder()
                    if info is None:
                        continue  # released meanwhile: try again
                    if self.is_stale(info):
                        self.path.unlink(missing_ok=True)
                        continue
                    raise StoreError(self._refusal(info)) from None
            raise StoreError(f"{self.run_dir}: could not take the lock {self.path}")
        except OSError as err:
            raise StoreError(f"{self.path}: could not write the lock ({err})") from err
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _refusal(self, info: dict[str, Any]) -> str:
        who = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
        if info.get("host") == self.host:
            return f"{self.run_dir} is in use by another funcsim run ({who}); wait for it to finish"
        return (
            f"{self.run_dir} is locked by a funcsim run ({who}); if that run is gone, "
            f"remove {self.path}"
        )

    def release(self) -> None:
        if self._held:
            info = self.holder()
            if info and info.get("pid") == self.pid and info.get("host") == self.host:
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
