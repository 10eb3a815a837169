"""The rows of a result file as values a table can hold: `read_rows` reads a chunk's file (CSV,
JSON or XML) as text, `kind_of` and `chunk_kinds` decide each column's type from the data, and
`typed_row` turns a row's text into values of the types decided.

A column's type is the narrowest one that every non-empty value of the column fits:

    bool       true, false (in any case)
    bigint     -12, 0, 3629 (no leading zero, at most 18 digits: always a 64-bit integer)
    decimal    -12.5, 0.25 (at most 9 digits after the point and 38 in all), kept exact (Decimal)
    date       2025-03-01
    timestamp  2025-03-01T10:00:00-08:00 (also with a space, without seconds, without offset)
    text       anything else, kept as written

bigint and decimal together are decimal, date and timestamp together are timestamp; any other mix
is text. An empty value is null and decides nothing, so a column empty in one chunk keeps the type
the others gave it. A type, once decided, is kept by the caller (`decide`): a later value that does
not fit it (text in a decimal column, a decimal in a bigint column) raises `ColumnTypeChanged`
naming the table, the chunk, the column and the value; it is never cast or dropped.

Reading is blocking (run it in a thread from async code) and streams: CSV and XML a row at a time;
a JSON result is one array, parsed whole. A file that is not of its format (a CSV row with more
values than the header, JSON that is not an array of records) raises `UnreadableResult`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

from .errors import ReportExportError

__all__ = [
    "KINDS",
    "ColumnTypeChanged",
    "Kind",
    "UnreadableResult",
    "chunk_kinds",
    "decide",
    "kind_of",
    "read_rows",
    "typed",
    "typed_row",
    "widen",
]

Kind = Literal["bool", "bigint", "decimal", "date", "timestamp", "text"]
KINDS: tuple[Kind, ...] = ("bool", "bigint", "decimal", "date", "timestamp", "text")

_BIGINT = re.compile(r"-?(?:0|[1-9]\d{0,17})")
# 29 digits before the point and 9 after: what a DECIMAL(38, 9) column holds without rounding.
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d{0,28})\.\d{1,9}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
#: Two kinds seen in one column, and the kind both fit (any other mix is text).
_WIDER: dict[frozenset[Kind], Kind] = {
    frozenset(("bigint", "decimal")): "decimal",
    frozenset(("date", "timestamp")): "timestamp",
}


class UnreadableResult(ReportExportError):
    """A result file that is not of its format: a CSV row with more values than the header,
    JSON that is not an array of records, XML that does not parse, text that is not UTF-8."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot read the result {self.path!r}: {problem}")


class ColumnTypeChanged(ReportExportError):
    """A value does not fit the type its column was given when it was first loaded. Nothing of
    the chunk is loaded; the message says which table, chunk, column and value."""

    def __init__(self, table: str, chunk: str, column: str, kind: Kind, value: str) -> None:
        self.table = table
        self.chunk = chunk
        self.column = column
        self.kind = kind
        self.value = value
        super().__init__(
            f"{table}, chunk {chunk}: column {column!r} holds {value!r}, which is not a {kind} "
            f"(the column's type since it was first loaded); nothing of the chunk was loaded. "
            "If the column's type has really changed, drop the table and load it again"
        )


def kind_of(text: str) -> Kind:
    """The narrowest kind `text` (not empty) fits."""
    if text.lower() in ("true", "false"):
        return "bool"
    if _BIGINT.fullmatch(text):
        return "bigint"
    if _DECIMAL.fullmatch(text):
        return "decimal"
    if _DATE.fullmatch(text) and _parses(date.fromisoformat, text):
        return "date"
    if _TIMESTAMP.fullmatch(text) and _parses(datetime.fromisoformat, text):
        return "timestamp"
    return "text"


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:  # 2025-02-30: the shape of a date, not a date
        return False
    return True


def widen(first: Kind, second: Kind) -> Kind:
    """The narrowest kind both fit."""
    if first == second:
        return first
    return _WIDER.get(frozenset((first, second)), "text")


