"""Dataset registry: ``load_dataset(name, data_dir=..., download=...)`` -> :class:`Dataset`.

Loaders are registered with :func:`register_dataset`; each is called with the keyword
arguments ``data_dir`` (a ``Path`` or None for the default), ``download``, ``train_limit``,
``test_limit`` and any options of its own (``synthetic`` takes its size, for example).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from funcsim._registry import Registry
from funcsim.data._dataset import Dataset
from funcsim.errors import ConfigError

DatasetLoader = Callable[..., Dataset]
"""``loader(*, data_dir, download, train_limit, test_limit, **options) -> Dataset``."""

DATASETS: Registry[DatasetLoader] = Registry("dataset")

DATA_DIR_ENV = "FUNCSIM_DATA_DIR"
"""Environment variable that overrides the default data directory."""

_COMMON_ARGS = ("data_dir", "download", "train_limit", "test_limit")
_NEEDS_FILES: set[str] = set()

L = TypeVar("L", bound=DatasetLoader)


def register_dataset(name: str, *, needs_files: bool = False) -> Callable[[L], L]:
    """Decorator adding a loader under ``name`` (a duplicate name raises ``ValueError``).

    ``needs_files`` marks loaders that read files from ``data_dir`` (or download them), as
    opposed to ones that build their data in memory (``digits``, ``synthetic``).
    """

    def decorator(loader: L) -> L:
        DATASETS.register(name)(loader)
        if needs_files:
            _NEEDS_FILES.add(name)
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return DATASETS.names()


def needs_files(name: str) -> bool:
    """Whether dataset ``name`` is read from files (unknown names raise ``UnknownNameError``)."""
    DATASETS.get(name)
    return name in _NEEDS_FILES


def default_data_dir() -> Path:
    """``$FUNCSIM_DATA_DIR`` if set, else ``~/.cache/funcsim/data``: where downloads go."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/funcsim/data").expanduser()


def _check_limit(field: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field} must be a positive integer or None, got {value!r}")


def _check_options(name: str, loader: DatasetLoader, options: dict[str, Any]) -> None:
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in _COMMON_ARGS]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        choices = ", ".join(allowed) if allowed else "none"
        raise ConfigError(
            f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {choices}"
        )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    **options: Any,
) -> Dataset:
    """Load dataset ``name`` into memory, images float32 in [0, 1].

    Parameters
    ----------
    name : a registered dataset (see :func:`list_datasets`).
    data_dir : where file-based datasets live (their standard layouts, see each loader);
        None means :func:`default_data_dir` (``fashion_mnist`` also looks in
        ``/usr/share/datasets/fashion-mnist``).
    download : fetch missing files through torchvision (needs a network).
    train_limit, test_limit : keep only the first N examples of each split.
    options : loader-specific keyword arguments (e.g. ``synthetic``'s ``n_train``).

    Returns
    -------
    Dataset with ``x_train`` (N_train, C, H, W) float32, ``y_train`` (N_train,) int64,
    likewise for the test split, and the class names.

    Raises
    ------
    UnknownNameError : ``name`` is not registered (the message lists the valid names).
    ConfigError : a limit is not a positive integer or an option is unknown.
    DataError : files are missing or corrupt (names the path, the files expected and
        the ``--download`` option).
    """
    loader = DATASETS.get(name)
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    _check_options(name, loader, options)
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    dataset = loader(
        data_dir=directory,
        download=download,
        train_limit=train_limit,
        test_limit=test_limit,
        **options,
    )
    return dataset.subset(train_limit, test_limit)
