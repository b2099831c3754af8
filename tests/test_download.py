"""``ingest download`` fails clearly when PhysioNet cannot be reached (no network in tests)."""

from __future__ import annotations

from click.testing import CliRunner

from ingest.cli import cli
from schemas import ExitCode


def test_offline_download_says_how_to_get_the_corpus(tmp_path):
    # A closed port on loopback stands in for an unreachable PhysioNet.
    result = CliRunner().invoke(
        cli, ["download", "--dest", str(tmp_path / "ptb-xl"), "--url", "http://127.0.0.1:9/x.zip"]
    )
    assert result.exit_code == ExitCode.FATAL
    assert result.output.startswith("Error: cannot download PTB-XL from http://127.0.0.1:9/x.zip")
    assert "Download it by hand from https://physionet.org/content/ptb-xl/1.0.3/" in result.output
    assert not (tmp_path / "ptb-xl").exists()
