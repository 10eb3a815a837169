"""Build every API call as plain data: (method, relative path, query parameters).

The session turns a :class:`RequestSpec` into an HTTP request; nothing here does I/O. Paths
are ``/{AccountType}/{AccountSID}/…`` (docs/api-facts.md §0), every path segment that comes from a
caller or a response is percent-quoted, and query parameters are an ordered tuple of pairs so
repeatable parameters (``AdId=1&AdId=2``, docs/api-facts.md §3) and a stable order (for request
fingerprints, the guide's rule 1 in docs/guide.md) both work.

Every call asks only for what its operation documents: its documented query parameters (nothing
else unless the caller gives it: ``Page``/``PageSize`` for ``GET /Jobs``, a report's filters) and
an ``Accept`` header that admits the media types the operation answers with
(:attr:`Endpoint.accept`), so a server that refuses anything undocumented (400, 406) accepts it.

Also here: joining the API's relative URIs to the base URL (docs/api-facts.md §0, §7) and deciding
whether a URL is on the API origin, so the session sends ``Authorization`` only there and never
to the signed cloud-storage URL a Download redirects to (docs/api-facts.md §2 "Download"), and
only over https or to a loopback host (HTTP Basic credentials are readable by anyone on the path).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import parse_qsl, quote, urlsplit

from ..errors import ConfigurationError
from .personas import AccountType, DateStyle, Persona, persona_for
from .request_models import CLICK_EXPORT_EARLIEST, ClickExportRequest, ExportRequest, FilterValue

__all__ = [
    "DOWNLOAD_ACCEPT",
    "JSON_ACCEPT",
    "Endpoint",
    "RequestSpec",
    "account_root",
    "build_click_export",
    "build_download",
    "build_get_job",
    "build_list_jobs",
    "build_replay",
    "build_report_export",
    "encode_value",
    "format_date",
    "is_api_origin",
    "is_loopback_host",
    "join_url",
    "may_carry_credentials",
]

Method = Literal["GET", "PUT"]
QueryParams = tuple[tuple[str, str], ...]

JSON_ACCEPT = "application/json"
DOWNLOAD_ACCEPT = "application/octet-stream, application/json;q=0.9, */*;q=0.1"


class Endpoint(StrEnum):
    """What a call is, for usage counters and for the quota it spends (docs/api-facts.md §5)."""

    REPORT_EXPORT = "ReportExport"
    CLICK_EXPORT = "ClickExport"
    GET_JOB = "GetJob"
    LIST_JOBS = "ListJobs"
    DOWNLOAD = "Download"
    REPLAY = "Replay"
    REPORTS = "Reports"

    @property
    def accept(self) -> str:
        """The ``Accept`` header of the call. Download answers the file as
        ``application/octet-stream`` (200) or the Job as ``application/json`` (202), so both are
        asked for, and anything else last, since a result's own type (``text/csv``) is not
        excluded by the documents; every other call answers JSON (docs/api-facts.md §2, §7)."""
        if self is Endpoint.DOWNLOAD:
            return DOWNLOAD_ACCEPT
        return JSON_ACCEPT

    @property
    def daily_quota(self) -> Literal["ReportExport", "ClickExport"] | None:
        """The daily quota this call spends, besides the hourly bucket every call spends."""
        if self is Endpoint.REPORT_EXPORT:
            return "ReportExport"
        if self is Endpoint.CLICK_EXPORT:
            return "ClickExport"
        return None


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One call: ``path`` is relative to the base URL and already quoted."""

    method: Method
    path: str
    params: QueryParams
    endpoint: Endpoint


def _seg(value: str) -> str:
    return quote(value, safe="")


def account_root(account_type: AccountType | str, account_sid: str) -> str:
    """``/Advertisers/{SID}`` etc. (docs/api-facts.md §0), with the SID quoted."""
    persona = persona_for(account_type)
    return f"/{persona.account_type.value}/{_seg(account_sid)}"


