"""A chunk file's rows, read in batches with bounded memory, whatever its format (CSV with one
header; JSON, an array of objects; XML, `<Record>` elements), and written again as plain CSV for
the loaders that read CSV themselves. Every reader of result files uses it: the typed
destinations and the dlt source. Blocking: run it in a thread.

A file that is not what its format says is a `ValueError` (the caller names the chunk: see
`typed.judge_file`), never guessed at: a CSV row with more or fewer cells than the header, an
unterminated quote, JSON that is not an array of objects or is cut short, XML that does not
parse, text that is not UTF-8 (a `UnicodeDecodeError`, a `ValueError` too)."""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

__all__ = ["BATCH", "ChunkRows", "CsvCopy", "read_rows"]

#: Rows judged (and converted) at a time: memory stays bounded whatever the file's size.
BATCH = 50_000
_READ = 1 << 20

#: A row's cells: text, None or "" when empty.
Row = Sequence[str | None]


class ChunkRows:
    """The column names of a chunk file, and its rows in batches (a cell: text, None if
    empty)."""

    def __init__(self, columns: list[str], rows: Iterator[Row]) -> None:
        self.columns = columns
        self._rows = rows

    def batches(self, size: int = BATCH) -> Iterator[list[Row]]:
        batch: list[Row] = []
        for row in self._rows:
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


@contextmanager
def read_rows(path: Path, fmt: str) -> Iterator[ChunkRows]:
    """The rows of the chunk file at `path` of format `fmt` (CSV, JSON or XML). `ValueError`
    when the file is not what its format says (`csv.Error` and XML's `ParseError` included)."""
    fmt = fmt.upper()
    if fmt not in ("CSV", "JSON", "XML"):
        raise ValueError(f"unknown result format {fmt!r}")
    try:
        if fmt == "CSV":
            with open(path, newline="", encoding="utf-8-sig") as text:
                yield _csv(text)
            return
        with open(path, "rb") as handle:
            yield _json(handle) if fmt == "JSON" else _xml(handle)
    except (csv.Error, ElementTree.ParseError) as exc:
        raise ValueError(str(exc)) from exc


def _csv(handle: TextIO) -> ChunkRows:
    reader = csv.reader(handle, strict=True)  # an unterminated quote is an error, not a cell
    header = next(reader, None)
    if header is None:
        return ChunkRows([], iter(()))
    width = len(header)

    def rows() -> Iterator[Row]:
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"line {line} has {len(row)} cells, the header {width}")
            yield row  # an empty cell stays "": as falsy as None

    return ChunkRows(header, rows())


def _objects(handle: BinaryIO) -> Iterator[dict[str, object]]:
    """The objects of a JSON array, decoded one at a time from a stream."""
    decoder = json.JSONDecoder()
    buffer = ""
    started = False
    read = handle.read
    done = False
    while True:
        buffer = buffer.lstrip(" \t\r\n,")
        if not started:
            if not buffer and not done:
                more = read(_READ)
                done = not more
                buffer += more.decode("utf-8-sig")
                continue
            if not buffer.startswith("["):
                raise ValueError("a JSON result must be an array of objects")
            buffer, started = buffer[1:], True
            continue
        if buffer.startswith("]"):
            return
        try:
            item, end = decoder.raw_decode(buffer)
        except json.JSONDecodeError:
            if done:
                raise ValueError("the JSON result ends before its array does") from None
            more = read(_READ)
            done = not more
            buffer += more.decode("utf-8")
            continue
        if not isinstance(item, dict):
            raise ValueError("a JSON result must be an array of objects")
        yield item
        buffer = buffer[end:]
        if len(buffer) < _READ and not done:
            more = read(_READ)
            done = not more
            buffer += more.decode("utf-8")


def _cell(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _json(handle: BinaryIO) -> ChunkRows:
    objects = _objects(handle)
    first = next(objects, None)
    if first is None:
        return ChunkRows([], iter(()))
    columns = list(first)

    def rows() -> Iterator[Row]:
        yield [_cell(first.get(name)) for name in columns]
        known = set(columns)
        for item in objects:
            if len(item) > len(columns) or not known.issuperset(item):
                extra = sorted(set(item) - known)
                raise ValueError(f"a record has fields the first one lacks: {extra}")
            yield [_cell(item.get(name)) for name in columns]

    return ChunkRows(columns, rows())


def _xml(handle: BinaryIO) -> ChunkRows:
    events = ElementTree.iterparse(handle, events=("end",))

    def records() -> Iterator[dict[str, str | None]]:
        for _, element in events:
            if element.tag == "Record":
                yield {child.tag: (child.text or None) for child in element}
                element.clear()

    found = records()
    first = next(found, None)
    if first is None:
        return ChunkRows([], iter(()))
    columns = list(first)

    def rows() -> Iterator[Row]:
        yield [first.get(name) for name in columns]
        for record in found:
            yield [record.get(name) for name in columns]

    return ChunkRows(columns, rows())


class CsvCopy:
    """Rows written again as a plain CSV file with a header (an empty cell: null), fsynced;
    with no path, nothing is written."""

    def __init__(self, path: Path | None, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._out: TextIO | None = None
        self._writer: Any = None

    def __enter__(self) -> CsvCopy:
        if self.path is not None:
            self._out = open(self.path, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._out)
            self._writer.writerow(self.columns)
        return self

    def write(self, rows: list[Row]) -> None:
        if self._writer is not None:
            self._writer.writerows(rows)

    def __exit__(self, *exc: object) -> None:
        if self._out is not None:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
