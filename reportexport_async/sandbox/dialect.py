"""The sandbox's two dialects, and the request contract of the strict one.

`examples` (the default) answers the way impact.com's documentation examples do, and is lenient
with requests, where the sources disagree or stay silent:

- unset Job dates are `null` for brands (their document marks them nullable) and `""` for
  partners and agencies (the agency examples show `""`);
- `GET /Jobs` pages (`Page`, `PageSize`, string-valued `@`-meta keys, docs/api-facts.md §2
"Pagination"),
  although no Jobs document lists paging;
- brand ReportExport also takes `START_DATE`/`END_DATE` (open question 2), ClickExport's
  repeatable ids are also taken as `AdId[]` (docs/api-facts.md §3 spelling), a partner
  ReportExport without dates gets the default range (the guide's rule 5, docs/guide.md),
  `IrVersion` is ignored, and any `Accept` header is served.

`strict` is a server built from the persona's published OpenAPI documents and nothing else:

- every answer validates against the persona's own document, under OpenAPI 3.1's JSON Schema:
  an unset Job date is left out (the partner and agency documents type dates as date-time
  strings, so neither `null` nor `""` validates; the brand's `nullable` is a 3.0 keyword that
  3.1 ignores), numbers and booleans are typed (`string_values` is refused), and `GET /Jobs`
  answers every job at once with no `@`-keys (nothing documents paging);
- a request is refused with **400** `Validation Failed` (naming the parameter) when it has a
  query parameter its operation does not document (ReportExport also takes the filters of the
  report's MetaData, as the documents say to), lacks a required one (partner ReportExport's
  `START_DATE`/`END_DATE`), repeats one that is not an array, or gives a value outside its
  documented type, format or enum (`date` is `YYYY-MM-DD`, `date-time` RFC 3339, enums are
  case-sensitive), or a body where none is documented. The agency's ReportExport and Reports
  say they never answer 4xx: there the refusal is HTTP 200 with `Status: ERROR`;
- it answers **406** when the `Accept` header admits none of the media types the operation
  documents, or not the one the answer has (`Download` documents `application/octet-stream`
  for 200 and `application/json` for 202: `Accept: application/json` gets a 406 for the file).

`REPORTEXPORT_SANDBOX_DIALECT=strict` makes `strict` the default of every sandbox started in the
process (and its children), which is how the client's test suite is run against it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from multidict import MultiMapping

from .catalog import CATALOGS, Persona, report_filters

Dialect = Literal["examples", "strict"]
DIALECTS: tuple[Dialect, ...] = ("examples", "strict")
DIALECT_ENV = "REPORTEXPORT_SANDBOX_DIALECT"

Kind = Literal["string", "integer", "boolean", "date", "date-time"]
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"


def default_dialect() -> Dialect:
    """The dialect a sandbox gets when none is given: `REPORTEXPORT_SANDBOX_DIALECT`, or
    `examples`."""
    value = os.environ.get(DIALECT_ENV, "").strip().lower() or "examples"
    if value not in DIALECTS:
        raise ValueError(f"{DIALECT_ENV}: expected examples or strict, got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """A documented query parameter."""

    name: str
    kind: Kind = "string"
    required: bool = False
    enum: tuple[str, ...] = ()
    array: bool = False  # `type: array`: repeated as `name=a&name=b` (form, explode)


@dataclass(frozen=True)
class Operation:
    """What one operation of one persona's documents accepts and answers."""

    query: tuple[Param, ...] = ()
    media_types: tuple[str, ...] = (JSON,)  # of its documented answers with a body
    report_filters: bool = False  # ReportExport: also the filters of the report's MetaData
    integer_path: tuple[tuple[str, str], ...] = ()  # (route key, documented name): integers


_FORMATS = ("CSV", "JSON", "XML")
_RESULT_FORMAT = Param("ResultFormat", enum=_FORMATS)
_MODE = Param("Mode", enum=("Stream",))
_DOWNLOAD = Operation((_MODE,), media_types=(OCTET_STREAM, JSON))


def _jobs(bound: Kind) -> dict[str, Operation]:
    created = (Param("CreatedAfter", bound), Param("CreatedBefore", bound))
    return {
        "ListJobs": Operation(created),
        "GetJob": Operation(),
        "Download": _DOWNLOAD,
        "Replay": Operation(),
    }


