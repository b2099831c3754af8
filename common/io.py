"""Output helpers every stage shares: atomic outputs, checksums, package versions."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import shutil
import tempfile
from pathlib import Path

from common.errors import OutputExistsError


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (and Python), for manifests and model metadata."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(out: Path) -> Path:
    """A temporary folder beside ``out`` (same file system, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the result should be like any folder
    return tmp


def prepare_output(out: Path, overwrite: bool) -> None:
    """Fail early (before any work) if ``out`` exists and ``overwrite`` is False."""
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output exists; pass --overwrite to replace it, or choose another --out"
        )


def commit_output(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move a finished temporary file or folder into place.

    Files are replaced atomically (``os.replace``); a folder is swapped in by two renames and
    the old one removed only after the new one is in place.
    """
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output appeared while this run was working; pass --overwrite to replace it"
        )
    if out.is_dir() and not out.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    prepare_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        commit_output(Path(tmp), path, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
