"""Pydantic v2 models: strict requests, tolerant responses (way 8 of docs/guide.md).

Requests (:class:`ExportRequest`, :class:`ClickExportRequest`) are frozen and reject unknown
fields, so a typo fails at construction instead of becoming a different report (and a
different quota charge, docs/api-facts.md §1d "Duplicate requests").

Responses (:class:`Job`, :class:`ExportTicket`, :class:`JobPage`, :class:`Report`) accept what
the real API sends: numbers and booleans as strings (``"250"``, ``"true"``, docs/api-facts.md
§2 Job schema), ``""`` for unset dates, unknown statuses and unknown fields. A value that
cannot be read becomes ``None`` rather than failing a whole status poll.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import unquote

from pydantic import (
    AliasChoices,
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
    "ClickExportRequest",
    "ExportRequest",
    "ExportTicket",
    "FilterValue",
    "FrozenFilters",
    "Job",
    "JobPage",
    "JobStatus",
    "Report",
    "ResultFormat",
    "checked",
    "job_id_from_uri",
    "parse_report_catalog",
    "validation_problem",
]

ResultFormat = Literal["CSV", "JSON", "XML"]
FilterValue = str | int | float | bool | dt.date

_M = TypeVar("_M", bound=BaseModel)

# docs/api-facts.md §7 [INFERRED]: the job id is the path segment after /Jobs/ in QueuedUri.
_JOB_ID_RE = re.compile(r"/Jobs/([^/?#]+)")
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


def job_id_from_uri(uri: str | None) -> str | None:
    """The job id in a ``…/Jobs/{id}[/Download|/Replay]`` URI, percent-decoded, or None."""
    if not uri:
        return None
    match = _JOB_ID_RE.search(uri)
    return unquote(match.group(1)) if match else None


# --- status ----------------------------------------------------------------------------------


class JobStatus(StrEnum):
    """Job status (docs/api-facts.md §2 "Job schema"); anything else parses as ``UNKNOWN``."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: object) -> JobStatus:
        if isinstance(value, JobStatus):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        return cls.UNKNOWN

    @classmethod
    def _missing_(cls, value: object) -> JobStatus:
        # JobStatus("weird") -> UNKNOWN, so tolerant parsing also works through the enum call.
        if isinstance(value, str):
            upper = value.strip().upper()
            for member in cls:
                if member.value == upper:
                    return member
        return cls.UNKNOWN

    @property
    def is_final(self) -> bool:
        """COMPLETED, FAILED or CANCELLED. ERROR is *not* final: the service re-runs an ERROR
        job every 15 minutes, up to 5 tries, before it becomes FAILED (docs/api-facts.md §2)."""
        return self in _FINAL

    @property
    def is_success(self) -> bool:
        return self is JobStatus.COMPLETED


_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


# --- tolerant scalar readers (docs/api-facts.md §2 Job schema: "250", "true", "") -----------


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _lenient_int(value: object) -> int | None:
    if _blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def _lenient_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _lenient_datetime(value: object) -> dt.datetime | None:
    """ISO 8601 with offset (``2022-06-07T04:33:50-05:00``, docs/api-facts.md §7 "Dates").

    A timestamp without an offset is taken as UTC, so every Job datetime is aware and
    comparable (mixing naive and aware datetimes raises TypeError).
    """
    if _blank(value):
        return None
    parsed: dt.datetime
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _lenient_str(value: object) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


LenientInt = Annotated[int | None, BeforeValidator(_lenient_int)]
LenientBool = Annotated[bool | None, BeforeValidator(_lenient_bool)]
LenientDatetime = Annotated[dt.datetime | None, BeforeValidator(_lenient_datetime)]
LenientStr = Annotated[str | None, BeforeValidator(_lenient_str)]
LenientStatus = Annotated[JobStatus, BeforeValidator(JobStatus.parse)]

