"""The exception tree of reportexport_async: one root, one branch per kind of failure.

Everything the library raises on purpose derives from :class:`ReportExportError`, so an
application can catch the whole library with one ``except`` (way 3 of docs/guide.md).
aiohttp errors are translated in exactly one place (the session) into :class:`TransportError`,
always with ``raise ... from exc``.

::

    ReportExportError
    ├── TransportError                 connection reset, cut body, ...
    │   ├── ConnectError               never connected (refused, DNS, TLS): nothing was sent
    │   └── RequestTimeout             connect/read/total timeout (Timeouts policy)
    ├── HTTPStatusError                any non-2xx answer (status, method, path, Message, Errors)
    │   ├── Unauthorized               401: wrong SID/token, or plain HTTP  (§5, §6)
    │   ├── Forbidden                  403: scoped token lacks the endpoint  (§5, §6)
    │   ├── NotFound                   404: no such report/job  (§1b, §2)
    │   ├── RateLimited                429: carries retry_after seconds  (§5)
    │   ├── SignedURLRefused           cloud storage refused a signed download URL (expired)
    │   └── ServerError                5xx: retried with backoff  (§5)
    ├── APIError                       HTTP 200 with {"Status": "ERROR"}  (§1c)
    │   └── MalformedResponse          a 2xx body that is not the documented shape
    ├── JobFailed                      a job ended FAILED or CANCELLED; carries the Job (§2)
    ├── WaitTimeout (TimeoutError)     waiting for a job passed the caller's deadline
    ├── JobNotReady                    Download answered 202 and the caller asked not to wait
    ├── ReplayRefused                  our replay guard said no, or the server answered 403 (§2)
    ├── QuotaExhausted                 a daily/hourly quota is spent; carries resets_at (§5)
    ├── DownloadIntegrityError         truncated body, size or checksum mismatch
    ├── OutputError                    a result or the manifest could not be written (disk full)
    ├── LoadError                      a chunk could not be loaded into a typed destination
    │   ├── ColumnTypeError            a value no longer fits its column's type (report, chunk,
    │   │                              column named); the files and the ledger stay whole
    │   └── UnreadableResult           a chunk's file is not of its format (report, chunk, file)
    ├── IllegalTransition              an event its export's phase does not expect (core.lifecycle):
    │                                  a bug in the caller, never the server's answer
    ├── ConfigurationError (ValueError) a bad setting; the message names the setting
    │   └── UnknownReport              a report id the account's catalog does not offer (§1d)
    ├── LedgerError                    the ledger is corrupt, newer, read-only or locked
    └── AccountUnavailable             an account-wide failure stopped a run: credentials refused,
                                       host unreachable, TLS, every call failing for too long

(§N: a section of docs/api-facts.md, the API facts shipped in the package.)

Secrets: no exception here is ever given the auth token, and every URL that reaches a message
goes through :func:`redact_url`, which drops userinfo, the query string and the fragment (a
signed cloud-storage URL carries its signature in the query, docs/api-facts.md §2 "Download").
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # pragma: no cover - import only for annotations (avoids an import cycle)
    from .core.models import Job

__all__ = [
    "APIError",
    "AccountProblem",
    "AccountUnavailable",
    "ColumnTypeError",
    "ConfigurationError",
    "ConnectError",
    "DownloadIntegrityError",
    "ErrorDetail",
    "Forbidden",
    "HTTPStatusError",
    "JobFailed",
    "JobNotReady",
    "LedgerError",
    "LedgerProblem",
    "LoadError",
    "MalformedResponse",
    "NotFound",
    "OutputError",
    "QuotaExhausted",
    "QuotaName",
    "RateLimited",
    "ReplayRefused",
    "ReportExportError",
    "RequestTimeout",
    "ServerError",
    "SignedURLRefused",
    "TransportError",
    "Unauthorized",
    "UnknownReport",
    "UnreadableResult",
    "WaitTimeout",
    "redact_url",
]

QuotaName = Literal["ReportExport", "ClickExport", "hourly"]


def redact_url(url: str) -> str:
    """Return ``url`` without userinfo, query string and fragment, for use in messages.

    Relative references (the API returns relative URIs, docs/api-facts.md §0) keep only their path.
    Anything unparsable collapses to ``"<unparsable URL>"`` rather than leaking.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:  # IPv6 literal: put the brackets back
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One entry of the API error envelope's ``Errors`` list (docs/api-facts.md §5 "Error body")."""

    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _details_suffix(errors: Sequence[ErrorDetail]) -> str:
    return " (" + "; ".join(str(e) for e in errors) + ")" if errors else ""


