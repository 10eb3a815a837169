"""Deterministic synthetic report rows, and the result files the sandbox serves.

The rows of one day depend only on (account, report, non-date filters, day), so the rows of a date
range are exactly the rows of its sub-ranges together: a chunked backfill can be checked row by row
against one big export. A day's rows are a prefix of a fixed sequence whose length grows while the
day is inside the settle window (the guide's rule 6 in docs/guide.md: data for recent days is still
being completed); older days never change, so a replay of a recent range can return more rows and
nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

from .catalog import Column

_PROGRAMS = ("3629", "4120", "7781", "10244")
_CURRENCIES = ("USD", "EUR", "GBP")
_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "NL", "JP")
_WRITE_BATCH = 4096  # rows formatted per write call


@dataclass(frozen=True)
class DataKey:
    """Everything that selects a data set, apart from the dates."""

    account_sid: str
    persona: str
    source: str  # the report id, or "ClickExport"
    filters: tuple[tuple[str, str], ...]  # sorted, without dates and ResultFormat

    def day_seed(self, day: date) -> int:
        text = "\x1f".join(
            [self.account_sid, self.persona, self.source, day.isoformat()]
            + [f"{name}={value}" for name, value in self.filters]
        )
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def rows_for_day(
    day: date,
    as_of: datetime,
    *,
    rows_per_day: int,
    settle_days: int,
    utc_offset: timedelta,
) -> int:
    """How many rows of `day` exist at sandbox time `as_of`."""
    tz = timezone(utc_offset)
    day_start = datetime.combine(day, time(0), tz)
    elapsed = (as_of - day_start).total_seconds()
    if elapsed <= 0:
        return 0
    settle = timedelta(days=1 + settle_days).total_seconds()
    if elapsed >= settle:
        return rows_per_day
    return math.floor(rows_per_day * elapsed / settle)


def _column_maker(column: Column, filters: dict[str, str]) -> Callable[[random.Random, str], str]:
    kind = column.kind
    if kind == "program":
        program = filters.get("SUBAID") or filters.get("ProgramId")
        if program:
            return lambda rng, rowid: program
        return lambda rng, rowid: rng.choice(_PROGRAMS)
    if kind == "rowid":
        return lambda rng, rowid: rowid
    if kind == "amount":
        return lambda rng, rowid: f"{rng.randrange(100, 500000) / 100:.2f}"
    if kind == "count":
        return lambda rng, rowid: str(rng.randrange(0, 5000))
    if kind == "currency":
        currency = filters.get("CONV_CURRENCY")
        if currency:
            return lambda rng, rowid: currency
        return lambda rng, rowid: rng.choice(_CURRENCIES)
    if kind == "country":
        return lambda rng, rowid: rng.choice(_COUNTRIES)
    if kind.startswith("choice:"):
        options = tuple(kind.removeprefix("choice:").split("|"))
        return lambda rng, rowid: rng.choice(options)
    raise ValueError(f"unknown column kind {kind!r}")


def iter_rows(
    key: DataKey, columns: Sequence[Column], day: date, count: int
) -> Iterator[list[str]]:
    """The first `count` rows of `day`, each a list of strings in column order."""
    filters = dict(key.filters)
    makers = [
        None if column.kind == "date" else _column_maker(column, filters) for column in columns
    ]
    rng = random.Random(key.day_seed(day))
    day_text = day.isoformat()
    prefix = day.strftime("%Y%m%d")
    for index in range(count):
        rowid = f"{prefix}{index:08d}"
        yield [day_text if maker is None else maker(rng, rowid) for maker in makers]


@dataclass(frozen=True)
class ResultFile:
    path: Path
    records: int
    size: int
    sha256: str


def _format_rows(
    fmt: str, names: Sequence[str], rows: Iterator[list[str]]
) -> Iterator[tuple[str, int]]:
    """Yield (text, number of rows in it) in batches."""
    batch: list[str] = []
    counted = 0
    for row in rows:
        if fmt == "CSV":
            batch.append(",".join(row))
        elif fmt == "JSON":
            batch.append(json.dumps(dict(zip(names, row, strict=True)), separators=(",", ":")))
        else:
            cells = "".join(f"<{n}>{escape(v)}</{n}>" for n, v in zip(names, row, strict=True))
            batch.append(f"<Record>{cells}</Record>")
        counted += 1
        if len(batch) >= _WRITE_BATCH:
            yield _join(fmt, batch), counted
            batch, counted = [], 0
    if batch:
        yield _join(fmt, batch), counted


def _join(fmt: str, batch: list[str]) -> str:
    if fmt == "JSON":
        return ",\n".join(batch)
    return "\n".join(batch) + "\n"


def write_result(
    path: Path,
    fmt: str,
    key: DataKey,
    columns: Sequence[Column],
    day_counts: Sequence[tuple[date, int]],
) -> ResultFile:
    """Write a result file (CSV with one header, a JSON array of objects whose values are strings
    as the legacy Reports API returns them, or XML in the API's `ImpactRadiusResponse` envelope)
    atomically: `.part`, fsync, rename. Blocking: run it in a thread."""
    names = [column.name for column in columns]
    digest = hashlib.sha256()
    size = 0
    records = 0
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as handle:

        def emit(text: str) -> None:
            nonlocal size
            data = text.encode()
            digest.update(data)
            size += len(data)
            handle.write(data)

        if fmt == "CSV":
            emit(",".join(names) + "\n")
        elif fmt == "JSON":
            emit("[\n")
        else:
            emit('<?xml version="1.0" encoding="UTF-8"?>\n<ImpactRadiusResponse><Records>\n')
        first = True
        for day, count in day_counts:
            for text, counted in _format_rows(fmt, names, iter_rows(key, columns, day, count)):
                if fmt == "JSON" and not first:
                    emit(",\n")
                emit(text)
                first = False
                records += counted
        if fmt == "JSON":
            emit("\n]\n")
        elif fmt == "XML":
            emit("</Records></ImpactRadiusResponse>\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, path)
    return ResultFile(path=path, records=records, size=size, sha256=digest.hexdigest())


def date_range(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)
