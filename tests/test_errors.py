"""The exception tree (way 3 of docs/guide.md) and secret-free messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reportexport_async import errors
from reportexport_async.core.models import Job, JobStatus
from reportexport_async.errors import (
    APIError,
    ConfigurationError,
    DownloadIntegrityError,
    ErrorDetail,
    Forbidden,
    HTTPStatusError,
    JobFailed,
    MalformedResponse,
    NotFound,
    QuotaExhausted,
    RateLimited,
    ReplayRefused,
    ReportExportError,
    RequestTimeout,
    ServerError,
    TransportError,
    Unauthorized,
    redact_url,
)

SECRET_URL = (
    "https://IRsid:t0k3n-s3cret@api.impact.com:8443/Advertisers/IRsid/Jobs/J?sig=t0k3n-s3cret#x"
)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (TransportError, ReportExportError),
        (RequestTimeout, TransportError),
        (HTTPStatusError, ReportExportError),
        (Unauthorized, HTTPStatusError),
        (Forbidden, HTTPStatusError),
        (NotFound, HTTPStatusError),
        (RateLimited, HTTPStatusError),
        (ServerError, HTTPStatusError),
        (APIError, ReportExportError),
        (MalformedResponse, APIError),
        (JobFailed, ReportExportError),
        (ReplayRefused, ReportExportError),
        (QuotaExhausted, ReportExportError),
        (DownloadIntegrityError, ReportExportError),
        (ConfigurationError, ReportExportError),
        (ConfigurationError, ValueError),
    ],
)
def test_tree(child: type, parent: type) -> None:
    assert issubclass(child, parent)


def test_branches_are_separate() -> None:
    assert not issubclass(APIError, HTTPStatusError)
    assert not issubclass(TransportError, HTTPStatusError)
    assert not issubclass(ReplayRefused, HTTPStatusError)


def test_every_public_exception_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    names = [n for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    exception_names = [n for n in names if issubclass(getattr(errors, n), BaseException)]
    assert len(exception_names) >= 15
    for name in exception_names:
        assert name in doc, name


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SECRET_URL, "https://api.impact.com:8443/Advertisers/IRsid/Jobs/J"),
        ("/Mediapartners/S/Jobs/J/Download?Mode=Stream", "/Mediapartners/S/Jobs/J/Download"),
        ("https://storage.example/f?X-Goog-Signature=abc", "https://storage.example/f"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("http://host:bad/x", "<unparsable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def _all_errors() -> list[ReportExportError]:
    job = Job(id="J1", status=JobStatus.FAILED, status_message="boom")
    reset = datetime(2026, 6, 16, tzinfo=UTC)
    return [
        TransportError("connection reset", method="GET", url=SECRET_URL),
        RequestTimeout("read timeout", method="GET", url=SECRET_URL),
        HTTPStatusError(400, method="get", url=SECRET_URL, message="Bad"),
        Unauthorized(401, method="GET", url=SECRET_URL),
        Forbidden(403, method="GET", url=SECRET_URL, errors=[ErrorDetail("X", "y")]),
        NotFound(404, method="GET", url=SECRET_URL),
        RateLimited(method="GET", url=SECRET_URL, retry_after=700.0),
        ServerError(503, method="GET", url=SECRET_URL),
        APIError("Not permitted", method="GET", url=SECRET_URL),
        MalformedResponse("odd", method="GET", url=SECRET_URL),
        JobFailed(job),
        ReplayRefused("J1", rule="not_final", reason="job is RUNNING"),
        QuotaExhausted("ReportExport", limit=100, resets_at=reset, used=100),
        DownloadIntegrityError("truncated", expected=10, actual=9, job_id="J1"),
        ConfigurationError("account_sid", "must not be empty"),
    ]


@pytest.mark.parametrize("error", _all_errors(), ids=lambda e: type(e).__name__)
def test_no_secret_in_str_or_repr(error: ReportExportError) -> None:
    for text in (str(error), repr(error)):
        assert "t0k3n-s3cret" not in text
        assert "sig=" not in text


def test_http_status_error_attributes() -> None:
    err = Forbidden(
        403, method="put", url=SECRET_URL, message="No", errors=[ErrorDetail(None, "z")]
    )
    assert (err.status, err.method, err.message) == (403, "PUT", "No")
    assert err.path == "https://api.impact.com:8443/Advertisers/IRsid/Jobs/J"
    assert str(err) == f"HTTP 403 for PUT {err.path}: No (z)"


def test_rate_limited_mentions_retry_after() -> None:
    err = RateLimited(method="GET", url="/x", retry_after=12.5)
    assert err.status == 429
    assert err.retry_after == 12.5
    assert "retry after 12.5 s" in str(err)


def test_job_failed_carries_the_job() -> None:
    job = Job(id="J1", status=JobStatus.CANCELLED)
    err = JobFailed(job)
    assert err.job is job
    assert str(err) == "job J1 ended CANCELLED"


def test_quota_exhausted_fields() -> None:
    reset = datetime(2026, 6, 16, tzinfo=UTC)
    err = QuotaExhausted("ClickExport", limit=10, resets_at=reset)
    assert (err.quota, err.limit, err.resets_at, err.used) == ("ClickExport", 10, reset, None)


def test_replay_refused_fields() -> None:
    err = ReplayRefused(None, rule="server", reason="not replayable", status=403)
    assert (err.job_id, err.rule, err.reason, err.status) == (None, "server", "not replayable", 403)
    assert "not replayable" in str(err)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="base_url: must"):
        raise ConfigurationError("base_url", "must have a scheme")
