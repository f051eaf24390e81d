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
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from funcsim.errors import StoreError

CONFIG = "config.json"
INIT_WEIGHTS = "init.safetensors"
FINAL_WEIGHTS = "final.safetensors"
PREDICTIONS = "predictions.npy"
LABELS = "labels.npy"
METRICS = "metrics.json"
DONE = "done"


@contextlib.contextmanager
def _atomic_open(path: Path) -> Iterator[io.BufferedWriter]:
    """Open a temp file beside ``path``; on success fsync and rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
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


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found") from None
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


def write_weights(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Save a state dict as safetensors (tensors made contiguous, shared storage split)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    write_bytes(path, st_save(tensors))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict; anything else is refused with the path named."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: weights file not found") from None
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise StoreError(f"{path}: not a valid safetensors file ({err})") from None


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
    init_state: Mapping[str, torch.Tensor] | None = None,
    final_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write one run folder (layout in the module docstring); the ``done`` marker comes last.

    ``predictions`` (T, N, C) float32 softmax (T = epochs + 1, or 1 for post-hoc models).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DONE).unlink(missing_ok=True)
    write_json(run_dir / CONFIG, dict(config))
    if init_state is not None:
        write_weights(run_dir / INIT_WEIGHTS, init_state)
    if final_state is not None:
        write_weights(run_dir / FINAL_WEIGHTS, final_state)
    write_npy(run_dir / PREDICTIONS, np.asarray(predictions, dtype=np.float32))
    write_npy(run_dir / LABELS, np.asarray(labels, dtype=np.int64))
    write_json(run_dir / METRICS, dict(metrics))
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
