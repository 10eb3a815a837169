"""Column types decided from the data, kept stable across chunks. Pure: no I/O, no database.

A report's result is text (CSV cells, JSON strings, XML elements). A typed destination gives each
column the narrowest type every value of it fits, in this order of preference:

    boolean    true / false (any case)
    integer    -?digits, fitting a signed 64-bit integer            (BIGINT)
    decimal    -?digits.digits, at most 38 digits                   (DECIMAL(38, scale))

A number has no leading zero ("007", "01.5" are text: an id or a code, whose zeros a number
would lose).
    date       YYYY-MM-DD                                           (DATE)
    timestamp  YYYY-MM-DD[T ]HH:MM:SS[.ffffff], no offset            (TIMESTAMP)
    text       anything else                                        (VARCHAR)

An empty cell is a null and says nothing about the type. A column with no value yet is
`undecided` (stored as text, all null) until a chunk gives it values. Once decided, a type is
kept (`Schema.merge`): a later chunk whose values are all empty does not change it, and a value
that does not fit is an error naming the report, the chunk and the column (`ColumnTypeError`),
never a silent cast. The only changes allowed are lossless widenings of numbers: an integer
column that meets a decimal becomes a decimal, a decimal's scale grows to the largest seen.

The same rules serve every destination (DuckDB, Parquet, the dlt source): `infer` judges one
batch of values, `Schema.merge` keeps a report's types across batches and chunks, and `value`
turns a cell into the Python value of its column's type (for a loader that hands rows over as
Python objects, as the dlt source does). A destination that cannot change a loaded column's type
(dlt's: it would put the wider values in a variant column beside it) merges with `widen=False`:
there, a value that would widen a decided column is the same `ColumnTypeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from ..errors import ColumnTypeError, LoadError

__all__ = [
    "DECIMAL_DIGITS",
    "ColumnType",
    "ColumnTypeError",
    "Kind",
    "LoadError",
    "Schema",
    "infer",
    "judge",
    "value",
]

Kind = Literal["undecided", "boolean", "integer", "decimal", "date", "timestamp", "text"]
#: Digits a decimal holds in all (DuckDB's and Parquet's widest decimal).
DECIMAL_DIGITS = 38

_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)\Z")
_DECIMAL = re.compile(r"-?(0|[1-9]\d*)\.(\d+)\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?\Z")
_BOOLEAN = frozenset({"true", "false"})
_INT64 = 1 << 63
#: Digits that always fit a signed 64-bit integer.
_SHORT_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,17})\Z")


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's type: its kind, and for a decimal its scale (digits after the point)."""

    kind: Kind
    scale: int = 0

    @property
    def sql(self) -> str:
        """The type as DuckDB spells it."""
        return {
            "undecided": "VARCHAR",
            "boolean": "BOOLEAN",
            "integer": "BIGINT",
            "decimal": f"DECIMAL({DECIMAL_DIGITS}, {self.scale})",
            "date": "DATE",
            "timestamp": "TIMESTAMP",
            "text": "VARCHAR",
        }[self.kind]

    def describe(self) -> str:
        if self.kind == "decimal":
            return f"a decimal (scale {self.scale})"
        return {"integer": "an integer", "undecided": "undecided"}.get(self.kind, f"a {self.kind}")

    def text(self) -> str:
        """For records: `decimal:2`, `date`, ..."""
        return f"decimal:{self.scale}" if self.kind == "decimal" else self.kind

    @classmethod
    def parse(cls, text: str) -> ColumnType:
        kind, _, scale = text.partition(":")
        return cls(kind, int(scale or 0))  # type: ignore[arg-type]


UNDECIDED = ColumnType("undecided")
TEXT = ColumnType("text")


def judge(value: str) -> ColumnType:
    """The narrowest type of one non-empty value."""
    if value.lower() in _BOOLEAN:
        return ColumnType("boolean")
    if _INTEGER.match(value):
        if -_INT64 <= int(value) < _INT64:
            return ColumnType("integer")
        return ColumnType("decimal") if len(value.lstrip("-")) <= DECIMAL_DIGITS else TEXT
    found = _DECIMAL.match(value)
    if found:
        whole, fraction = found.groups()
        if len(whole) + len(fraction) <= DECIMAL_DIGITS:
            return ColumnType("decimal", len(fraction))
        return TEXT
    if _DATE.match(value) and _valid(date.fromisoformat, value):
        return ColumnType("date")
    if _TIMESTAMP.match(value) and _valid(datetime.fromisoformat, value):
        return ColumnType("timestamp")
    return TEXT


