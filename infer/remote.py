"""Inputs behind fsspec URLs (``infer score --input s3://bucket/ecgs/``).

Discovery lists the URL's files (one listing call, whatever the number of files) and applies
the local rules: the same formats, ``--pattern`` and hidden names.  Reading stages each chunk's
records into a private temporary folder with batched downloads (a WFDB record's header first,
then the signal files it names), reads them with the local readers, and writes the URLs back
into the rows: a file that vanished or cannot be fetched becomes an error row naming its URL.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from common.storage import filesystem
from infer.readers import INPUT_FORMATS, Discovery, input_format


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] + "://"


def discover_url(url: str, pattern: str | None = None, recursive: bool = True,
                 formats: dict[str, str] = INPUT_FORMATS) -> Discovery:
    """Inputs under ``url``, as :func:`infer.readers.discover` finds them in a folder."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    scheme = _scheme(url)
    try:
        found = fs.find(root, maxdepth=None if recursive else 1, withdirs=False)
    except FileNotFoundError:
        found = []
    inputs, skipped, ignored = [], [], {}
    for path in sorted(found):
        rel = posixpath.relpath(path, root)
        name = posixpath.basename(path)
        fmt = input_format(name, formats)
        if fmt is None:
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if not (pattern or name.startswith(".") or ext in ("dat", "mat", "atr")):
                label = f".{ext}" if ext else "(no extension)"
                ignored[label] = ignored.get(label, 0) + 1
            continue
        if pattern and not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            skipped.append((scheme + path, "hidden (a name on its path starts with a dot); "
                                           "rename it to score it"))
            continue
        inputs.append((scheme + path, fmt))
    return Discovery(inputs=inputs, skipped=skipped,
                     ignored=dict(sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0]))))


def _signal_files(header_path: str) -> list[str]:
    """The signal files a staged WFDB header names, if they lie beside it (the reader's own
    header parser; a header it refuses stages nothing more, and reading it says why)."""
    from common.errors import RecordError
    from common.records import parse_header

    try:
        header = parse_header(header_path)
    except RecordError:
        return []
    names = dict.fromkeys(s.file_name for s in header.signals)
    return [n for n in names if "/" not in n and "\\" not in n and n not in ("", ".", "..")]


@contextlib.contextmanager
def staged(items: Sequence[tuple[str, str]]
           ) -> Iterator[tuple[list[tuple[str, str]], str, Callable[[dict[str, Any]], None]]]:
    """``(local items, staging folder, restore)``: ``items``' files downloaded into a private
    temporary folder (removed on exit); ``restore(row)`` puts the URLs back into a row."""
    fs, _ = filesystem(items[0][0])
    scheme = _scheme(items[0][0])
    tmp = tempfile.mkdtemp(prefix="mi-screen-stage-")
    try:
        local, back = [], {}
        wanted: dict[str, str] = {}  # remote path (no scheme) -> local path
        for k, (url, fmt) in enumerate(items):
            remote = url[len(scheme):]
            folder = os.path.join(tmp, str(k))
            os.mkdir(folder)
            path = os.path.join(folder, posixpath.basename(remote))
            wanted[remote] = path
            local.append((path, fmt))
            back[folder + os.sep] = url.rsplit("/", 1)[0] + "/"
        _fetch(fs, wanted)
        companions = {}
        for (path, fmt), (url, _) in zip(local, items, strict=True):
            if fmt == "wfdb" and os.path.isfile(path):
                base = url[len(scheme):].rsplit("/", 1)[0]
                for name in _signal_files(path):
                    companions[f"{base}/{name}"] = os.path.join(os.path.dirname(path), name)
        _fetch(fs, companions)

        def restore(row: dict[str, Any]) -> None:
            for key in ("path", "message", "page"):
                text = row.get(key)
                if isinstance(text, str) and tmp in text:
                    for folder, url_folder in back.items():
                        text = text.replace(folder, url_folder)
                    row[key] = text

        yield local, tmp, restore
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(fs, wanted: dict[str, str]) -> None:
    """Download ``{remote: local}`` in one batched call; what cannot be fetched is left
    absent, so that reading it gives an error row that names it."""
    if not wanted:
        return
    got = fs.cat(list(wanted), on_error="return")
    for remote, data in got.items():
        if isinstance(data, bytes):
            with open(wanted[remote], "wb") as f:
                f.write(data)
