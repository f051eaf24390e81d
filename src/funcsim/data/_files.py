"""Finding a dataset's files among candidate folders, and the error when they are absent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from funcsim.errors import DataError


def _find_one(directory: Path, name: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def find_files(
    directories: Sequence[Path], names: Sequence[str], suffixes: Sequence[str] = ("",)
) -> dict[str, Path] | None:
    """The first directory holding every one of ``names`` (each with one of ``suffixes``).

    Returns name -> path, or None when no directory has them all.
    """
    for directory in directories:
        found = {name: _find_one(directory, name, suffixes) for name in names}
        if all(path is not None for path in found.values()):
            return {name: path for name, path in found.items() if path is not None}
    return None


def missing_files_error(
    dataset: str,
    directories: Sequence[Path],
    names: Sequence[str],
    suffixes: Sequence[str] = ("",),
) -> DataError:
    """One-line error: where we looked, which files are expected, and ``--download``."""
    shown = [
        f"{n}[{'|'.join(s for s in suffixes if s)}]" if len(suffixes) > 1 else n for n in names
    ]
    best, best_found = directories[0], 0
    for directory in directories:
        count = sum(_find_one(directory, n, suffixes) is not None for n in names)
        if count > best_found:
            best, best_found = directory, count
    if best_found:
        absent = [
            s for n, s in zip(names, shown, strict=True) if _find_one(best, n, suffixes) is None
        ]
        where = f"{best} has only some of them, missing {', '.join(absent)}"
    else:
        where = f"not found in {' or '.join(str(d) for d in directories)}"
    return DataError(
        f"{dataset} files {where}; expected {', '.join(shown)}; "
        "use --download (download=True) to fetch them, or --data-dir to point at them"
    )