_RESPONSE_CONFIG = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Job(BaseModel):
    """A job of the Jobs API (docs/api-facts.md §2 "Job schema"). Unknown fields are kept
    (``model_extra``); attributes are snake_case, the wire names are the aliases."""

    model_config = _RESPONSE_CONFIG

    # The old brand doc page calls the id "JobId" (docs/api-facts.md §2).
    id: str = Field(validation_alias=AliasChoices("Id", "JobId", "id"), serialization_alias="Id")
    type: LenientStr = Field(None, alias="Type")
    status: LenientStatus = Field(JobStatus.UNKNOWN, alias="Status")
    status_message: LenientStr = Field(None, alias="StatusMessage")
    program_id: LenientStr = Field(None, alias="ProgramId")
    created_by: LenientStr = Field(None, alias="CreatedBy")
    created_date: LenientDatetime = Field(None, alias="CreatedDate")
    started_date: LenientDatetime = Field(None, alias="StartedDate")
    completed_date: LenientDatetime = Field(None, alias="CompletedDate")
    abandoned_date: LenientDatetime = Field(None, alias="AbandonedDate")
    cancelled_date: LenientDatetime = Field(None, alias="CancelledDate")
    failed_date: LenientDatetime = Field(None, alias="FailedDate")
    last_progress_update_date: LenientDatetime = Field(None, alias="LastProgressUpdateDate")
    records_processed: LenientInt = Field(None, alias="RecordsProcessed")
    percentage_complete: LenientInt = Field(None, alias="PercentageComplete")
    replayable: LenientBool = Field(None, alias="Replayable")
    result_uri: LenientStr = Field(None, alias="ResultUri")

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        text = _lenient_str(value)
        if text is None:
            raise ValueError("a Job needs a non-empty Id")
        return text.strip()

    @property
    def is_final(self) -> bool:
        return self.status.is_final


# --- requests --------------------------------------------------------------------------------


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


# --- response envelopes ----------------------------------------------------------------------


class ExportTicket(BaseModel):
    """The answer to ReportExport/ClickExport: ``Status``, ``QueuedUri``, ``ResultUri`` and
    (partner, agency, brand ClickExport) ``ReplayUri`` (docs/api-facts.md §1, §3). All relative."""

    model_config = _RESPONSE_CONFIG

    status: LenientStatus = Field(JobStatus.UNKNOWN, alias="Status")
    queued_uri: LenientStr = Field(None, alias="QueuedUri")
    result_uri: LenientStr = Field(None, alias="ResultUri")
    replay_uri: LenientStr = Field(None, alias="ReplayUri")
    message: LenientStr = Field(None, alias="Message")

    @model_validator(mode="after")
    def _needs_job_id(self) -> Self:
        if self._find_job_id() is None:
            raise ValueError("no job id in QueuedUri/ResultUri/ReplayUri")
        return self

    def _find_job_id(self) -> str | None:
        for uri in (self.queued_uri, self.result_uri, self.replay_uri):
            found = job_id_from_uri(uri)
            if found:
                return found
        return None

    @property
    def job_id(self) -> str:
        """From ``QueuedUri`` (docs/api-facts.md §7), falling back to ResultUri/ReplayUri."""
        found = self._find_job_id()
        assert found is not None  # guaranteed by the model validator
        return found


def _raw_job_id(item: Mapping[Any, Any]) -> str | None:
    """The Id a listing entry would parse to (`Job.id`'s aliases, in their order), or None."""
    value = item.get("Id")
    if type(value) is str and value and not (value[0].isspace() or value[-1].isspace()):
        return value  # the usual case, read without the tolerant readers
    for key in ("Id", "JobId", "id"):
        if key in item:
            text = _lenient_str(item[key])
            return None if text is None else text.strip()
    return None