def _utc_midnight(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def format_date(day: dt.date, style: DateStyle) -> str:
    """``YYYY-MM-DD`` or the brand's ``YYYY-MM-DDT00:00:00Z`` (docs/api-facts.md §1a, §1b)."""
    return _utc_midnight(day) if style is DateStyle.DATETIME else day.isoformat()


def encode_value(value: FilterValue, *, bool_style: Literal["lower", "upper"] = "lower") -> str:
    """A query value as text: dates as ``YYYY-MM-DD`` (report filter format, docs/api-facts.md §1d),
    booleans ``true``/``false`` (or ``TRUE``/``FALSE`` where the spec enumerates those)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return text.upper() if bool_style == "upper" else text
    if isinstance(value, dt.datetime):
        raise ValueError("datetimes are not filter values; pass a date")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_report_export(
    account_type: AccountType | str, account_sid: str, request: ExportRequest
) -> RequestSpec:
    """``GET {root}/ReportExport/{ReportId}`` (docs/api-facts.md §1; a GET that queues a job).

    Dates use the persona's names and format: brand ``StartDate``/``EndDate`` as
    ``YYYY-MM-DDT00:00:00Z``, partner/agency ``START_DATE``/``END_DATE`` as ``YYYY-MM-DD``.
    No dates at all means the report's default range (the guide's rule 5).
    """
    persona = persona_for(account_type)
    params: list[tuple[str, str]] = []
    if request.start is not None and request.end is not None:
        params.append((persona.start_param, format_date(request.start, persona.export_date_style)))
        params.append((persona.end_param, format_date(request.end, persona.export_date_style)))
    params.extend((key, encode_value(value)) for key, value in sorted(request.filters.items()))
    params.append(("ResultFormat", request.result_format))
    path = (
        f"{account_root(persona.account_type, account_sid)}/ReportExport/{_seg(request.report_id)}"
    )
    return RequestSpec("GET", path, tuple(params), Endpoint.REPORT_EXPORT)


def _refuse(persona: Persona, field: str, request: ClickExportRequest) -> None:
    if getattr(request, field):
        raise ConfigurationError(
            f"ClickExportRequest.{field}",
            f"not accepted by {persona.account_type.value} ClickExport (docs/api-facts.md §3)",
        )


def build_click_export(
    account_type: AccountType | str, account_sid: str, request: ClickExportRequest
) -> RequestSpec:
    """ClickExport (docs/api-facts.md §3): brand ``/Programs/{ProgramId}/ClickExport`` with
    ``AdId``, ``MediaId``, boolean ``UniqueClick``; partner ``/ClickExport`` with ``ProgramId``,
    ``AdId``, ``SubId`` and ``UniqueClick`` as ``TRUE``/``FALSE``; agencies have none.

    Repeatable parameters are named as the published OpenAPI documents name them, arrays in
    OpenAPI's default form style, repeated without brackets (``AdId=1&AdId=2``).
    docs/api-facts.md §3 notes the bracketed spelling ``AdId[]``, which no document names: a
    server built from the documents would refuse it (the sandbox's examples dialect takes both
    spellings).
    """
    persona = persona_for(account_type)
    if persona.click_export_path is None:
        raise ConfigurationError(
            "account_type", f"{persona.account_type.value} accounts have no ClickExport"
        )
    root = account_root(persona.account_type, account_sid)
    params: list[tuple[str, str]] = []
    if persona.account_type is AccountType.ADVERTISERS:
        if request.program_id is None:
            raise ConfigurationError(
                "ClickExportRequest.program_id", "required for Advertisers ClickExport"
            )
        _refuse(persona, "sub_ids", request)
        _refuse(persona, "program_ids", request)
        # The brand spec types ProgramId, AdId and MediaId as integers (docs/api-facts.md §3).
        for field in ("program_id", "ad_ids", "media_ids"):
            value = getattr(request, field)
            values = (value,) if isinstance(value, str) else value
            if not all(v.isascii() and v.isdigit() for v in values):
                raise ConfigurationError(
                    f"ClickExportRequest.{field}",
                    "Advertisers ClickExport takes integer ids (docs/api-facts.md §3)",
                )
        if request.date is not None and request.date < CLICK_EXPORT_EARLIEST:
            raise ConfigurationError(
                "ClickExportRequest.date",
                f"only dates from {CLICK_EXPORT_EARLIEST} on are supported (docs/api-facts.md §3)",
            )
        path = root + persona.click_export_path.replace("{ProgramId}", _seg(request.program_id))
        params.extend(("AdId", v) for v in request.ad_ids)
        params.extend(("MediaId", v) for v in request.media_ids)
        bool_style: Literal["lower", "upper"] = "lower"
    else:
        if request.program_id is not None:
            raise ConfigurationError(
                "ClickExportRequest.program_id",
                "Mediapartners ClickExport filters programs with program_ids "
                "(docs/api-facts.md §3)",
            )
        _refuse(persona, "media_ids", request)
        path = root + persona.click_export_path
        params.extend(("ProgramId", v) for v in request.program_ids)
        params.extend(("AdId", v) for v in request.ad_ids)
        params.extend(("SubId", v) for v in request.sub_ids)
        bool_style = "upper"  # partner spec enumerates 'TRUE'/'FALSE'
    if request.date is not None:
        params.append(("Date", request.date.isoformat()))
    if request.unique_click is not None:
        params.append(("UniqueClick", encode_value(request.unique_click, bool_style=bool_style)))
    params.append(("ResultFormat", request.result_format))
    return RequestSpec("GET", path, tuple(params), Endpoint.CLICK_EXPORT)


def _job_path(account_type: AccountType | str, account_sid: str, job_id: str) -> str:
    if not job_id or not job_id.strip():
        raise ValueError("job_id must not be empty")
    return f"{account_root(account_type, account_sid)}/Jobs/{_seg(job_id)}"


def build_get_job(account_type: AccountType | str, account_sid: str, job_id: str) -> RequestSpec:
    """``GET {root}/Jobs/{JobId}`` (docs/api-facts.md §2)."""
    return RequestSpec("GET", _job_path(account_type, account_sid, job_id), (), Endpoint.GET_JOB)


def _filter_bound(value: dt.date | dt.datetime, style: DateStyle, *, upper: bool) -> str:
    """A ``CreatedAfter``/``CreatedBefore`` value (docs/api-facts.md §2 "List jobs").

    Our meaning is inclusive calendar days, as the agency spec states. The brand takes
    date-times, so an upper bound day ``d`` becomes ``(d+1)T00:00:00Z`` to keep all of ``d``.
    A datetime goes to the brand as UTC; for date-only personas it widens to its UTC day, so
    the listing is a superset and the caller filters by ``created_date``.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("created_after/created_before datetimes must be timezone-aware")
        utc = value.astimezone(dt.UTC)
        if style is DateStyle.DATETIME:
            return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        return utc.date().isoformat()
    if style is DateStyle.DATETIME:
        return _utc_midnight(value + dt.timedelta(days=1) if upper else value)
    return value.isoformat()