# Written from impact.com's published OpenAPI documents (the `*-openapi.yml` of each persona, named
# in docs/api-facts.md); tests/test_sandbox_spec.py
# checks this table against the documents themselves.
OPERATIONS: Mapping[Persona, Mapping[str, Operation]] = {
    "Advertisers": {
        "ReportExport": Operation(
            (
                Param("SUBAID", "integer"),
                Param("StartDate", "date-time"),
                Param("EndDate", "date-time"),
                Param("CONV_CURRENCY"),
                _RESULT_FORMAT,
            ),
            report_filters=True,
        ),
        "ClickExport": Operation(
            (
                Param("AdId", "integer", array=True),
                Param("Date", "date"),
                Param("MediaId", "integer", array=True),
                Param("UniqueClick", "boolean"),
                Param("ResultFormat", enum=("CSV", "XML", "JSON")),
            ),
            integer_path=(("program_id", "ProgramId"),),
        ),
        "Reports": Operation(),
        "MetaData": Operation(),
        **_jobs("date-time"),
    },
    "Mediapartners": {
        "ReportExport": Operation(
            (
                Param("SUBAID"),
                Param("START_DATE", "date", required=True),
                Param("END_DATE", "date", required=True),
                _RESULT_FORMAT,
            ),
            report_filters=True,
        ),
        "ClickExport": Operation(
            (
                Param("ProgramId", array=True),
                Param("AdId", array=True),
                Param("Date", "date"),
                Param("SubId", array=True),
                Param("UniqueClick", enum=("TRUE", "FALSE")),
                _RESULT_FORMAT,
            )
        ),
        "Reports": Operation(),
        "MetaData": Operation(),
        **_jobs("date"),
    },
    "Agencies": {
        "ReportExport": Operation(
            (
                _RESULT_FORMAT,
                Param("START_DATE", "date"),
                Param("END_DATE", "date"),
                Param("SUBAID"),
            ),
            report_filters=True,
        ),
        "Reports": Operation(),
        "MetaData": Operation(),
        **_jobs("date"),
    },
}

# Agency: "The Reports and ReportExport endpoints do not use 4xx status codes" (docs/api-facts.md
# §1c).
NO_4XX: Mapping[Persona, frozenset[str]] = {
    "Advertisers": frozenset(),
    "Mediapartners": frozenset(),
    "Agencies": frozenset({"ReportExport", "Reports", "MetaData"}),
}


class Refusal(Exception):
    """A request the strict dialect refuses: 400 (`field` names the parameter) or 406."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# -- parameters ---------------------------------------------------------------------------------

_INTEGER = re.compile(r"-?\d+", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.ASCII | re.IGNORECASE
)


def _valid(kind: Kind, value: str) -> bool:
    if kind == "integer":
        return bool(_INTEGER.fullmatch(value))
    if kind == "boolean":
        return value in ("true", "false")
    if kind == "string":
        return True
    pattern = _DATE if kind == "date" else _DATE_TIME
    if not pattern.fullmatch(value):
        return False
    try:  # the shape is right; is it a real day and time (no 2026-02-30)?
        if kind == "date":
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _report_params(persona: Persona, report_id: str) -> dict[str, Param]:
    report = CATALOGS[persona].get(report_id)
    if report is None:
        return {}
    return {item.name: Param(item.name) for item in report_filters(persona, report)}


def check_query(
    persona: Persona,
    endpoint: str,
    query: MultiMapping[str],
    match_info: Mapping[str, str],
) -> None:
    """Raise `Refusal(400)` for a request the operation's document does not allow."""
    operation = OPERATIONS[persona][endpoint]
    documented = {param.name: param for param in operation.query}
    if operation.report_filters:
        # Report filters come from MetaData; a documented parameter keeps its documented type.
        documented = {**_report_params(persona, match_info.get("report_id", "")), **documented}
    for key, name in operation.integer_path:
        if not _valid("integer", match_info.get(key, "")):
            raise Refusal(400, f"{name} must be an integer", name)
    for name in dict.fromkeys(query.keys()):
        param = documented.get(name)
        if param is None:
            raise Refusal(400, f"{name} is not a parameter of this operation", name)
        values = query.getall(name)
        if len(values) > 1 and not param.array:
            raise Refusal(400, f"{name} may be given only once", name)
        for value in values:
            if param.enum and value not in param.enum:
                raise Refusal(400, f"{name} must be one of {', '.join(param.enum)}", name)
            if not _valid(param.kind, value):
                raise Refusal(
                    400, f"Invalid value '{value}' for {name}: expected {param.kind}", name
                )
    for param in operation.query:
        if param.required and param.name not in query:
            raise Refusal(400, f"{param.name} is required", param.name)


# -- Accept ---------------------------------------------------------------------------------------


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) of each media range of an `Accept` header (RFC 9110 §12.5.1)."""
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        kind, _, subtype = media.lower().partition("/")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        ranges.append((kind, subtype or "*", q))
    return ranges


def accepts(accept: str | None, media_type: str) -> bool:
    """Whether an `Accept` header admits `media_type`: the most specific matching range decides
    (so `application/json, */*;q=0` refuses everything else). No header admits anything."""
    if accept is None or not accept.strip():
        return True
    kind, _, subtype = media_type.lower().partition("/")
    best: tuple[int, float] | None = None
    for range_kind, range_subtype, q in _ranges(accept):
        if range_kind == "*" and range_subtype == "*":
            rank = 0
        elif range_kind == kind and range_subtype == "*":
            rank = 1
        elif range_kind == kind and range_subtype == subtype:
            rank = 2
        else:
            continue
        if best is None or rank > best[0]:
            best = (rank, q)
    return best is not None and best[1] > 0


def check_accept(persona: Persona, endpoint: str, accept: str | None) -> None:
    """Raise `Refusal(406)` when `Accept` admits none of the operation's documented types."""
    documented = OPERATIONS[persona][endpoint].media_types
    if not any(accepts(accept, media_type) for media_type in documented):
        raise Refusal(
            406,
            f"Not Acceptable: this operation answers {' or '.join(documented)} (Accept: {accept})",
        )
