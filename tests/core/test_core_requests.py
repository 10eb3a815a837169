"""Request building per persona (docs/api-facts.md §1-§3) and URL handling (§0, §2 Download)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportexport_async.core.models import ClickExportRequest, ExportRequest
from reportexport_async.core.personas import AccountType
from reportexport_async.core.requests import (
    Endpoint,
    account_root,
    build_click_export,
    build_download,
    build_get_job,
    build_list_jobs,
    build_replay,
    build_report_export,
    encode_value,
    is_api_origin,
    is_loopback_host,
    join_url,
    may_carry_credentials,
)
from reportexport_async.errors import ConfigurationError

SID = "IRabc123"
JAN = ExportRequest(
    report_id="mp_action_listing_fast",
    start=dt.date(2026, 1, 1),
    end=dt.date(2026, 1, 31),
    filters={"SUBAID": 1234, "SHOW_FLAG": True, "AS_OF": dt.date(2026, 2, 1)},
    result_format="JSON",
)


@pytest.mark.parametrize(
    ("account_type", "root", "dates"),
    [
        (
            AccountType.ADVERTISERS,
            "/Advertisers/IRabc123",
            [("StartDate", "2026-01-01T00:00:00Z"), ("EndDate", "2026-01-31T00:00:00Z")],
        ),
        (
            AccountType.MEDIAPARTNERS,
            "/Mediapartners/IRabc123",
            [("START_DATE", "2026-01-01"), ("END_DATE", "2026-01-31")],
        ),
        (
            AccountType.AGENCIES,
            "/Agencies/IRabc123",
            [("START_DATE", "2026-01-01"), ("END_DATE", "2026-01-31")],
        ),
    ],
)
def test_report_export_per_persona(
    account_type: AccountType, root: str, dates: list[tuple[str, str]]
) -> None:
    spec = build_report_export(account_type, SID, JAN)
    assert spec.method == "GET"
    assert spec.path == f"{root}/ReportExport/mp_action_listing_fast"
    assert spec.endpoint is Endpoint.REPORT_EXPORT
    assert spec.endpoint.daily_quota == "ReportExport"
    assert list(spec.params) == [
        *dates,
        ("AS_OF", "2026-02-01"),
        ("SHOW_FLAG", "true"),
        ("SUBAID", "1234"),
        ("ResultFormat", "JSON"),
    ]


def test_report_export_default_range_sends_no_dates() -> None:
    spec = build_report_export("partner", SID, ExportRequest(report_id="r"))
    assert spec.params == (("ResultFormat", "CSV"),)


def test_report_export_quotes_path_segments() -> None:
    spec = build_report_export("agency", "S?x", ExportRequest(report_id="a%b#c"))
    assert spec.path == "/Agencies/S%3Fx/ReportExport/a%25b%23c"


def test_equal_requests_build_equal_params() -> None:
    a = ExportRequest(report_id="r", filters={"B": 1, "A": 2})
    b = ExportRequest(report_id="r", filters={"A": 2, "B": 1})
    assert build_report_export("brand", SID, a) == build_report_export("brand", SID, b)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (5, "5"),
        (2.5, "2.5"),
        (3.0, "3"),
        ("x y", "x y"),
        (dt.date(2026, 3, 4), "2026-03-04"),
    ],
)
def test_encode_value(value: bool | int | float | str | dt.date, expected: str) -> None:
    assert encode_value(value) == expected


def test_encode_value_upper_booleans() -> None:
    assert encode_value(True, bool_style="upper") == "TRUE"


# --- ClickExport --------------------------------------------------------------------


def test_brand_click_export() -> None:
    req = ClickExportRequest(
        program_id="9001",
        date=dt.date(2026, 1, 5),
        ad_ids=("1", "2"),
        media_ids=("77",),
        unique_click=True,
    )
    spec = build_click_export("Advertisers", SID, req)
    assert spec.path == "/Advertisers/IRabc123/Programs/9001/ClickExport"
    assert spec.params == (
        ("AdId", "1"),
        ("AdId", "2"),
        ("MediaId", "77"),
        ("Date", "2026-01-05"),
        ("UniqueClick", "true"),
        ("ResultFormat", "CSV"),
    )
    assert spec.endpoint.daily_quota == "ClickExport"


def test_partner_click_export() -> None:
    req = ClickExportRequest(
        program_ids=("1", "2"), sub_ids=("s1",), ad_ids=("9",), unique_click=False
    )
    spec = build_click_export("Mediapartners", SID, req)
    assert spec.path == "/Mediapartners/IRabc123/ClickExport"
    assert spec.params == (
        ("ProgramId", "1"),
        ("ProgramId", "2"),
        ("AdId", "9"),
        ("SubId", "s1"),
        ("UniqueClick", "FALSE"),  # partner spec enum 'TRUE'/'FALSE' (docs/api-facts.md §3)
        ("ResultFormat", "CSV"),
    )


@pytest.mark.parametrize(
    ("account_type", "request_", "setting"),
    [
        ("Agencies", ClickExportRequest(), "account_type"),
        ("Advertisers", ClickExportRequest(), "ClickExportRequest.program_id"),
        (
            "Advertisers",
            ClickExportRequest(program_id="1", sub_ids=("x",)),
            "ClickExportRequest.sub_ids",
        ),
        (
            "Advertisers",
            ClickExportRequest(program_id="1", program_ids=("2",)),
            "ClickExportRequest.program_ids",
        ),
        (
            "Advertisers",
            ClickExportRequest(program_id="1", date=dt.date(2024, 4, 9)),
            "ClickExportRequest.date",
        ),
        ("Advertisers", ClickExportRequest(program_id="abc"), "ClickExportRequest.program_id"),
        (
            "Advertisers",
            ClickExportRequest(program_id="1", ad_ids=("x1",)),
            "ClickExportRequest.ad_ids",
        ),
        (
            "Advertisers",
            ClickExportRequest(program_id="1", media_ids=("٣",)),  # non-ASCII digit
            "ClickExportRequest.media_ids",
        ),
        ("Mediapartners", ClickExportRequest(program_id="1"), "ClickExportRequest.program_id"),
        ("Mediapartners", ClickExportRequest(media_ids=("1",)), "ClickExportRequest.media_ids"),
    ],
)
def test_click_export_refusals(
    account_type: str, request_: ClickExportRequest, setting: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_click_export(account_type, SID, request_)
    assert info.value.setting == setting


# --- Jobs ------------------------------------------------------------------------------


@pytest.mark.parametrize("account_type", list(AccountType))
def test_job_calls(account_type: AccountType) -> None:
    root = account_root(account_type, SID)
    assert build_get_job(account_type, SID, "j/1").path == f"{root}/Jobs/j%2F1"
    get = build_get_job(account_type, SID, "J1")
    assert (get.method, get.params, get.endpoint) == ("GET", (), Endpoint.GET_JOB)
    download = build_download(account_type, SID, "J1")
    assert download.path == f"{root}/Jobs/J1/Download"
    assert download.params == ()
    assert build_download(account_type, SID, "J1", stream=True).params == (("Mode", "Stream"),)
    replay = build_replay(account_type, SID, "J1")
    assert (replay.method, replay.path, replay.params) == ("PUT", f"{root}/Jobs/J1/Replay", ())
    assert replay.endpoint.daily_quota is None
    with pytest.raises(ValueError, match="job_id"):
        build_get_job(account_type, SID, " ")


@pytest.mark.parametrize(
    ("account_type", "after", "before", "expected"),
    [
        (
            "Advertisers",
            dt.date(2026, 1, 1),
            dt.date(2026, 1, 31),
            # inclusive days: the brand's date-time upper bound is the next midnight
            [("CreatedAfter", "2026-01-01T00:00:00Z"), ("CreatedBefore", "2026-02-01T00:00:00Z")],
        ),
        (
            "Advertisers",
            dt.datetime(2026, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            None,
            [("CreatedAfter", "2026-01-01T03:30:00Z")],
        ),
        (
            "Mediapartners",
            dt.date(2026, 1, 1),
            dt.date(2026, 1, 31),
            [("CreatedAfter", "2026-01-01"), ("CreatedBefore", "2026-01-31")],
        ),
        (
            "Agencies",
            dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            None,
            [("CreatedAfter", "2026-01-02")],  # its UTC day
        ),
        ("Agencies", None, None, []),
    ],
)
def test_list_jobs_dates(
    account_type: str,
    after: dt.date | None,
    before: dt.date | None,
    expected: list[tuple[str, str]],
) -> None:
    spec = build_list_jobs(account_type, SID, created_after=after, created_before=before)
    assert list(spec.params) == expected
    assert spec.path.endswith(f"/{SID}/Jobs")
    assert spec.endpoint is Endpoint.LIST_JOBS


def test_list_jobs_paging_and_checks() -> None:
    spec = build_list_jobs("brand", SID, page=2, page_size=500)
    assert spec.params == (("Page", "2"), ("PageSize", "500"))
    with pytest.raises(ValueError, match="1-based"):
        build_list_jobs("brand", SID, page=0)
    with pytest.raises(ValueError, match="aware"):
        build_list_jobs("brand", SID, created_after=dt.datetime(2026, 1, 1))


# --- URLs ------------------------------------------------------------------------------

BASE = "https://api.impact.com"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "/Mediapartners/S/Jobs/J/Download",
            "https://api.impact.com/Mediapartners/S/Jobs/J/Download",
        ),
        ("Jobs/J", "https://api.impact.com/Jobs/J"),
        ("https://storage.example/x?sig=1", "https://storage.example/x?sig=1"),
        ("//storage.example/x", "https://storage.example/x"),
    ],
)
def test_join_url(uri: str, expected: str) -> None:
    assert join_url(BASE, uri) == expected
    assert join_url(BASE + "/", uri) == expected


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://api.impact.com/Jobs", True),
        ("https://API.impact.com:443/Jobs", True),
        ("https://api.impact.com./Jobs", True),
        ("/Mediapartners/S/Jobs/J", True),
        ("http://api.impact.com/Jobs", False),
        ("https://api.impact.com:8443/Jobs", False),
        ("https://storage.googleapis.com/bucket/x?sig=1", False),
        ("https://api.impact.com.evil.example/x", False),
        ("https://evil.example/?https://api.impact.com", False),
        ("//evil.example/x", False),
        ("https://api.impact.com:99999/x", False),
    ],
)
def test_is_api_origin(url: str, same: bool) -> None:
    assert is_api_origin(url, BASE) is same


def test_is_api_origin_with_sandbox_port() -> None:
    assert is_api_origin("http://127.0.0.1:8080/x", "http://127.0.0.1:8080")
    assert not is_api_origin("http://127.0.0.1:8081/x", "http://127.0.0.1:8080")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("128.0.0.1", False),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("2001:db8::1", False),
        ("127.1", False),  # a short form some resolvers expand: not trusted
        ("localhost.example.com", False),
        ("127.0.0.1.example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.impact.com/Jobs", True),
        ("HTTPS://192.0.2.2:18765/x", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://[::1]:9/x", True),
        ("http://localhost:1/x", True),
        ("http://192.0.2.2:18765/x", False),
        ("http://api.impact.com/Jobs", False),
        ("ftp://127.0.0.1/x", False),
        ("/Mediapartners/S/Jobs", False),  # no scheme: join it to the base URL first
        ("http://[::1/x", False),
    ],
)
def test_may_carry_credentials(url: str, allowed: bool) -> None:
    assert may_carry_credentials(url) is allowed


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_quoted_job_id_stays_one_segment(job_id: str) -> None:
    if not job_id.strip():
        return
    path = build_get_job("partner", SID, job_id).path
    prefix = f"/Mediapartners/{SID}/Jobs/"
    assert path.startswith(prefix)
    assert "/" not in path[len(prefix) :]
    assert "?" not in path
    assert "#" not in path


def test_each_call_accepts_the_media_types_its_operation_answers() -> None:
    """Download answers the file (application/octet-stream) or the Job (application/json, 202);
    every other operation answers JSON (docs/api-facts.md §2, §7)."""
    download = [part.strip() for part in Endpoint.DOWNLOAD.accept.split(",")]
    assert download[:2] == ["application/octet-stream", "application/json;q=0.9"]
    assert {endpoint.accept for endpoint in Endpoint if endpoint is not Endpoint.DOWNLOAD} == {
        "application/json"
    }
