"""`mission-control sql` as a user meets it: output formats, errors, and the README's copies
of the example queries."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from devtools.servers import REPO_ROOT
from pipeline import sql
from pipeline.cli import main


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATA_BACKEND", "local")
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("STATE_DB", str(tmp_path / "state.sqlite"))
    return tmp_path


QUERY = "SELECT 1 AS n, 'a''b' AS text, 2.5 AS x UNION ALL SELECT 10, NULL, 0.25 ORDER BY n"


def test_table_output_is_aligned(lake_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", QUERY]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["n", "text", "x"]
    # Numbers align right, text left.
    assert lines[2] == " 1  a'b    2.5"
    assert lines[3] == "10  NULL  0.25"
    assert lines[-1] == "(2 rows)"


def test_csv_and_json_output(lake_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--format", "csv", QUERY]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["n", "text", "x"], ["1", "a'b", "2.5"], ["10", "", "0.25"]]
    assert main(["sql", "--format", "json", QUERY]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"n": 1, "text": "a'b", "x": 2.5},
        {"n": 10, "text": None, "x": 0.25},
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [("SELEC 1", "syntax error"), ("SELECT * FROM no_such_table", "no_such_table")],
)
def test_a_bad_query_says_why_without_a_traceback(
    lake_env: Path, capsys: pytest.CaptureFixture[str], query: str, message: str
) -> None:
    assert main(["sql", query]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("query failed: ") and message in captured.err
    assert "Traceback" not in captured.err


def test_athena_ddl_names_the_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--athena-ddl", "--database", "analytics"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('CREATE OR REPLACE VIEW "analytics"."screen_time" AS\n')
    assert sql.VIEWS[0].sql in out


def test_the_readme_examples_are_the_code_examples() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Querying the lake\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^([^\n]+):\n\n```sql\n(.*?)\n```", section, re.S | re.M)
    assert [(title, query) for title, query in blocks] == [
        (title, query.strip("\n")) for title, query in sql.EXAMPLE_QUERIES.items()
    ]
    for table in [t.name for t in sql.TABLES] + [v.name for v in sql.VIEWS]:
        assert f"`{table}`" in section, table


def test_examples_avoid_what_athena_lacks() -> None:
    for query in sql.EXAMPLE_QUERIES.values():
        assert not re.search(r"\b(QUALIFY|epoch|strftime|list_|struct_pack)\b", query, re.I)