def _valid(parse: object, value: str) -> bool:
    try:
        parse(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


def widen(old: ColumnType, new: ColumnType) -> ColumnType | None:
    """The type that holds values of both, when the widening is lossless; None otherwise."""
    if old.kind == "undecided" or old == new:
        return new
    if new.kind == "undecided" or old.kind == "text":
        return old  # text holds anything
    numbers = ("integer", "decimal")
    if old.kind in numbers and new.kind in numbers:
        return ColumnType("decimal", max(old.scale, new.scale))
    return None


def _fits(kind: ColumnType) -> Callable[[str], bool] | None:
    """A quick test that a value fits `kind` as it is (no widening); None: every value needs
    judging (an undecided column)."""
    if kind.kind == "integer":
        return lambda value: bool(_SHORT_INTEGER.match(value)) or judge(value) == kind
    if kind.kind == "decimal":  # at most `scale` decimals, at most 38 digits in all
        digits = DECIMAL_DIGITS - kind.scale
        fraction = rf"(\.\d{{1,{kind.scale}}})?" if kind.scale else ""
        pattern = re.compile(rf"-?(?:0|[1-9]\d{{0,{digits - 1}}}){fraction}\Z")
        return lambda value: pattern.match(value) is not None
    if kind.kind == "boolean":
        return lambda value: value.lower() in _BOOLEAN
    if kind.kind in ("date", "timestamp"):
        return lambda value: judge(value) == kind
    if kind.kind == "text":
        return lambda value: True
    return None


def infer(
    values: Iterable[str | None], start: ColumnType = UNDECIDED, *, widening: bool = True
) -> tuple[ColumnType, str]:
    """The type of a batch of one column's values, widened from `start`, and the first value
    that fits neither (`""` when all fit). Without `widening`, a value that would widen `start`
    (when decided) is such a value too."""
    kind = start
    fits = _fits(kind)
    for cell in {v for v in values if v}:  # each distinct value judged once
        if fits is not None and fits(cell):
            continue
        wider = widen(kind, judge(cell))
        if wider is None or (not widening and kind.kind != "undecided" and wider != kind):
            return kind, cell
        if wider != kind:
            kind, fits = wider, _fits(wider)
    return kind, ""


def value(cell: str | None, kind: ColumnType) -> object:
    """`cell` as the Python value of `kind`: bool, int, Decimal, date, datetime or str; None when
    empty. `ValueError` when it does not fit (a schema that judged the cell never sees one)."""
    if not cell:
        return None
    name = kind.kind
    if name in ("text", "undecided"):
        return cell
    if (_fits(kind) or _never)(cell):
        if name == "boolean":
            return cell.lower() == "true"
        if name == "integer":
            return int(cell)
        if name == "decimal":
            return Decimal(cell)
        if name == "date":
            return date.fromisoformat(cell)
        return datetime.fromisoformat(cell)
    raise ValueError(f"{cell!r} is not {kind.describe()}")


def _never(cell: str) -> bool:
    return False


@dataclass(frozen=True)
class Schema:
    """One report's columns and their types. `decided`: the columns whose type chunks loaded
    before decided (a value that does not fit one of them is an error); a column decided by the
    chunk being loaded alone becomes text when its values disagree."""

    columns: Mapping[str, ColumnType] = field(default_factory=dict)
    decided: frozenset[str] = frozenset()

    @classmethod
    def of(cls, recorded: Mapping[str, str]) -> Schema:
        """A schema as recorded by `record`: every column with a type is decided."""
        columns = {name: ColumnType.parse(text) for name, text in recorded.items()}
        return cls(columns, frozenset(n for n, k in columns.items() if k.kind != "undecided"))

    def record(self) -> dict[str, str]:
        return {name: kind.text() for name, kind in self.columns.items()}

    def merge(
        self,
        batch: Mapping[str, Iterable[str | None]],
        *,
        target: str,
        report: str,
        chunk: str,
        widen: bool = True,
    ) -> Schema:
        """The schema with one batch of a chunk's values judged, columns in the batch's order
        after the known ones; `ColumnTypeError` for a value that does not fit a decided column
        (nor, without `widen`, one that would widen it)."""
        columns = dict(self.columns)
        for name, values in batch.items():
            old = columns.get(name, UNDECIDED)
            kind, misfit = infer(values, old, widening=widen or name not in self.decided)
            if misfit:
                if name in self.decided:
                    raise ColumnTypeError(target, report, chunk, name, old.describe(), misfit)
                kind = TEXT  # only this chunk decides it: its values disagree, it is text
            columns[name] = kind
        return Schema(columns, self.decided)

    def changed(self, before: Schema) -> list[str]:
        """The columns whose type differs from `before`'s (new ones included)."""
        return [name for name, kind in self.columns.items() if before.columns.get(name) != kind]