def build_list_jobs(
    account_type: AccountType | str,
    account_sid: str,
    *,
    created_after: dt.date | dt.datetime | None = None,
    created_before: dt.date | dt.datetime | None = None,
    page: int | None = None,
    page_size: int | None = None,
) -> RequestSpec:
    """``GET {root}/Jobs`` with optional creation-date bounds and paging.

    No spec lists ``Page``/``PageSize`` for Jobs (unsettled, docs/api-facts.md §8); they are sent
    only when given, using the general list convention (docs/api-facts.md §2 "Pagination").
    """
    persona = persona_for(account_type)
    params: list[tuple[str, str]] = []
    if created_after is not None:
        params.append(
            ("CreatedAfter", _filter_bound(created_after, persona.jobs_filter_style, upper=False))
        )
    if created_before is not None:
        params.append(
            ("CreatedBefore", _filter_bound(created_before, persona.jobs_filter_style, upper=True))
        )
    if page is not None:
        if page < 1:
            raise ValueError("page is 1-based")
        params.append(("Page", str(page)))
    if page_size is not None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        params.append(("PageSize", str(page_size)))
    path = f"{account_root(persona.account_type, account_sid)}/Jobs"
    return RequestSpec("GET", path, tuple(params), Endpoint.LIST_JOBS)


def build_download(
    account_type: AccountType | str, account_sid: str, job_id: str, *, stream: bool = False
) -> RequestSpec:
    """``GET {root}/Jobs/{JobId}/Download``; ``Mode=Stream`` returns the bytes directly
    instead of a 302 to a signed URL (docs/api-facts.md §2 "Download")."""
    params: QueryParams = (("Mode", "Stream"),) if stream else ()
    path = _job_path(account_type, account_sid, job_id) + "/Download"
    return RequestSpec("GET", path, params, Endpoint.DOWNLOAD)


def build_replay(account_type: AccountType | str, account_sid: str, job_id: str) -> RequestSpec:
    """``PUT {root}/Jobs/{JobId}/Replay`` with an empty body (docs/api-facts.md §2 "Replay")."""
    path = _job_path(account_type, account_sid, job_id) + "/Replay"
    return RequestSpec("PUT", path, (), Endpoint.REPLAY)


# --- URLs --------------------------------------------------------------------------------


def join_url(base_url: str, uri: str) -> str:
    """Join a URI from a response (relative, docs/api-facts.md §0) to ``base_url``.

    ``/path`` is appended to the base origin; an absolute or scheme-relative URI is returned
    as an absolute URL unchanged, and :func:`is_api_origin` then decides whether it may carry
    credentials.
    """
    base = base_url.rstrip("/")
    if uri.startswith("//"):
        return f"{urlsplit(base).scheme}:{uri}"
    if urlsplit(uri).scheme:
        return uri
    if uri.startswith("/"):
        return base + uri
    return f"{base}/{uri}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not scheme or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


def is_api_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the same scheme, host and (effective) port as ``base_url``.

    Only then may the session attach ``Authorization`` (docs/api-facts.md §2 "Download" [INFERRED]:
    signed URLs on another host must not receive the impact.com credentials). A relative
    reference counts as on-origin because :func:`join_url` puts it on the base URL; an
    unparsable URL is never on-origin.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.scheme and not parts.netloc:
        return True
    mine, theirs = _origin(url), _origin(base_url)
    return mine is not None and mine == theirs


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ``::1``), bracketed or
    not: the only hosts plain http may carry credentials to, since nothing leaves the machine.
    Names other than ``localhost`` are not resolved here, so they are never loopback."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def may_carry_credentials(url: str) -> bool:
    """True for an https URL, or a plain http URL to a loopback host (the local sandbox).
    HTTP Basic sends the token in clear (docs/api-facts.md §6), so nothing else may carry it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "https":
        return True
    return scheme == "http" and is_loopback_host(parts.hostname or "")


def spec_from_uri(uri: str, endpoint: Endpoint, method: Method = "GET") -> RequestSpec:
    """A call to a relative URI the API returned (e.g. ``@nextpageuri``), its query kept as
    parameters so that the session adds nothing twice."""
    parts = urlsplit(uri)
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return RequestSpec(method, parts.path, params, endpoint)
