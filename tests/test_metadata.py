"""MI labels and metadata checks, against the SCP statement table read independently."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import pytest
from conftest import SAMPLE

from ingest import MetadataError, load_database, load_scp_statements
from ingest.metadata import labels


def _mi_codes_from_csv() -> set[str]:
    with open(SAMPLE / "scp_statements.csv", newline="") as f:
        return {row[""] for row in csv.DictReader(f) if row["diagnostic_class"] == "MI"}


def test_mi_codes_come_from_the_statement_table():
    scp = load_scp_statements(SAMPLE / "scp_statements.csv")
    assert scp.mi_codes == _mi_codes_from_csv()
    assert len(scp.mi_codes) == 14
    # the injury codes are MI although they do not contain the letters "MI"
    assert {"INJAS", "INJAL", "INJIN", "INJLA", "INJIL"} <= scp.mi_codes


def test_every_record_label_matches_the_statement_table():
    scp = load_scp_statements(SAMPLE / "scp_statements.csv")
    mi_set = _mi_codes_from_csv()
    n_mi = 0
    for _, row in load_database(SAMPLE / "ptbxl_database.csv").iterrows():
        codes = ast.literal_eval(row["scp_codes"])
        got = labels(row["scp_codes"], scp, "test")
        expected = sorted(set(codes) & mi_set)
        assert got["mi_codes"] == expected, row["ecg_id"]
        assert got["mi"] == bool(expected)
        n_mi += got["mi"]
    assert n_mi == 49


def test_superclasses_use_diagnostic_codes_only():
    scp = load_scp_statements(SAMPLE / "scp_statements.csv")
    got = labels("{'IMI': 15.0, 'NORM': 80.0, 'SR': 0.0}", scp, "row")
    assert got["diagnostic_superclasses"] == ["MI", "NORM"]  # SR is a rhythm statement
    assert got["scp_codes"] == [
        {"code": "IMI", "likelihood": 15.0},
        {"code": "NORM", "likelihood": 80.0},
        {"code": "SR", "likelihood": 0.0},
    ]


@pytest.mark.parametrize(
    ("table", "content", "message"),
    [
        ("ptbxl_database.csv", None, r"ptbxl_database\.csv: the PTB-XL database table not found; "
         r"point --root at a PTB-XL folder"),
        ("ptbxl_database.csv", "ecg_id,patient_id\n1,2\n", r"ptbxl_database\.csv: expected "
         r"PTB-XL's ptbxl_database\.csv with its 28 columns; missing age, sex"),
        ("scp_statements.csv", None, r"scp_statements\.csv: the SCP statement table not found"),
        ("scp_statements.csv", ",description\nNORM,normal\n", r"scp_statements\.csv: expected "
         r"PTB-XL's scp_statements\.csv .* missing diagnostic, diagnostic_class"),
        ("scp_statements.csv", ",diagnostic,diagnostic_class\nNORM,1,NORM\n",
         r"no SCP code has diagnostic_class MI"),
    ],
)
def test_bad_tables_stop_with_a_named_message(small_corpus: Path, table, content, message):
    path = small_corpus / table
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    loader = load_database if table == "ptbxl_database.csv" else load_scp_statements
    with pytest.raises(MetadataError, match=message):
        loader(path)


def test_duplicate_ids_stop_the_run(small_corpus: Path):
    path = small_corpus / "ptbxl_database.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(MetadataError, match=r"ecg_id 1 appears more than once"):
        load_database(path)