#: The brand and the partner spelling (docs/api-facts.md §2 Pagination).
_NEXT_PAGE_KEYS = ("@nextpageuri", "@nextpageruri")


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``GET {root}/Jobs``: brand/partner ``{"Jobs": [...]}`` with ``@``-meta keys,
    agency a top-level array (docs/api-facts.md §2 "List jobs", "Pagination")."""

    jobs: tuple[Job, ...]
    next_page_uri: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    #: Entries that were not readable as a Job (e.g. no Id); skipped so one odd entry does not
    #: blind the tracker to every other job.
    skipped: int = 0
    #: Entries not read because their Id is not among the ones asked for (`parse(only=...)`).
    ignored: int = 0

    @property
    def entries(self) -> int:
        """How many entries the page held, read or not (a full page has a next one)."""
        return len(self.jobs) + self.skipped + self.ignored

    def meta_uri(self, name: str, key: str | None = None) -> str | None:
        """A page link of the meta, e.g. `meta_uri("last")`: `@lastpageuri` or the partner
        spelling `@lastpageruri` (or the exact `key`); None when absent or blank."""
        keys = (key,) if key else (f"@{name}pageuri", f"@{name}pageruri")
        lowered = {k.lower(): v for k, v in self.meta.items()}
        for candidate in keys:
            value = lowered.get(candidate.lower(), "").strip()
            if value:
                return value
        return None

    @classmethod
    def parse(cls, body: object, only: Container[str] | None = None) -> JobPage:
        """Accept either shape; raise ``ValueError`` for anything else. With `only`, an entry
        whose Id is not in it is counted but not read: a tracker that follows a few jobs in a
        listing of thousands validates those few (most of a listing's cost is reading it)."""
        items: object
        meta: dict[str, str] = {}
        if isinstance(body, list):
            items = body
        elif isinstance(body, Mapping):
            items = body.get("Jobs", body.get("jobs"))
            if items is None:
                items = []
            meta = {
                str(k): str(v)
                for k, v in body.items()
                if isinstance(k, str) and k.startswith("@") and v is not None
            }
        else:
            raise ValueError(f"a Jobs listing must be an object or an array, not {type(body)}")
        if not isinstance(items, list):
            raise ValueError("the Jobs key of a listing must hold an array")
        jobs: list[Job] = []
        skipped = 0
        ignored = 0
        for item in items:
            if only is not None and isinstance(item, Mapping):
                ident = _raw_job_id(item)
                if ident is not None and ident not in only:
                    ignored += 1
                    continue
            try:
                jobs.append(Job.model_validate(item))
            except ValidationError:
                skipped += 1
        next_uri = None
        lowered = {k.lower(): v for k, v in meta.items()}
        for key in _NEXT_PAGE_KEYS:
            candidate = lowered.get(key, "").strip()
            if candidate:
                next_uri = candidate
                break
        return cls(
            jobs=tuple(jobs), next_page_uri=next_uri, meta=meta, skipped=skipped, ignored=ignored
        )


class Report(BaseModel):
    """One entry of the Reports catalog (docs/api-facts.md §1d)."""

    model_config = _RESPONSE_CONFIG

    id: str = Field(alias="Id")
    name: LenientStr = Field(None, alias="Name")
    category: LenientStr = Field(None, alias="Category")
    description: LenientStr = Field(None, alias="Description")
    api_accessible: LenientBool = Field(None, alias="ApiAccessible")
    deferred_api_run_uri: LenientStr = Field(None, alias="DeferredApiRunUri")
    metadata_uri: LenientStr = Field(None, alias="MetaDataUri")

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        text = _lenient_str(value)
        if text is None:
            raise ValueError("a Report needs a non-empty Id")
        return text


def parse_report_catalog(body: object) -> tuple[Report, ...]:
    """``{"Reports": [...]}`` (brand, partner) or a top-level array (agency)."""
    items: Any = body.get("Reports") if isinstance(body, Mapping) else body
    if not isinstance(items, list):
        raise ValueError("a Reports catalog must be an array or an object with 'Reports'")
    reports = []
    for item in items:
        try:
            reports.append(Report.model_validate(item))
        except ValidationError:
            continue
    return tuple(reports)