class ReportExportError(Exception):
    """Root of every exception that reportexport_async raises on purpose."""


# --- transport -------------------------------------------------------------------------------


class TransportError(ReportExportError):
    """The request never produced an HTTP answer (connection error, DNS, TLS, reset)."""

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None) -> None:
        self.method = method
        self.url = redact_url(url) if url is not None else None
        where = f" ({method} {self.url})" if method and self.url else ""
        super().__init__(message + where)


class ConnectError(TransportError):
    """No connection could be made (refused, no such host, TLS handshake or certificate): the
    request was never sent, so the server counted nothing. ``tls`` tells a TLS failure, which no
    retry can cure."""

    def __init__(
        self, message: str, *, method: str | None = None, url: str | None = None, tls: bool = False
    ) -> None:
        self.tls = tls
        super().__init__(message, method=method, url=url)


class RequestTimeout(TransportError):
    """A connect, read or total timeout of the ``Timeouts`` policy expired."""


# --- HTTP status -----------------------------------------------------------------------------


class HTTPStatusError(ReportExportError):
    """The API answered with an error status.

    ``path`` is the request URL passed through :func:`redact_url` (no query, no userinfo);
    ``message`` and ``errors`` come from the API's error envelope when it sent one.
    """

    def __init__(
        self,
        status: int,
        *,
        method: str,
        url: str,
        message: str | None = None,
        errors: Sequence[ErrorDetail] = (),
    ) -> None:
        self.status = status
        self.method = method.upper()
        self.path = redact_url(url)
        self.message = message
        self.errors: tuple[ErrorDetail, ...] = tuple(errors)
        text = f"HTTP {status} for {self.method} {self.path}"
        if message:
            text += f": {message}"
        super().__init__(text + _details_suffix(self.errors))


class Unauthorized(HTTPStatusError):
    """401: the Account SID / Auth Token pair was rejected, or plain HTTP was used (§6)."""


class Forbidden(HTTPStatusError):
    """403: the (scoped) token may not use this endpoint; a scope problem, not credentials."""


class NotFound(HTTPStatusError):
    """404: no such report (or not API accessible), or no such job."""


class RateLimited(HTTPStatusError):
    """429: over the hourly limit. ``retry_after`` is the sane server hint in seconds, if any."""

    def __init__(
        self,
        status: int = 429,
        *,
        method: str,
        url: str,
        message: str | None = None,
        errors: Sequence[ErrorDetail] = (),
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, method=method, url=url, message=message, errors=errors)
        if retry_after is not None:
            self.args = (f"{self.args[0]} (retry after {retry_after:g} s)",)


class SignedURLRefused(HTTPStatusError):
    """The signed download URL (another origin, docs/api-facts.md §2 Download) was refused, usually
    because it expired: a fresh one is asked for from the Download endpoint."""


class ServerError(HTTPStatusError):
    """5xx: the service failed; the session retries these with backoff (docs/api-facts.md §5)."""


# --- errors reported in a 2xx body ---------------------------------------------------------