def chunk_kinds(rows: Iterable[Mapping[str, str]], skip: Iterable[str] = ()) -> dict[str, Kind]:
    """Each column's kind over `rows` (columns only ever empty are left out; so are `skip`,
    columns whose kind is decided already)."""
    known = set(skip)
    found: dict[str, Kind] = {}
    for row in rows:
        for column, text in row.items():
            if not text or column in known:
                continue
            kind = kind_of(text)
            before = found.get(column)
            found[column] = kind if before is None else widen(before, kind)
    return found


def decide(decided: Mapping[str, str], found: Mapping[str, Kind]) -> dict[str, Kind]:
    """The kinds to type a chunk with: those decided by earlier chunks, kept; then the kinds
    found in this chunk for columns seen for the first time."""
    kinds: dict[str, Kind] = {}
    for column, kind in decided.items():
        if kind in KINDS:
            kinds[column] = kind
    for column, kind in found.items():
        kinds.setdefault(column, kind)
    return kinds


def typed(text: str, kind: Kind) -> object:
    """`text` as a value of `kind` (None when empty); `ValueError` when it does not fit."""
    if not text:
        return None
    if kind == "text":
        return text
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    elif kind == "bigint":
        if _BIGINT.fullmatch(text):
            return int(text)
    elif kind == "decimal":
        if _BIGINT.fullmatch(text) or _DECIMAL.fullmatch(text):
            return Decimal(text)
    elif kind == "date":
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    elif _DATE.fullmatch(text) or _TIMESTAMP.fullmatch(text):  # a timestamp
        return datetime.fromisoformat(text)
    raise ValueError(f"{text!r} is not a {kind}")


def typed_row(
    row: Mapping[str, str], kinds: Mapping[str, Kind], *, table: str, chunk: str
) -> dict[str, object]:
    """`row` with each value typed by its column's kind (a column without one is text);
    `ColumnTypeChanged` when a value does not fit."""
    values: dict[str, object] = {}
    for column, text in row.items():
        kind = kinds.get(column, "text")
        try:
            values[column] = typed(text, kind)
        except ValueError:
            raise ColumnTypeChanged(table, chunk, column, kind, text) from None
    return values


# -- reading ----------------------------------------------------------------------------------


def read_rows(path: Path, result_format: str) -> Iterator[dict[str, str]]:
    """The rows of the result file at `path` (`CSV`, `JSON` or `XML`), each a mapping of column
    to text (empty: no value). `UnreadableResult` when the file is not of its format (nothing is
    guessed or dropped); `ValueError` for another format. Blocking."""
    readers = {"CSV": _csv_rows, "JSON": _json_rows, "XML": _xml_rows}
    reader = readers.get(result_format.upper())
    if reader is None:
        raise ValueError(f"unknown result format {result_format!r}")
    return _reporting(path, reader(path))


def _reporting(path: Path, rows: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
    try:
        yield from rows
    except (ValueError, csv.Error, ElementTree.ParseError) as exc:  # also JSON and UTF-8
        raise UnreadableResult(path, str(exc)) from exc


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        header = next(reader, None)
        if header is None:
            return
        for cells in reader:
            if len(cells) > len(header):
                raise ValueError(
                    f"line {reader.line_num} has {len(cells)} values for {len(header)} columns"
                )
            if cells:  # a blank line is no row; a short one has empty values at its end
                yield dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))


def _json_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8-sig") as handle:
        document = json.load(handle)
    # The API's results are a top-level array; an object holding `Records` is read too.
    records = document.get("Records") if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("not an array of records")
    for record in records:
        yield {str(key): _text(value) for key, value in record.items()}


def _text(value: object) -> str:
    """A JSON value as the CSV of the same result would hold it (the API sends strings)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _xml_rows(path: Path) -> Iterator[dict[str, str]]:
    # <ImpactRadiusResponse><Records><Record><Column>value</Column>...</Record>...
    for _, element in ElementTree.iterparse(path, events=("end",)):
        if element.tag == "Record":
            yield {child.tag: child.text or "" for child in element}
            element.clear()  # bounded memory: the rows read are let go
