"""Fetch dataset archives through torchvision's downloader (never its loaders).

Only the download-and-verify helpers of ``torchvision.datasets.utils`` are used, with the
URLs and MD5 sums torchvision's dataset classes declare; the files are then read by our own
readers (the IDX reader and the restricted CIFAR unpickler).
"""

from __future__ import annotations

from pathlib import Path

from funcsim.errors import DataError


def _fail(name: str, root: Path, exc: BaseException) -> DataError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(
        f"could not download {name} into {root}: {reason}; check the network, "
        "or put the files there by hand and drop --download"
    )


def download_idx(name: str, torchvision_class: str, raw_dir: Path) -> None:
    """Download and gunzip the four IDX files of ``torchvision.datasets.<class>`` to raw_dir."""
    from torchvision import datasets
    from torchvision.datasets import utils

    cls = getattr(datasets, torchvision_class)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
        for filename, md5 in cls.resources:
            errors: list[BaseException] = []
            for mirror in cls.mirrors:
                try:
                    utils.download_and_extract_archive(
                        f"{mirror}{filename}", download_root=raw_dir, filename=filename, md5=md5
                    )
                    break
                except Exception as exc:  # noqa: BLE001 - any failure: try the next mirror
                    errors.append(exc)
            else:
                raise errors[-1] if errors else RuntimeError(f"no mirror for {filename}")
    except Exception as exc:  # noqa: BLE001 - reported to the user as one line
        raise _fail(name, raw_dir, exc) from exc


def download_cifar(name: str, torchvision_class: str, root: Path) -> None:
    """Download and extract the python-pickle archive of ``torchvision.datasets.<class>``."""
    from torchvision import datasets
    from torchvision.datasets import utils

    cls = getattr(datasets, torchvision_class)
    try:
        root.mkdir(parents=True, exist_ok=True)
        utils.download_and_extract_archive(
            cls.url, download_root=root, filename=cls.filename, md5=cls.tgz_md5
        )
    except Exception as exc:  # noqa: BLE001 - reported to the user as one line
        raise _fail(name, root, exc) from exc
