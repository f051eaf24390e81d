"""funcsim's small C kernels: compiled on first use, cached per machine, loaded with ctypes.

Each C file ships inside the package (``models/_kernels/conv3x3_pool2.c``: LeNet's fused
stages; ``train/_kernels/adamax.c``: a fused CPU Adamax; ``train/_kernels/soft_target_loss.c``:
the distillation loss with its gradient). :func:`load` compiles one with
the system's C compiler (``$CC``, which may carry words such as ``ccache gcc``, else ``cc``,
``gcc`` or ``clang``) into ``$FUNCSIM_KERNEL_DIR`` (default ``~/.cache/funcsim/kernels``,
falling back to a folder in the temporary directory), under a name hashed from the source and
the flags, so a changed source is rebuilt and an unchanged one is loaded as is, even without
a compiler. ctypes calls release the GIL.

Where there is no compiler, the build fails, or ``FUNCSIM_FUSED_KERNELS=0``, :func:`load`
returns None and the callers run PyTorch's own operations: the same results to float32
rounding, slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from importlib import resources
from pathlib import Path

import torch

__all__ = ["ENABLE_ENV", "KERNEL_DIR_ENV", "enabled", "load"]

ENABLE_ENV = "FUNCSIM_FUSED_KERNELS"
KERNEL_DIR_ENV = "FUNCSIM_KERNEL_DIR"
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict[tuple[str, str], ctypes.CDLL | None] = {}  # (package, file): library or None


def enabled() -> bool:
    """False when ``FUNCSIM_FUSED_KERNELS`` is 0/false/no/off: funcsim then runs plain PyTorch."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def _compiler() -> list[str] | None:
    """``$CC`` (which may carry words, e.g. ``ccache gcc``), else cc, gcc or clang on PATH."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        return shlex.split(cc)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _flags() -> list[str]:
    """Optimisation flags; vector ISA flags only where PyTorch found the CPU has them."""
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-pthread"]
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in {"x86_64", "amd64"} and capability in {"AVX2", "AVX512"}:
        flags += ["-mavx2", "-mfma"]
        if capability == "AVX512":  # PyTorch's AVX512 level implies F, BW, VL and DQ
            flags += ["-mavx512f", "-mavx512vl"]
    return flags


def _kernel_dir() -> Path:
    env = os.environ.get(KERNEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path("~/.cache").expanduser()) / "funcsim" / "kernels"


def _build(cc: list[str], name: str, source: bytes, flags: list[str]) -> Path:
    """Compile once and return the library's path, ``<stem>-<hash of source and flags>.so``."""
    key = hashlib.sha256(
        b"\0".join([source, " ".join(flags).encode(), platform.machine().encode()])
    ).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else "user"
    for directory in (_kernel_dir(), Path(tempfile.gettempdir()) / f"funcsim-kernels-{user}"):
        target = directory / f"{Path(name).stem}-{key}.so"
        if target.exists():
            return target
        try:
            directory.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=directory))
        except OSError as error:  # unwritable cache: try the next place
            _log.debug("funcsim: cannot build kernels in %s: %s", directory, error)
            continue
        try:
            src, built = work / name, work / "out.so"
            src.write_bytes(source)
            subprocess.run(
                [*cc, *flags, "-o", str(built), str(src)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            # Atomic: workers compiling at the same moment each replace it with the same file.
            os.replace(built, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target
    raise OSError("no writable folder for funcsim's compiled kernels")


def load(package: str, name: str, signatures: dict[str, list[type]]) -> ctypes.CDLL | None:
    """The compiled ``name`` from ``package``'s ``_kernels`` folder, its functions typed by
    ``signatures`` (name: argument ctypes; each returns a C int status), or None (disabled,
    no compiler, or the build failed: logged once at INFO level)."""
    if not enabled():
        return None
    with _lock:
        if (package, name) in _loaded:
            return _loaded[(package, name)]
        _loaded[(package, name)] = None
        cc = _compiler()
        if cc is None:
            _log.info("funcsim: no C compiler found for %s; PyTorch's operations run instead", name)
            return None
        try:
            source = resources.files(package).joinpath("_kernels", name).read_bytes()
            library = ctypes.CDLL(str(_build(cc, name, source, _flags())))
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", b"") or b""
            _log.info(
                "funcsim: %s unavailable (%s %s); PyTorch's operations run instead",
                name,
                error,
                detail.decode(errors="replace")[-500:],
            )
            return None
        for function, argtypes in signatures.items():
            entry = getattr(library, function)
            entry.argtypes = argtypes
            entry.restype = ctypes.c_int
        _loaded[(package, name)] = library
        return library
