"""Download the full PTB-XL corpus from PhysioNet (for users who are online)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

PTBXL_VERSION = "1.0.3"
PTBXL_URL = (
    "https://physionet.org/static/published-projects/ptb-xl/"
    f"ptb-xl-a-large-publicly-available-electrocardiography-dataset-{PTBXL_VERSION}.zip"
)
PTBXL_PAGE = f"https://physionet.org/content/ptb-xl/{PTBXL_VERSION}/"


class DownloadError(RuntimeError):
    """The corpus could not be downloaded; the message says how to get it by hand."""


def download_ptbxl(
    dest: str | os.PathLike[str],
    url: str = PTBXL_URL,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download and unpack PTB-XL into ``dest`` (about 1.7 GB zipped, 3 GB unpacked).

    The archive is fetched to a temporary file and unpacked into a temporary folder beside
    ``dest``, which is renamed into place only when complete.  Returns the folder holding
    ``ptbxl_database.csv`` (pass it to ``ingest ptbxl --root``).
    """
    dest = Path(dest)
    if (dest / "ptbxl_database.csv").is_file():
        _LOGGER.info("%s already holds PTB-XL; nothing to do", dest)
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise DownloadError(f"{dest}: exists and is not empty; choose an empty or new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed https URL)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot download PTB-XL from {url} ({reason}); this machine looks offline. "
            f"Download it by hand from {PTBXL_PAGE}, unpack it, and run "
            "`make ingest PTBXL_DIR=/path/to/ptb-xl`"
        ) from e
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        archive = tmpdir / "ptb-xl.zip"
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        with response, open(archive, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmpdir / "unpacked")
        archive.unlink()
        found = next((tmpdir / "unpacked").rglob("ptbxl_database.csv"), None)
        if found is None:
            raise DownloadError(f"{url}: the archive holds no ptbxl_database.csv")
        if dest.exists():
            dest.rmdir()
        os.replace(found.parent, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return dest
