"""Response interpretation as a table (docs/api-facts.md §1c, §2, §5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reportexport_async.core.models import ExportTicket, Job, JobPage, JobStatus
from reportexport_async.core.responses import (
    DownloadPending,
    DownloadReady,
    DownloadRedirect,
    check_download_integrity,
    error_for_response,
    interpret_download,
    interpret_job,
    interpret_job_page,
    interpret_replay,
    interpret_ticket,
    is_error_body,
    parse_error_envelope,
)
from reportexport_async.errors import (
    APIError,
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
    Unauthorized,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
URL = "https://api.impact.com/Agencies/IR1/ReportExport/r?START_DATE=2026-01-01"
ENVELOPE = {
    "Status": "ERROR",
    "Message": "Validation Failed",
    "Errors": [{"Field": "AccountId", "Message": "Not a numeric value"}],
}


def check(status: int, body: object = None, headers: dict[str, str] | None = None) -> Any:
    return error_for_response(status, headers or {}, body, method="get", url=URL, now=NOW)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"Status": "QUEUED"}, None),
        (200, None, None),
        (200, [{"Id": "a"}], None),
        (202, {"Id": "a", "Status": "RUNNING"}, None),
        # a Job in state ERROR is an answer, not an error (the service re-runs it)
        (200, {"Id": "a", "Status": "ERROR", "StatusMessage": "retrying"}, None),
        (202, {"Id": "a", "Status": "ERROR"}, None),
        (200, {"Id": "", "Status": "ERROR", "Message": "x"}, APIError),
        (302, None, None),
        (200, {"Status": "ERROR", "Message": "Not permitted to run report x"}, APIError),
        (200, {"status": "error"}, APIError),
        (400, ENVELOPE, HTTPStatusError),
        (401, None, Unauthorized),
        (402, "Request failed", HTTPStatusError),
        (403, ENVELOPE, Forbidden),
        (404, {"Status": "ERROR", "Message": "Job not found"}, NotFound),
        (405, None, HTTPStatusError),
        (429, None, RateLimited),
        (500, None, ServerError),
        (502, "<html>Bad gateway</html>", ServerError),
        (503, None, ServerError),
        (504, None, ServerError),
    ],
)
def test_error_mapping_table(status: int, body: object, expected: type | None) -> None:
    err = check(status, body)
    if expected is None:
        assert err is None
    else:
        assert type(err) is expected
        assert isinstance(err, ReportExportError)


def test_status_error_carries_envelope_and_redacted_path() -> None:
    err = check(400, ENVELOPE)
    assert isinstance(err, HTTPStatusError)
    assert err.status == 400
    assert err.method == "GET"
    assert err.path == "https://api.impact.com/Agencies/IR1/ReportExport/r"
    assert err.message == "Validation Failed"
    assert err.errors == (ErrorDetail("AccountId", "Not a numeric value"),)
    assert "START_DATE" not in str(err)
    assert "AccountId: Not a numeric value" in str(err)


def test_api_error_on_http_200() -> None:
    body = {"Status": "ERROR", "Message": "Invalid result format. Must be one of CSV, JSON or XML"}
    err = check(200, body)
    assert isinstance(err, APIError)
    assert err.status == 200
    assert err.message == body["Message"]
    assert "Invalid result format" in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "700"}, 700.0),
        ({"retry-after": "Mon, 15 Jun 2026 12:01:00 GMT"}, 60.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 90)}, 90.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_rate_limited_retry_after(headers: dict[str, str], expected: float | None) -> None:
    err = check(429, None, headers)
    assert isinstance(err, RateLimited)
    assert err.retry_after == expected


@pytest.mark.parametrize(
    ("body", "message", "errors"),
    [
        (ENVELOPE, "Validation Failed", (ErrorDetail("AccountId", "Not a numeric value"),)),
        ({"Status": "ERROR", "Message": "x"}, "x", ()),
        ({"Status": "ERROR", "Errors": ["plain"]}, None, (ErrorDetail(None, "plain"),)),
        ({"Status": "ERROR", "Errors": "not a list"}, None, ()),
        ("  proxy says no  ", "proxy says no", ()),
        (None, None, ()),
        (b"bytes", None, ()),
    ],
)
def test_parse_error_envelope(
    body: object, message: str | None, errors: tuple[ErrorDetail, ...]
) -> None:
    assert parse_error_envelope(body) == (message, errors)


def test_is_error_body() -> None:
    assert is_error_body({"Status": "ERROR"})
    assert is_error_body({"Status": "ERROR", "Message": "Not permitted"})
    assert not is_error_body({"Id": "J", "Status": "ERROR"})
    assert not is_error_body({"JobId": "J", "Status": "error"})
    assert not is_error_body({"Status": "QUEUED"})
    assert not is_error_body([{"Status": "ERROR"}])
    assert not is_error_body(None)


def test_interpret_ticket() -> None:
    body = {"Status": "QUEUED", "QueuedUri": "/Agencies/IR1/Jobs/J9", "ResultUri": "/x"}
    ticket = interpret_ticket(200, {}, body, method="GET", url=URL, now=NOW)
    assert isinstance(ticket, ExportTicket)
    assert ticket.job_id == "J9"
    err = interpret_ticket(
        200, {}, {"Status": "ERROR", "Message": "no"}, method="GET", url=URL, now=NOW
    )
    assert isinstance(err, APIError)
    bad = interpret_ticket(200, {}, {"Status": "QUEUED"}, method="GET", url=URL, now=NOW)
    assert isinstance(bad, MalformedResponse)
    assert "job id" in str(bad)
    assert isinstance(interpret_ticket(404, {}, None, method="GET", url=URL, now=NOW), NotFound)


def test_interpret_job_and_page() -> None:
    job = interpret_job(200, {}, {"Id": "J", "Status": "ERROR"}, method="GET", url=URL, now=NOW)
    assert isinstance(job, Job)
    assert job.status is JobStatus.ERROR
    assert isinstance(
        interpret_job(200, {}, "oops", method="GET", url=URL, now=NOW), MalformedResponse
    )
    page = interpret_job_page(200, {}, [{"Id": "J"}], method="GET", url=URL, now=NOW)
    assert isinstance(page, JobPage)
    assert len(page.jobs) == 1
    assert isinstance(
        interpret_job_page(200, {}, "oops", method="GET", url=URL, now=NOW), MalformedResponse
    )
    assert isinstance(
        interpret_job_page(401, {}, None, method="GET", url=URL, now=NOW), Unauthorized
    )


REPLAY_URL = "https://api.impact.com/Agencies/IR1/Jobs/J7/Replay"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Status": "ERROR", "Message": "Job is not in a replayable state"}, ReplayRefused),
        (None, ReplayRefused),
        (
            {"Status": "ERROR", "Message": "Credentials lack permission to access this job"},
            Forbidden,
        ),
    ],
)
def test_replay_403(body: object, expected: type) -> None:
    err = interpret_replay(403, {}, body, method="PUT", url=REPLAY_URL, now=NOW)
    assert type(err) is expected
    if isinstance(err, ReplayRefused):
        assert err.job_id == "J7"
        assert err.rule == "server"
        assert err.status == 403


def test_replay_ok_takes_new_job() -> None:
    job = interpret_replay(
        200, {}, {"Id": "NEW", "Status": "QUEUED"}, method="PUT", url=REPLAY_URL, now=NOW
    )
    assert isinstance(job, Job)
    assert job.id == "NEW"


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (200, {"Content-Length": "10"}, None, DownloadReady(10)),
        (200, {"content-length": "x"}, None, DownloadReady(None)),
        (200, {}, None, DownloadReady(None)),
        (
            302,
            {"Location": "https://s.example/f?sig=1"},
            None,
            DownloadRedirect("https://s.example/f?sig=1"),
        ),
        (
            307,
            {"location": "/Jobs/J/Download?Mode=Stream"},
            None,
            DownloadRedirect("/Jobs/J/Download?Mode=Stream"),
        ),
    ],
)
def test_interpret_download(
    status: int, headers: dict[str, str], body: object, expected: object
) -> None:
    assert interpret_download(status, headers, body, method="GET", url=URL, now=NOW) == expected


def test_interpret_download_pending_and_errors() -> None:
    pending = interpret_download(
        202, {}, {"Id": "J", "Status": "RUNNING"}, method="GET", url=URL, now=NOW
    )
    assert isinstance(pending, DownloadPending)
    assert pending.job.status is JobStatus.RUNNING
    assert isinstance(
        interpret_download(302, {}, None, method="GET", url=URL, now=NOW), MalformedResponse
    )
    assert isinstance(interpret_download(404, {}, None, method="GET", url=URL, now=NOW), NotFound)
    assert isinstance(
        interpret_download(204, {}, None, method="GET", url=URL, now=NOW), MalformedResponse
    )


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"received": 10, "expected_length": 10}, None),
        ({"received": 10, "expected_length": None}, None),
        ({"received": 9, "expected_length": 10}, "truncated"),
        ({"received": 11, "expected_length": 10}, "size_mismatch"),
        ({"received": 1, "expected_length": 1, "sha256": "AB", "expected_sha256": "ab"}, None),
        (
            {"received": 1, "expected_length": 1, "sha256": "ab", "expected_sha256": "cd"},
            "checksum_mismatch",
        ),
    ],
)
def test_download_integrity(kwargs: dict[str, Any], kind: str | None) -> None:
    err = check_download_integrity(**kwargs)
    if kind is None:
        assert err is None
    else:
        assert isinstance(err, DownloadIntegrityError)
        assert err.kind == kind