class APIError(ReportExportError):
    """A 2xx answer whose JSON body says ``"Status": "ERROR"`` (docs/api-facts.md §1c, §5)."""

    def __init__(
        self,
        message: str | None,
        *,
        errors: Sequence[ErrorDetail] = (),
        status: int = 200,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.message = message
        self.errors: tuple[ErrorDetail, ...] = tuple(errors)
        self.status = status
        self.method = method.upper() if method else None
        self.path = redact_url(url) if url is not None else None
        where = f" for {self.method} {self.path}" if self.method and self.path else ""
        text = f"API error{where}: {message or 'no message'}"
        super().__init__(text + _details_suffix(self.errors))


class MalformedResponse(APIError):
    """A 2xx body that does not have the documented shape (e.g. a ticket without QueuedUri)."""


# --- jobs, replays, quotas, downloads -------------------------------------------------------


class JobFailed(ReportExportError):
    """A job ended ``FAILED`` or ``CANCELLED`` (docs/api-facts.md §2); ``job`` is its last state."""

    def __init__(self, job: Job, message: str | None = None) -> None:
        self.job = job
        status = getattr(job.status, "value", job.status)
        text = message or f"job {job.id} ended {status}"
        if job.status_message and not message:
            text += f": {job.status_message}"
        super().__init__(text)


class WaitTimeout(ReportExportError, TimeoutError):
    """Waiting for a job passed the caller's deadline; ``job`` is its last known state. The job
    itself goes on: wait again or re-attach later, never submit it again (the guide's rule 1,
    docs/guide.md)."""

    def __init__(self, job: Job, waited: float) -> None:
        self.job = job
        self.waited = waited
        status = getattr(job.status, "value", job.status)
        super().__init__(f"job {job.id} still {status} after waiting {waited:g} s")


class JobNotReady(ReportExportError):
    """The Download answered 202 (the job is not complete) to a caller that asked not to wait,
    e.g. after a postback that came early; ``job`` is the state the 202 carried."""

    def __init__(self, job: Job) -> None:
        self.job = job
        status = getattr(job.status, "value", job.status)
        super().__init__(f"job {job.id} is not complete yet ({status})")


class ReplayRefused(ReportExportError):
    """A replay was refused, by our guard (the guide's rule 4, docs/guide.md) or by the server
    (403, docs/api-facts.md §2).

    ``rule`` names the guard rule that refused (``"server"`` when the API answered 403),
    ``reason`` says why in words.
    """

    def __init__(
        self,
        job_id: str | None,
        *,
        rule: str,
        reason: str,
        status: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.rule = rule
        self.reason = reason
        self.status = status
        subject = f"job {job_id}" if job_id else "job"
        super().__init__(f"replay of {subject} refused ({rule}): {reason}")


class QuotaExhausted(ReportExportError):
    """A quota is spent; fail at once instead of sleeping for hours: a daily quota does not come
    back within minutes (docs/api-facts.md §5)."""

    def __init__(
        self,
        quota: QuotaName,
        *,
        limit: int,
        resets_at: datetime,
        used: int | None = None,
    ) -> None:
        self.quota: QuotaName = quota
        self.limit = limit
        self.resets_at = resets_at
        self.used = used
        usage = f"{used}/{limit}" if used is not None else f"limit {limit}"
        super().__init__(
            f"{quota} quota exhausted ({usage}); resets at {resets_at.isoformat()}",
        )


IntegrityKind = Literal["truncated", "size_mismatch", "checksum_mismatch"]


class DownloadIntegrityError(ReportExportError):
    """The downloaded bytes are not the whole, intact result."""

    def __init__(
        self,
        kind: IntegrityKind,
        *,
        expected: str | int | None = None,
        actual: str | int | None = None,
        job_id: str | None = None,
    ) -> None:
        self.kind: IntegrityKind = kind
        self.expected = expected
        self.actual = actual
        self.job_id = job_id
        subject = f" of job {job_id}" if job_id else ""
        super().__init__(
            f"download{subject} failed integrity check ({kind}): "
            f"expected {expected!r}, got {actual!r}",
        )


#: errno values that mean "no room": the disk or the quota is full, or a file-size limit is hit.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class OutputError(ReportExportError):
    """Writing a result (or the manifest, or a merged file) to disk failed. Nothing half-written
    is left (the `.part` is removed) and the ledger records no download, so the next run
    downloads it again by job id, without a new submit. ``disk_full`` tells a full disk (or a
    file-size limit) from other causes."""

    def __init__(self, path: object, cause: OSError) -> None:
        self.path = str(path)
        self.errno = cause.errno
        self.disk_full = cause.errno in _NO_SPACE
        reason = cause.strerror or str(cause)
        advice = (
            "no space left on the disk: free some space or choose another output folder, then "
            "run again (finished jobs are downloaded by job id, never submitted again)"
            if self.disk_full
            else "check the folder's permissions and free space, then run again"
        )
        super().__init__(f"cannot write {self.path!r} ({reason}): {advice}")


class LoadError(ReportExportError):
    """A chunk's file could not be loaded into a typed destination beside the files (DuckDB,
    Parquet) or by the dlt source (`target` "dlt"). The file and the ledger are untouched, and the
    destination records no load, so the next run loads the chunk again. Names the destination
    (`target`), `report` and `chunk`."""

    def __init__(self, target: str, report: str, chunk: str, problem: str) -> None:
        self.target = target
        self.report = report
        self.chunk = chunk
        self.problem = problem
        #: The run's outcome, when a run raised it at its end (`BackfillResult`).
        self.result: object | None = None
        super().__init__(f"{target}: report {report}, chunk {chunk}: {problem}")


class ColumnTypeError(LoadError):
    """A value no longer fits its column's type, as the chunks loaded before decided it
    (`kind`, e.g. "an integer"): never cast or dropped."""

    def __init__(
        self, target: str, report: str, chunk: str, column: str, kind: str, value: str
    ) -> None:
        self.column = column
        self.kind = kind
        self.value = value
        shown = value if len(value) <= 40 else value[:37] + "..."
        super().__init__(
            target,
            report,
            chunk,
            f"column {column!r} holds {shown!r}, which is not {kind} as its earlier chunks "
            "decided (drop the table or folder to have its types decided afresh)",
        )


class UnreadableResult(LoadError):
    """A chunk's file is not of its format (a CSV row whose width is not the header's, JSON that
    is not an array of objects, XML that does not parse, text that is not UTF-8): nothing of it
    is loaded, nothing is guessed or dropped. `path` is the file."""

    def __init__(self, target: str, report: str, chunk: str, path: str, problem: str) -> None:
        self.path = path
        super().__init__(target, report, chunk, f"cannot read {path}: {problem}")
        self.problem = problem


class ConfigurationError(ReportExportError, ValueError):
    """A bad setting. ``setting`` names it; the message says how to fix it, never its secret."""

    def __init__(self, setting: str, problem: str, *, dataset: str | None = None) -> None:
        self.setting = setting
        self.problem = problem
        #: The sync dataset whose setting it is (None: no dataset's), so that a caller can say
        #: where the dataset came from (a file's table, or the command line's flags).
        self.dataset = dataset
        where = "" if dataset is None else f"dataset {dataset!r}: "
        super().__init__(f"{setting}: {where}{problem}")


class UnknownReport(ConfigurationError):
    """Report ids the account's report catalog (`GET /Reports`) does not offer for export:
    unknown, or not API accessible. Raised before any ReportExport call; ``report_ids`` are the
    ids, ``setting`` the argument that gave them. The message says how to list the reports."""

    def __init__(
        self,
        setting: str,
        problems: dict[str, str],
        *,
        dataset: str | None = None,
    ) -> None:
        self.report_ids = tuple(problems)
        advice = (
            "list the account's reports with `reportexport reports` or `client.api.reports()`, "
            "or pass check_reports=False to let the server decide"
        )
        super().__init__(setting, f"{'; '.join(problems.values())} ({advice})", dataset=dataset)


LedgerProblem = Literal[
    "corrupt", "newer", "older", "read-only", "locked", "unreadable", "folder", "missing", "other"
]


class LedgerError(ReportExportError):
    """The ledger cannot be used: a corrupt file, a newer schema, a read-only or locked file, a
    folder that cannot be written. The message names the file and what to do; ``problem`` says
    which it is, so a caller can add its own advice (the command line names its flag)."""

    def __init__(self, message: str, *, problem: LedgerProblem = "other") -> None:
        self.problem: LedgerProblem = problem
        super().__init__(message)


#: What an :class:`AccountUnavailable` is about.
AccountProblem = Literal["credentials", "unreachable", "tls", "outage"]

_ACCOUNT_ADVICE: dict[str, str] = {
    "credentials": "the server refused the credentials; check the account SID, the auth token "
    "and its permissions",
    "unreachable": "the API host cannot be reached; check the base URL and the network",
    "tls": "the TLS connection to the API host failed; check the base URL and the machine's "
    "certificates",
    "outage": "every call has failed",
}


class AccountUnavailable(ReportExportError):
    """An account-wide failure: no call of this account can succeed now, so a run stops at once
    instead of trying (and charging) every chunk. ``problem`` says which kind, ``cause`` is the
    error that showed it; ``result`` is the partial outcome of the run it stopped (its manifest is
    written, its ledger consistent: the next run continues where this one stopped)."""

    def __init__(
        self,
        problem: AccountProblem,
        cause: ReportExportError,
        *,
        failing_for: float | None = None,
    ) -> None:
        self.problem: AccountProblem = problem
        self.cause = cause
        self.failing_for = failing_for
        self.result: object | None = None
        advice = _ACCOUNT_ADVICE[problem]
        if problem == "outage" and failing_for is not None:
            advice += f" for {failing_for:.0f} s"
        super().__init__(f"{advice} ({cause})")
