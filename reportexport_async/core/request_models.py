"""Strict request models (way 8 of docs/guide.md): :class:`ExportRequest` and
:class:`ClickExportRequest` are frozen and reject unknown fields, so a typo fails at construction
instead of becoming a different report (and a different quota charge, docs/api-facts.md §1d
"Duplicate requests"). Also here: a pydantic `ValidationError` as the library's
`ConfigurationError` naming the caller's argument (:func:`checked`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ..errors import ConfigurationError
from .personas import RESERVED_EXPORT_PARAMS

__all__ = [
    "CLICK_EXPORT_EARLIEST",
    "ClickExportRequest",
    "ExportRequest",
    "FilterValue",
    "FrozenFilters",
    "ResultFormat",
    "checked",
    "validation_problem",
]

ResultFormat = Literal["CSV", "JSON", "XML"]
FilterValue = str | int | float | bool | dt.date

_M = TypeVar("_M", bound=BaseModel)

# ClickExport: "Only dates after April 9, 2024 are supported" (docs/api-facts.md §3, brand spec).
CLICK_EXPORT_EARLIEST = dt.date(2024, 4, 10)


def validation_problem(exc: ValidationError) -> tuple[str, str, str]:
    """The first problem of a pydantic ValidationError as (field path, error type, message),
    one line, without the input values (they may hold a secret) or pydantic's URL."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    problem = str(first["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        problem = problem.removeprefix(prefix)
    return where, str(first["type"]), " ".join(problem.split())


def checked(
    make: Callable[[], _M],
    *,
    rename: Mapping[str, str] | None = None,
    dataset: str | None = None,
) -> _M:
    """`make()`, a request built from a caller's arguments, with pydantic's `ValidationError`
    as the library's `ConfigurationError` naming the argument: the model's field as the caller
    calls it (`rename`; the key "" names a problem of the whole request, such as its range)."""
    try:
        return make()
    except ValidationError as exc:
        where, _, problem = validation_problem(exc)
        raise ConfigurationError(
            (rename or {}).get(where, where) or "request", problem, dataset=dataset
        ) from None


def _reject_datetime(value: object) -> object:
    # A datetime is a date subclass; accepting it would silently drop a time and a zone.
    if isinstance(value, dt.datetime):
        raise ValueError("pass a datetime.date (a calendar day), not a datetime")
    return value


def _upper_format(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


ExportDate = Annotated[dt.date | None, BeforeValidator(_reject_datetime)]
Format = Annotated[ResultFormat, BeforeValidator(_upper_format)]
_REQUEST_CONFIG = ConfigDict(frozen=True, extra="forbid")


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


class FrozenFilters(Mapping[str, FilterValue]):
    """A read-only, hashable mapping of report filters, iterated in sorted key order so equal
    filters always encode to the same query string (the guide's rule 1: never submit twice)."""

    __slots__ = ("_data", "_items")

    def __init__(self, data: Mapping[str, FilterValue] | None = None) -> None:
        items = tuple(sorted((data or {}).items()))
        self._items: tuple[tuple[str, FilterValue], ...] = items
        self._data: dict[str, FilterValue] = dict(items)

    def __getitem__(self, key: str) -> FilterValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenFilters({self._data!r})"


def _check_filter(key: object, value: object) -> tuple[str, FilterValue]:
    if not isinstance(key, str) or not key:
        raise ValueError(f"filter names must be non-empty strings, got {key!r}")
    if _has_control(key) or any(ch.isspace() for ch in key):
        raise ValueError(
            f"filter name {key!r} must not contain whitespace; use the query-parameter name "
            "(upper case, spaces as underscores, docs/api-facts.md §1d)"
        )
    if key.upper() in RESERVED_EXPORT_PARAMS:
        raise ValueError(
            f"filter {key!r} is set through start/end or result_format, not through filters"
        )
    if isinstance(value, dt.datetime):
        raise ValueError(f"filter {key!r}: pass a datetime.date, not a datetime")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"filter {key!r}: {value!r} is not a finite number")
    if not isinstance(value, (str, int, float, bool, dt.date)):
        raise ValueError(f"filter {key!r}: unsupported value type {type(value).__name__}")
    return key, value


class ExportRequest(BaseModel):
    """One ReportExport call (docs/api-facts.md §1). ``start``/``end`` are inclusive calendar days;
    both None means the report's default range (the guide's rule 5). Filters are extra query
    parameters named as the report's MetaData says (e.g. ``SUBAID``)."""

    model_config = _REQUEST_CONFIG

    report_id: str
    start: ExportDate = None
    end: ExportDate = None
    filters: Mapping[str, FilterValue] = Field(default_factory=FrozenFilters)
    result_format: Format = "CSV"

    @field_validator("report_id")
    @classmethod
    def _check_report_id(cls, value: str) -> str:
        # The id becomes a path segment: keep it from escaping the ReportExport path.
        if not value:
            raise ValueError("report_id must not be empty")
        if "/" in value or "\\" in value or ".." in value:
            raise ValueError(f"report_id {value!r} must not contain '/', '\\' or '..'")
        if _has_control(value) or any(ch.isspace() for ch in value):
            raise ValueError(f"report_id {value!r} must not contain whitespace")
        return value

    @field_validator("filters", mode="plain")
    @classmethod
    def _freeze_filters(cls, value: object) -> FrozenFilters:
        if isinstance(value, FrozenFilters):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("filters must be a mapping of name to value")
        return FrozenFilters(dict(_check_filter(k, v) for k, v in value.items()))

    @field_serializer("filters")
    def _dump_filters(self, value: Mapping[str, FilterValue]) -> dict[str, FilterValue]:
        return dict(value)

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end, or neither (the default date range)")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


def _id_tuple(value: object) -> object:
    if isinstance(value, (str, int)):
        value = (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        out = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise ValueError(f"ids must be strings or integers, got {item!r}")
            text = str(item)
            if not text or _has_control(text) or any(ch.isspace() for ch in text):
                raise ValueError(f"id {item!r} must be non-empty without whitespace")
            out.append(text)
        return tuple(out)
    return value


def _id_text(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


IdTuple = Annotated[tuple[str, ...], BeforeValidator(_id_tuple)]


class ClickExportRequest(BaseModel):
    """One ClickExport call (docs/api-facts.md §3). Which fields a persona accepts is checked when
    the request is built (brand: program_id, ad_ids, media_ids; partner: program_ids, ad_ids,
    sub_ids); agencies have no ClickExport."""

    model_config = _REQUEST_CONFIG

    program_id: Annotated[str | None, BeforeValidator(_id_text)] = None
    date: ExportDate = None
    ad_ids: IdTuple = ()
    media_ids: IdTuple = ()
    sub_ids: IdTuple = ()
    program_ids: IdTuple = ()
    unique_click: bool | None = None
    result_format: Format = "CSV"

    @field_validator("program_id")
    @classmethod
    def _check_program_id(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or "/" in value or ".." in value or value != value.strip()
        ):
            raise ValueError(f"program_id {value!r} must be a plain non-empty id")
        return value
