"""`reportexport_async.rows`: a column's type from its values, values typed or refused, and the
rows of the sandbox's result files read alike in CSV, JSON and XML."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from reportexport_async.rows import (
    ColumnTypeChanged,
    Kind,
    UnreadableResult,
    chunk_kinds,
    decide,
    kind_of,
    read_rows,
    typed,
    typed_row,
    widen,
)
from reportexport_async.sandbox.catalog import CATALOGS
from reportexport_async.sandbox.data import DataKey, write_result


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("true", "bool"),
        ("FALSE", "bool"),
        ("0", "bigint"),
        ("-3629", "bigint"),
        ("123456789012345678", "bigint"),
        ("1234567890123456789", "text"),  # 19 digits: may not fit 64 bits
        ("007", "text"),  # a leading zero: an id, not a number
        ("12.50", "decimal"),
        ("-0.125", "decimal"),
        ("1.1234567891", "text"),  # 10 digits after the point would be rounded
        (".5", "text"),
        ("2025-03-01", "date"),
        ("2025-02-30", "text"),
        ("2025-03-01T10:00:00-08:00", "timestamp"),
        ("2025-03-01 10:00", "timestamp"),
        ("2025-03-01T10:00:00Z", "timestamp"),
        ("2025-03-01T25:00:00", "text"),
        ("USD", "text"),
        ("1e5", "text"),
    ],
)
def test_the_kind_of_a_value(text: str, kind: Kind) -> None:
    assert kind_of(text) == kind
    if kind != "text":
        typed(text, kind)  # every value fits the kind it was given


@pytest.mark.parametrize(
    ("first", "second", "both"),
    [
        ("bigint", "decimal", "decimal"),
        ("date", "timestamp", "timestamp"),
        ("bool", "bigint", "text"),
        ("date", "decimal", "text"),
        ("text", "bigint", "text"),
        ("date", "date", "date"),
    ],
)
def test_two_kinds_in_one_column(first: Kind, second: Kind, both: Kind) -> None:
    assert widen(first, second) == widen(second, first) == both


def test_a_column_kind_over_rows_ignores_empty_values_and_kept_columns() -> None:
    rows = [
        {"n": "1", "x": "", "d": "2025-01-01", "kept": "abc"},
        {"n": "2.5", "x": "", "d": "2025-01-01T08:00:00Z", "kept": "1"},
    ]
    assert chunk_kinds(rows, skip=["kept"]) == {"n": "decimal", "d": "timestamp"}


def test_a_decided_kind_is_kept_and_a_new_column_gets_the_chunks() -> None:
    assert decide({"n": "decimal", "bad": "nonsense"}, {"n": "bigint", "m": "date"}) == {
        "n": "decimal",
        "m": "date",
    }


def test_values_typed_by_their_columns_kind() -> None:
    kinds: dict[str, Kind] = {
        "n": "bigint", "a": "decimal", "d": "date", "t": "timestamp", "b": "bool",
    }  # fmt: skip
    row = {"n": "5", "a": "7", "d": "2025-01-02", "t": "2025-01-02", "b": "True", "s": "x",
           "e": ""}  # fmt: skip
    assert typed_row(row, kinds, table="T", chunk="c") == {
        "n": 5,
        "a": Decimal(7),
        "d": date(2025, 1, 2),
        "t": datetime(2025, 1, 2),
        "b": True,
        "s": "x",
        "e": None,
    }
    assert typed("2025-01-02T03:04:05-0800", "timestamp") == datetime(
        2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-8))
    )


@pytest.mark.parametrize(
    ("kind", "text"),
    [("bigint", "2.5"), ("decimal", "n/a"), ("date", "2025-01-02T00:00:00"), ("bool", "1")],
)
def test_a_value_that_does_not_fit_is_named(kind: Kind, text: str) -> None:
    with pytest.raises(ColumnTypeChanged) as caught:
        typed_row({"Amount": text}, {"Amount": kind}, table="mp_x", chunk="2025-01-01..02")
    error = caught.value
    assert (error.table, error.chunk, error.column, error.kind, error.value) == (
        "mp_x", "2025-01-01..02", "Amount", kind, text,
    )  # fmt: skip
    assert f"column 'Amount' holds {text!r}, which is not a {kind}" in str(error)


def test_the_three_formats_read_the_same_rows(tmp_path: Path) -> None:
    report = CATALOGS["Mediapartners"]["mp_action_listing_fast"]
    key = DataKey("IR1", "Mediapartners", report.id, ())
    days = [(date(2025, 3, 1), 3), (date(2025, 3, 2), 2)]
    found = {}
    for fmt in ("CSV", "JSON", "XML"):
        path = tmp_path / f"result.{fmt.lower()}"
        write_result(path, fmt, key, report.columns, days)
        found[fmt] = list(read_rows(path, fmt))
    assert len(found["CSV"]) == 5
    assert list(found["CSV"][0]) == [column.name for column in report.columns]
    assert found["CSV"] == found["JSON"] == found["XML"]


def test_csv_short_rows_blank_lines_and_json_values(tmp_path: Path) -> None:
    csv_file = tmp_path / "r.csv"
    csv_file.write_text('A,B,C\n1,"x, y"\n\n2,,3\n')
    assert list(read_rows(csv_file, "csv")) == [
        {"A": "1", "B": "x, y", "C": ""},
        {"A": "2", "B": "", "C": "3"},
    ]
    json_file = tmp_path / "r.json"
    json_file.write_text('{"Records": [{"A": 1, "B": true, "C": null, "D": {"k": 1}}]}')
    assert list(read_rows(json_file, "JSON")) == [{"A": "1", "B": "true", "C": "", "D": '{"k":1}'}]
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert list(read_rows(empty, "CSV")) == []
    with pytest.raises(ValueError, match="unknown result format"):
        read_rows(empty, "PARQUET")


def test_a_timestamp_keeps_its_offset() -> None:
    assert typed("2025-03-01T10:00:00Z", "timestamp") == datetime(2025, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "fmt", "text", "problem"),
    [
        ("long.csv", "CSV", "A,B\n1,2,3\n", "line 2 has 3 values for 2 columns"),
        ("quote.csv", "CSV", 'A\n"x\n', "unexpected end of data"),
        ("latin.csv", "CSV", "A\n\xe9\n", "utf-8"),
        ("object.json", "JSON", '{"A": 1}', "not an array of records"),
        ("scalars.json", "JSON", "[1, 2]", "not an array of records"),
        ("cut.json", "JSON", '[{"A": "1"}', "Expecting"),
        ("cut.xml", "XML", "<Records><Record><A>1</A></Record>", "no element found"),
    ],
)
def test_a_file_not_of_its_format_is_named_never_guessed(
    tmp_path: Path, name: str, fmt: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UnreadableResult, match=problem) as caught:
        list(read_rows(path, fmt))
    assert caught.value.path == str(path)
