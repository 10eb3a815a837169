"""The one reader of result files and its column types, as every loader uses them (the typed
DuckDB and Parquet destinations, the dlt source): `destinations.rows` reads a chunk's file alike
in CSV, JSON and XML; `destinations.types` judges a column's type from its values, keeps it across
chunks and turns cells into Python values; `destinations.typed.judge_rows` names the report, the
chunk, the column and the value of a misfit, and the file that is not of its format."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from reportexport_async.destinations.rows import read_rows
from reportexport_async.destinations.typed import judge_rows, typed_batches
from reportexport_async.destinations.types import ColumnType, Schema, infer, judge, value
from reportexport_async.errors import ColumnTypeError, LoadError, UnreadableResult
from reportexport_async.sandbox.catalog import CATALOGS
from reportexport_async.sandbox.data import DataKey, write_result

INTEGER, DATE, TEXT = ColumnType("integer"), ColumnType("date"), ColumnType("text")


@pytest.mark.parametrize(
    ("text", "kind", "python"),
    [
        ("true", ColumnType("boolean"), True),
        ("FALSE", ColumnType("boolean"), False),
        ("0", INTEGER, 0),
        ("-3629", INTEGER, -3629),
        ("9223372036854775807", INTEGER, 2**63 - 1),
        ("9223372036854775808", ColumnType("decimal"), Decimal(2**63)),  # past 64 bits
        ("007", TEXT, "007"),  # a leading zero: an id, not a number
        ("01.5", TEXT, "01.5"),
        ("12.50", ColumnType("decimal", 2), Decimal("12.50")),
        ("-0.125", ColumnType("decimal", 3), Decimal("-0.125")),
        (".5", TEXT, ".5"),
        ("1e5", TEXT, "1e5"),
        ("2025-03-01", DATE, date(2025, 3, 1)),
        ("2025-02-30", TEXT, "2025-02-30"),  # the shape of a date, not a date
        ("2025-03-01T10:00:00", ColumnType("timestamp"), datetime(2025, 3, 1, 10)),
        ("2025-03-01 10:00:00.5", ColumnType("timestamp"), datetime(2025, 3, 1, 10, 0, 0, 500000)),
        ("2025-03-01T25:00:00", TEXT, "2025-03-01T25:00:00"),
        # An offset is kept as written: a TIMESTAMP column holds none.
        ("2025-03-01T10:00:00-08:00", TEXT, "2025-03-01T10:00:00-08:00"),
        ("USD", TEXT, "USD"),
    ],
)
def test_the_type_of_a_value_and_its_python_value(
    text: str, kind: ColumnType, python: object
) -> None:
    assert judge(text) == kind
    assert value(text, kind) == python
    assert type(value(text, kind)) is type(python)


def test_an_empty_cell_is_null_in_every_type() -> None:
    for kind in ("boolean", "integer", "decimal", "date", "timestamp", "text", "undecided"):
        assert value(None, ColumnType(kind)) is None
        assert value("", ColumnType(kind)) is None


@pytest.mark.parametrize(
    ("kind", "text"),
    [(INTEGER, "2.5"), (ColumnType("decimal", 2), "n/a"), (ColumnType("decimal", 1), "1.25"),
     (DATE, "2025-01-02T00:00:00"), (ColumnType("boolean"), "1")],
)  # fmt: skip
def test_a_cell_that_does_not_fit_is_no_python_value(kind: ColumnType, text: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        value(text, kind)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "2.5", None, ""], ColumnType("decimal", 1)),
        (["1.5", "2.125"], ColumnType("decimal", 3)),
        (["2025-01-01", "2025-01-01T08:00:00"], TEXT),  # a date and a timestamp: no widening
        (["true", "1"], TEXT),
        (["", None], ColumnType("undecided")),
    ],
)
def test_the_type_of_a_column_of_a_new_chunk(values: list[str | None], kind: ColumnType) -> None:
    schema = Schema().merge({"A": values}, target="t", report="R", chunk="c")
    assert schema.columns["A"] == kind


def test_a_kept_type_widens_a_number_only_and_never_where_it_may_not() -> None:
    decided = Schema.of({"N": "integer", "D": "decimal:2", "E": "date"})
    empty = decided.merge({"N": [None], "D": [""], "E": []}, target="t", report="R", chunk="c")
    assert empty.columns == decided.columns  # a chunk empty in a column flips nothing
    wider = decided.merge({"N": ["2.5"], "D": ["1.125"]}, target="t", report="R", chunk="c")
    assert wider.record() == {"N": "decimal:1", "D": "decimal:3", "E": "date"}
    assert infer(["7"], ColumnType("decimal", 2)) == (ColumnType("decimal", 2), "")
    for column, cell, widen in [("N", "2.5", False), ("D", "1.125", False), ("E", "x", True)]:
        with pytest.raises(ColumnTypeError) as raised:
            decided.merge({column: [cell]}, target="dlt", report="R", chunk="c2", widen=widen)
        error = raised.value
        assert (error.target, error.report, error.chunk, error.column, error.value) == (
            "dlt", "R", "c2", column, cell,
        )  # fmt: skip
        assert f"column {column!r} holds {cell!r}" in str(error)
        assert isinstance(error, LoadError)


def test_the_three_formats_read_the_same_rows(tmp_path: Path) -> None:
    report = CATALOGS["Mediapartners"]["mp_action_listing_fast"]
    key = DataKey("IR1", "Mediapartners", report.id, ())
    days = [(date(2025, 3, 1), 3), (date(2025, 3, 2), 2)]
    cells, typed, schemas = {}, {}, {}
    for fmt in ("CSV", "JSON", "XML"):
        path = tmp_path / f"result.{fmt.lower()}"
        write_result(path, fmt, key, report.columns, days)
        with read_rows(path, fmt) as rows:
            assert rows.columns == [column.name for column in report.columns]
            # An empty cell is "" in a CSV, None in JSON and XML: both are null.
            cells[fmt] = [[c or None for c in row] for b in rows.batches() for row in b]
        columns, schemas[fmt], count = judge_rows(
            path, fmt, Schema(), target="t", report=report.id, chunk="c"
        )
        assert (columns, count) == ([column.name for column in report.columns], 5)
        typed[fmt] = [row for batch in typed_batches(path, fmt, schemas[fmt], 2) for row in batch]
    assert cells["CSV"] == cells["JSON"] == cells["XML"]
    assert schemas["CSV"] == schemas["JSON"] == schemas["XML"]
    assert typed["CSV"] == typed["JSON"] == typed["XML"]
    assert len(typed["CSV"]) == 5
    assert schemas["CSV"].columns["Date"] == DATE
    assert {type(v) for v in typed["CSV"][0].values()} > {date, str}


def test_csv_quotes_blank_lines_and_json_values(tmp_path: Path) -> None:
    csv_file = tmp_path / "r.csv"
    csv_file.write_text('A,B,C\n1,"x, y",\n\n2,,3\n')
    with read_rows(csv_file, "csv") as rows:
        assert rows.columns == ["A", "B", "C"]
        assert [list(r) for b in rows.batches() for r in b] == [["1", "x, y", ""], ["2", "", "3"]]
    json_file = tmp_path / "r.json"
    json_file.write_text('[{"A": 1, "B": true, "C": null, "D": {"k": 1}}, {"A": 2.5}]')
    _, schema, _ = judge_rows(json_file, "JSON", Schema(), target="t", report="R", chunk="c")
    assert [r for b in typed_batches(json_file, "JSON", schema) for r in b] == [
        {"A": Decimal(1), "B": True, "C": None, "D": '{"k": 1}'},
        {"A": Decimal("2.5"), "B": None, "C": None, "D": None},
    ]
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert judge_rows(empty, "CSV", Schema(), target="t", report="R", chunk="c")[::2] == ([], 0)
    with pytest.raises(ValueError, match="unknown result format"), read_rows(empty, "PARQUET"):
        pass


@pytest.mark.parametrize(
    ("name", "fmt", "text", "problem"),
    [
        ("long.csv", "CSV", "A,B\n1,2,3\n", "line 2 has 3 cells, the header 2"),
        ("short.csv", "CSV", "A,B\n1\n", "line 2 has 1 cells, the header 2"),
        ("quote.csv", "CSV", 'A\n"x\n', "unexpected end of data"),
        ("latin.csv", "CSV", "A\n\xe9\n", "utf-8"),
        ("object.json", "JSON", '{"A": 1}', "must be an array of objects"),
        ("scalars.json", "JSON", "[1, 2]", "must be an array of objects"),
        ("cut.json", "JSON", '[{"A": "1"}', "ends before its array does"),
        ("wider.json", "JSON", '[{"A": "1"}, {"A": "2", "B": "3"}]', "fields the first one lacks"),
        ("cut.xml", "XML", "<Records><Record><A>1</A></Record>", "no element found"),
    ],
)
def test_a_file_not_of_its_format_is_named_never_guessed(
    tmp_path: Path, name: str, fmt: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UnreadableResult, match=problem) as caught:
        judge_rows(path, fmt, Schema(), target="dlt", report="R", chunk="2025-01-01..2025-01-01")
    error = caught.value
    assert (error.target, error.report, error.chunk, error.path) == (
        "dlt", "R", "2025-01-01..2025-01-01", str(path),
    )  # fmt: skip
    assert isinstance(error, LoadError)
