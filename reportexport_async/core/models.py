"""Pydantic v2 models: strict requests, tolerant responses (way 8 of docs/guide.md).

Responses (:class:`Job`, :class:`ExportTicket`, :class:`JobPage`, :class:`Report`) accept what
the real API sends: numbers and booleans as strings (``"250"``, ``"true"``, docs/api-facts.md
§2 Job schema), ``""`` for unset dates, unknown statuses and unknown fields. A value that
cannot be read becomes ``None`` rather than failing a whole status poll.

The strict requests (:class:`ExportRequest`, :class:`ClickExportRequest`) live in
`core.request_models` and are importable from here too, as every model is.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Self
from urllib.parse import unquote

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .request_models import (
    ClickExportRequest,
    ExportRequest,
    FilterValue,
    FrozenFilters,
    ResultFormat,
    checked,
    validation_problem,
)

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

# docs/api-facts.md §7 [INFERRED]: the job id is the path segment after /Jobs/ in QueuedUri.
_JOB_ID_RE = re.compile(r"/Jobs/([^/?#]+)")


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
