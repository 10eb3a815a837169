"""Interpret answers: (status, headers, parsed body or None) -> a value or an exception.

Pure functions in the style of gidgethub/h11 (way 1 of docs/guide.md): the session reads
the body, parses JSON if it can (``None`` otherwise), and asks this module what it means. The
functions *return* exception instances; the session raises them (``raise err``), so the
mapping is testable as a table.

The rules (docs/api-facts.md §5 "Error body and status codes", §1c):

- every JSON object body is checked for ``"Status": "ERROR"``, also with HTTP 200
  (Reports/ReportExport "do not use 4xx status codes"), giving :class:`APIError` -- except a
  Job object (it has an ``Id``) whose state is ERROR, which is a normal answer;
- 401 -> Unauthorized, 403 -> Forbidden (a replay's 403 -> ReplayRefused unless the message
  says it is a permission problem, agency spec), 404 -> NotFound, 429 -> RateLimited with the
  sane ``Retry-After``/reset hint, 5xx -> ServerError, any other status >= 400 ->
  HTTPStatusError;
- the envelope ``{"Status","Message","Errors":[{"Field","Message"}]}`` fills message/errors;
- non-JSON bodies (HTML from a proxy, XML ``<ImpactRadiusResponse>``) are tolerated.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from ..errors import (
    AccountProblem,
    AccountUnavailable,
    APIError,
    ConnectError,
    DownloadIntegrityError,
    ErrorDetail,
    Forbidden,
    HTTPStatusError,
    MalformedResponse,
    NotFound,
    RateLimited,
    ReplayRefused,
    ReportExportError,
    ServerError,
    SignedURLRefused,
    TransportError,
    Unauthorized,
)
from .models import ExportTicket, Job, JobPage, job_id_from_uri, parse_report_catalog
from .personas import RateLimitHeaderNames
from .ratelimit_headers import DEFAULT_HEADER_NAMES, parse_rate_limit_headers

__all__ = [
    "DownloadOutcome",
    "DownloadPending",
    "DownloadReady",
    "DownloadRedirect",
    "account_problem",
    "check_download_integrity",
    "error_for_response",
    "interpret_catalog",
    "interpret_download",
    "interpret_job",
    "interpret_job_page",
    "interpret_replay",
    "interpret_ticket",
    "interpreter",
    "is_error_body",
    "is_retryable",
    "is_transient",
    "job_page_interpreter",
    "parse_error_envelope",
    "report_refused",
    "worth_another_round",
]

T = TypeVar("T")

_STATUS_ERRORS: Mapping[int, type[HTTPStatusError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
}
# Words of an agency 403 on Replay that mean "your token may not", not "not replayable".
_PERMISSION_WORDS = ("permission", "not authorized", "unauthorized", "scope", "credential")


def _get(body: Mapping[object, object], key: str) -> object:
    """Key lookup that also accepts other casings (``status`` for ``Status``)."""
    if key in body:
        return body[key]
    lowered = key.lower()
    for k, v in body.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def is_error_body(body: object) -> bool:
    """True for the error envelope: a JSON object whose ``Status`` is ``ERROR`` (any casing)
    and that is not a Job.

    A *Job* in state ``ERROR`` also says ``"Status": "ERROR"``, but it has an ``Id`` and it is
    not an error of the call: the service re-runs it (docs/api-facts.md §2), so it must reach the
    poller as a Job, never as an :class:`APIError`.
    """
    if not isinstance(body, Mapping):
        return False
    status = _get(body, "Status")
    if not (isinstance(status, str) and status.strip().upper() == "ERROR"):
        return False
    return _get(body, "Id") in (None, "") and _get(body, "JobId") in (None, "")


def parse_error_envelope(body: object) -> tuple[str | None, tuple[ErrorDetail, ...]]:
    """``Message`` and ``Errors`` of the API error envelope; ``(None, ())`` if absent."""
    if not isinstance(body, Mapping):
        if isinstance(body, str) and body.strip():
            # A short text body (proxy error page) is still better than nothing.
            return body.strip()[:200], ()
        return None, ()
    raw_message = _get(body, "Message")
    message = str(raw_message) if raw_message not in (None, "") else None
    details: list[ErrorDetail] = []
    raw_errors = _get(body, "Errors")
    if isinstance(raw_errors, list):
        for entry in raw_errors:
            if isinstance(entry, Mapping):
                field = _get(entry, "Field")
                text = _get(entry, "Message")
                details.append(
                    ErrorDetail(
                        field=str(field) if field not in (None, "") else None,
                        message=str(text) if text is not None else "",
                    )
                )
            elif isinstance(entry, str):
                details.append(ErrorDetail(field=None, message=entry))
    return message, tuple(details)


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    body: object | None,
    *,
    method: str,
    url: str,
    now: datetime,
    header_names: RateLimitHeaderNames = DEFAULT_HEADER_NAMES,
) -> ReportExportError | None:
    """The exception an answer means, or None when it is not an error.

    ``body`` is the parsed JSON (or the text of a non-JSON body, or None). 1xx-3xx without an
    error body are not errors: 202 and 302 are meaningful answers of Download.
    """
    message, errors = parse_error_envelope(body)
    if status < 400:
        if is_error_body(body):
            return APIError(message, errors=errors, status=status, method=method, url=url)
        return None
    if status == 429:
        info = parse_rate_limit_headers(headers, now, names=header_names)
        return RateLimited(
            status,
            method=method,
            url=url,
            message=message,
            errors=errors,
            retry_after=info.wait_hint(now),
        )
    if 500 <= status <= 599:
        return ServerError(status, method=method, url=url, message=message, errors=errors)
    cls = _STATUS_ERRORS.get(status, HTTPStatusError)
    return cls(status, method=method, url=url, message=message, errors=errors)


def _malformed(what: str, exc: Exception, status: int, method: str, url: str) -> MalformedResponse:
    if isinstance(exc, ValidationError):
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
    else:
        reason = str(exc)
    return MalformedResponse(
        f"unexpected {what} body: {reason}", status=status, method=method, url=url
    )


def interpreter(parse: Callable[[object], T], what: str) -> Callable[..., T | ReportExportError]:
    """An interpreter for one kind of answer: the error mapping first, then `parse` of the body
    (its ValueError, pydantic's included, becomes `MalformedResponse`)."""

    def interpret(
        status: int,
        headers: Mapping[str, str],
        body: object | None,
        *,
        method: str,
        url: str,
        now: datetime,
    ) -> T | ReportExportError:
        err = error_for_response(status, headers, body, method=method, url=url, now=now)
        if err is not None:
            return err
        try:
            return parse(body)
        except ValueError as exc:
            return _malformed(what, exc, status, method, url)

    interpret.__doc__ = f"Interpret a {what} answer."
    return interpret


#: ReportExport/ClickExport answer -> :class:`ExportTicket` (job id from ``QueuedUri``).
interpret_ticket = interpreter(ExportTicket.model_validate, "export ticket")
#: ``GET /Jobs/{Id}`` answer -> :class:`Job`.
interpret_job = interpreter(Job.model_validate, "job")
#: ``GET /Jobs`` answer, either shape (docs/api-facts.md §2) -> :class:`JobPage`.
interpret_job_page = interpreter(JobPage.parse, "job listing")


def job_page_interpreter(only: Container[str]) -> Callable[..., JobPage | ReportExportError]:
    """As `interpret_job_page`, reading only the entries whose Id is in `only`."""
    return interpreter(lambda body: JobPage.parse(body, only), "job listing")


#: ``GET /Reports`` answer, either shape (docs/api-facts.md §1d) -> the catalog.
interpret_catalog = interpreter(parse_report_catalog, "report catalog")


def interpret_replay(
    status: int,
    headers: Mapping[str, str],
    body: object | None,
    *,
    method: str,
    url: str,
    now: datetime,
) -> Job | ReportExportError:
    """``PUT /Jobs/{Id}/Replay`` answer -> the replayed :class:`Job` (take its ``Id``: the
    sources disagree whether replay keeps it, docs/api-facts.md §2 Replay, §8).

    403 means "not in a replayable state" (brand, partner) -> :class:`ReplayRefused` with
    ``rule="server"``; the agency 403 can also mean missing permission, which its ``Message``
    says, and then it stays :class:`Forbidden`.
    """
    err = error_for_response(status, headers, body, method=method, url=url, now=now)
    if isinstance(err, Forbidden):
        text = (err.message or "").lower()
        if not any(word in text for word in _PERMISSION_WORDS):
            return ReplayRefused(
                job_id_from_uri(url),
                rule="server",
                reason=err.message or "the API answered 403 (job not in a replayable state)",
                status=403,
            )
    if err is not None:
        return err
    try:
        return Job.model_validate(body)
    except ValidationError as exc:
        return _malformed("replayed job", exc, status, method, url)


@dataclass(frozen=True, slots=True)
class DownloadReady:
    """200: the body is the file; stream it (docs/api-facts.md §2 "Download")."""

    content_length: int | None


@dataclass(frozen=True, slots=True)
class DownloadPending:
    """202: the job is not finished; the body is the current Job."""

    job: Job


@dataclass(frozen=True, slots=True)
class DownloadRedirect:
    """302 (or 301/303/307/308): follow ``location`` (joined, and without ``Authorization``
    unless it is on the API origin)."""

    location: str


DownloadOutcome = DownloadReady | DownloadPending | DownloadRedirect


def _content_length(headers: Mapping[str, str]) -> int | None:
    for key, value in headers.items():
        if key.lower() == "content-length":
            try:
                number = int(value.strip())
            except ValueError:
                return None
            return number if number >= 0 else None
    return None


def interpret_download(
    status: int,
    headers: Mapping[str, str],
    body: object | None,
    *,
    method: str,
    url: str,
    now: datetime,
) -> DownloadOutcome | ReportExportError:
    """Decide what a Download answer is before its body is read.

    ``body`` must be the parsed JSON for a 202 (or an error status) and None for 200/3xx,
    whose bodies the session does not read into memory.
    """
    if status in (301, 302, 303, 307, 308):
        location = next((v for k, v in headers.items() if k.lower() == "location"), None)
        if not location:
            return MalformedResponse(
                "redirect without Location", status=status, method=method, url=url
            )
        return DownloadRedirect(location)
    err = error_for_response(status, headers, body, method=method, url=url, now=now)
    if err is not None:
        return err
    if status == 202:
        try:
            return DownloadPending(Job.model_validate(body))
        except ValidationError as exc:
            return _malformed("pending job", exc, status, method, url)
    if status == 200:
        return DownloadReady(_content_length(headers))
    return MalformedResponse(
        f"unexpected status {status} for a download", status=status, method=method, url=url
    )


def check_download_integrity(
    *,
    received: int,
    expected_length: int | None,
    sha256: str | None = None,
    expected_sha256: str | None = None,
    job_id: str | None = None,
) -> DownloadIntegrityError | None:
    """Compare what arrived with what was promised: fewer bytes than ``Content-Length`` is a
    truncated body (download again), more is a size mismatch, and a known checksum must match.
    """
    if expected_length is not None and received < expected_length:
        return DownloadIntegrityError(
            "truncated", expected=expected_length, actual=received, job_id=job_id
        )
    if expected_length is not None and received != expected_length:
        return DownloadIntegrityError(
            "size_mismatch", expected=expected_length, actual=received, job_id=job_id
        )
    if expected_sha256 is not None and (sha256 or "").lower() != expected_sha256.lower():
        return DownloadIntegrityError(
            "checksum_mismatch", expected=expected_sha256, actual=sha256, job_id=job_id
        )
    return None


# Words of an HTTP 200 `Status: ERROR` message that mean "try again", not "your input is wrong".
_TRANSIENT_WORDS = (
    "try again",
    "internal error",
    "temporar",
    "timeout",
    "timed out",
    "unavailable",
)


def is_transient(error: ReportExportError) -> bool:
    """Whether retrying the same call may succeed.

    5xx, 429 and garbled 2xx bodies are transient. An HTTP 200 with ``Status: ERROR`` usually
    reports bad input (docs/api-facts.md §1c: "Not permitted to run report", "Invalid result
    format"), which a retry would only repeat, spending quota on ReportExport: it is transient only
    when its message says so.
    """
    if isinstance(error, ServerError | RateLimited | MalformedResponse):
        return True
    if isinstance(error, APIError):
        text = (error.message or "").lower()
        return any(word in text for word in _TRANSIENT_WORDS)
    return False


def worth_another_round(error: ReportExportError) -> bool:
    """Whether a chunk whose submit or download failed after all of its retries may succeed
    later in the same run, after a pause: what an outage causes (connections, 5xx, 429, garbled
    or cut bodies, expired signed URLs), not what the request itself caused."""
    if isinstance(error, TransportError | DownloadIntegrityError | SignedURLRefused):
        return True
    return is_transient(error)


def is_retryable(error: ReportExportError) -> bool:
    """Whether the session sends the same request again after `error` (one rule for its calls
    and its downloads): what `worth_another_round` says may pass, except a TLS failure, which no
    retry can cure (a certificate or a handshake problem)."""
    if isinstance(error, ConnectError) and error.tls:
        return False
    return worth_another_round(error)


def report_refused(error: ReportExportError) -> bool:
    """The submit's answer says the report itself cannot be exported: 404 (partner,
    docs/api-facts.md §1b) or HTTP 200 with `Status: ERROR` "Not permitted to run report ..."
    (agency, §1c)."""
    if isinstance(error, NotFound):
        return True
    return (
        isinstance(error, APIError)
        and not isinstance(error, MalformedResponse)
        and "not permitted" in str(error).lower()
    )


def account_problem(error: BaseException) -> AccountProblem | None:
    """Whether `error` concerns the whole account rather than one call: the credentials refused
    (401, or 403 for a scoped token that lacks the endpoint, docs/api-facts.md §5), or no connection
    to the host at all (refused, no such host, TLS). Every further call would fail the same way, so
    a run stops at once instead of trying (and charging) chunk after chunk."""
    if isinstance(error, AccountUnavailable):
        return error.problem
    if isinstance(error, Unauthorized | Forbidden):
        return "credentials"
    if isinstance(error, ConnectError):
        return "tls" if error.tls else "unreachable"
    return None
