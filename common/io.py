"""Output helpers every stage shares: atomic outputs, checksums, package versions.

Every output is built under a temporary name beside its final place (same file system, so the
final rename is atomic) and renamed into place only when complete.  Temporary names carry the
writer's PID (``.NAME.tmp-PID-XXXX``), so that a later run can tell the leftovers of a killed
run (PID no longer alive) from a run still working, and remove them.  An output that is,
contains or lies inside one of the run's inputs is refused whatever ``--overwrite`` says, and
any I/O failure on the output becomes one :class:`OutputError` line: what, where, the fix.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from common.errors import OutputError, OutputExistsError, OutputIsInputError

_LOGGER = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (and Python), for manifests and model metadata."""
    import importlib.metadata as md  # here: 30 ms of every start-up, and scoring never asks

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


_FIXES = {
    errno.ENOSPC: "no space left on the device; free space or choose another --out",
    errno.EDQUOT: "disk quota exceeded; free space or choose another --out",
    errno.EROFS: "the file system is read-only; choose a writable --out",
    errno.EACCES: "permission denied; choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENOTDIR: "a parent of the output is a file, not a folder; choose another --out",
    errno.EEXIST: "a parent of the output is a file, not a folder; choose another --out",
    errno.ENOENT: "a parent folder vanished while writing; check the path and re-run",
    errno.EISDIR: "the output is a folder; name a file",
}


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """One line for an I/O failure on an output: the path, the problem and the fix."""
    fix = _FIXES.get(exc.errno, f"{exc.strerror or exc}; check the output location")
    return OutputError(f"{path}: cannot write the output: {fix}")


def check_not_input(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]],
                    option: str = "--out") -> None:
    """Refuse an output that is, contains, or lies inside an input (symlinks resolved)."""
    o = Path(os.path.realpath(out))
    for inp in inputs:
        i = Path(os.path.realpath(inp))
        if o == i or o.is_relative_to(i) or i.is_relative_to(o):
            how = ("is" if o == i else "lies inside" if o.is_relative_to(i) else "contains")
            raise OutputIsInputError(
                f"{out}: {option} {how} the input {inp}; writing there could destroy the input "
                f"(refused whatever --overwrite says); choose an output outside it")


def _tmp_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove temporary outputs beside ``out`` left by runs that were killed (their PID is gone);
    return what was removed.  Those of live runs are left alone."""
    removed = []
    pattern = re.compile(re.escape(_tmp_prefix(out)) + r"(\d+)-")
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            continue
        removed.append(p)
        _LOGGER.warning("removed %s, left by a run that was killed (pid %s)", p, m.group(1))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_temp_dir(out: Path) -> Path:
    """A temporary folder beside ``out`` (same file system, so the final rename is atomic)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(out)}{os.getpid()}-", dir=out.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the result should be like any folder
    except OSError as e:
        raise output_error(out, e) from e
    return tmp


def make_temp_file(out: Path) -> Path:
    """A temporary file name beside ``out`` (the file is created empty)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        fd, tmp = tempfile.mkstemp(prefix=f"{_tmp_prefix(out)}{os.getpid()}-", dir=out.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    except OSError as e:
        raise output_error(out, e) from e
    return Path(tmp)


def discard(tmp: Path) -> None:
    """Remove a temporary output; never raises (on a read-only or vanished folder the cleanup
    itself fails, and must not hide the error that caused it)."""
    try:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


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
    try:
        if out.is_dir() and not out.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(out)}{os.getpid()}-old-",
                                          dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        raise output_error(out, e) from e


def atomic_write(path: Path, write: Callable[[Path], object], overwrite: bool) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Raises OutputExistsError, or OutputError (one line: path, problem, fix) on any I/O
    failure; nothing partial is left either way.
    """
    prepare_output(path, overwrite)
    tmp = make_temp_file(path)
    try:
        try:
            write(tmp)
        except OSError as e:
            raise output_error(path, e) from e
        commit_output(tmp, path, overwrite)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)
