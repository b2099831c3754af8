"""Object storage through fsspec: ``s3://``, ``gs://``, ``file://`` and other URLs.

Local paths never import fsspec: this module only matters when an input or output is a URL.
Credentials and endpoints come from the usual places of each file system (for S3: the AWS
variables and files, ``AWS_ENDPOINT_URL``), or from fsspec's own variables
(``FSSPEC_S3_ANON=true``).

Writes to object storage are atomic per object (an object appears whole or not at all), so an
output is uploaded from a finished local file or buffer, never written in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from common.errors import OutputError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageExtraMissing(ImportError):
    """A URL was given but fsspec (or the file system's package, such as s3fs) is missing."""


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (object storage or any fsspec file system), False for paths."""
    return bool(_URL.match(os.fspath(path)))


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path without the scheme)`` for ``url``.

    Raises StorageExtraMissing with the install command when fsspec or the protocol's package
    is not installed.
    """
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as e:
        raise StorageExtraMissing(
            f"{url}: URLs need fsspec: pip install 'mi-screen[cloud]' (fsspec and s3fs; add "
            "gcsfs for gs://)") from e
    try:
        fs, path = url_to_fs(url)
    except (ImportError, ValueError) as e:
        protocol = url.split("://", 1)[0]
        known = fsspec.registry.known_implementations.get(protocol, {})
        hint = known.get("err", "") if isinstance(known, dict) else ""
        raise StorageExtraMissing(
            f"{url}: no file system for {protocol}:// ({hint or e}); for s3:// pip install "
            "'mi-screen[cloud]', for gs:// also gcsfs") from e
    return fs, path


def join(base: str, name: str) -> str:
    """``base/name`` for a URL or a local path."""
    if is_url(base):
        return base.rstrip("/") + "/" + name
    return os.path.join(base, name)


def storage_error(where: str, exc: BaseException) -> OutputError:
    """One line for a failure writing to object storage: where, what, the fix."""
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        fix = "access denied; check the credentials and the bucket's policy"
    elif isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        fix = "the bucket or folder does not exist; create it or fix the URL"
    else:
        fix = f"{type(exc).__name__}: {text}; check the endpoint, the credentials and the URL"
    return OutputError(f"{where}: cannot write the output: {fix}")


class Folder:
    """A folder of output files, on local disk or behind an fsspec URL.

    Files are written whole: locally under a temporary name renamed into place
    (:func:`common.io.atomic_write`), on object storage as one upload.  Names starting with a
    dot are temporary files and are never listed.
    """

    def __init__(self, location: str | os.PathLike[str]):
        self.location = os.fspath(location)
        self.remote = is_url(self.location)
        if self.remote:
            self.fs, self.root = filesystem(self.location)
            self.root = self.root.rstrip("/")

    def __str__(self) -> str:
        return self.location

    def path(self, name: str) -> str:
        return join(self.location, name)

    def names(self) -> list[str]:
        """The names of the files in the folder (none if it does not exist), sorted."""
        try:
            if self.remote:
                entries = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)
                           if p.rstrip("/") != self.root]
            else:
                entries = os.listdir(self.location)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise self._error(e) from e
        return sorted(n for n in entries if not n.startswith("."))

    def exists(self, name: str) -> bool:
        try:
            if self.remote:
                return bool(self.fs.exists(f"{self.root}/{name}"))
            return os.path.isfile(self.path(name))
        except OSError:
            return False

    def read(self, name: str) -> bytes:
        try:
            if self.remote:
                return self.fs.cat_file(f"{self.root}/{name}")
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError as e:
            raise OSError(e.errno, f"{self.path(name)}: cannot be read ({e.strerror or e})") from e

    def write(self, name: str, data: bytes) -> None:
        """Write ``name`` whole (replacing it); OutputError (one line) on any failure."""
        if not self.remote:
            from common.io import atomic_write_bytes

            atomic_write_bytes(Path(self.path(name)), data, overwrite=True)
            return
        try:
            self.fs.pipe_file(f"{self.root}/{name}", data)
        except Exception as e:  # noqa: BLE001  botocore and friends raise their own types
            raise storage_error(self.path(name), e) from e

    def remove(self, name: str) -> None:
        try:
            if self.remote:
                self.fs.rm_file(f"{self.root}/{name}")
            else:
                os.unlink(self.path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._error(e) from e

    def _error(self, e: OSError) -> OutputError:
        if self.remote:
            return storage_error(self.location, e)
        from common.io import output_error

        return output_error(self.location, e)
