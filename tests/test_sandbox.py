"""The sandbox's behaviour, driven over loopback HTTP with a plain aiohttp client.

These tests are about the `examples` dialect (the default), except the section on the `strict`
one, whose sandboxes say so: the dialect chosen by the environment for the client's tests
(`REPORTEXPORT_SANDBOX_DIALECT`) does not apply here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.dialect import DIALECT_ENV, accepts

from .conftest import SANDBOX_START, Answer, Api, basic, job_id_of, loopback_server

DAY = 86400.0
PARTNER_REPORT = "mp_action_listing_fast"
BRAND_REPORT = "adv_action_listing_pm"
AGENCY_REPORT = "agency_action_listing"


async def finish(sandbox: Sandbox, seconds: float = 11) -> None:
    """Let jobs of 10 sandbox seconds end, and their result files be written."""
    sandbox.advance(seconds)
    await sandbox.wait_idle()


@pytest.fixture(autouse=True)
def _examples_dialect_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DIALECT_ENV, raising=False)


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def download_stream(api: Api, job_id: str) -> Answer:
    return await api.call(f"Jobs/{job_id}/Download", {"Mode": "Stream"})


# -- ReportExport: de-duplication, default range, validation -------------------------------------


async def test_identical_parameters_in_another_order_return_the_same_job(
    sandbox: Sandbox, partner: Api
) -> None:
    first = await partner.call(
        f"ReportExport/{PARTNER_REPORT}",
        [("START_DATE", "2026-01-01"), ("END_DATE", "2026-01-31"), ("SUBAID", "3629")],
    )
    second = await partner.call(
        f"ReportExport/{PARTNER_REPORT}",
        [("SUBAID", "3629"), ("END_DATE", "2026-01-31"), ("START_DATE", "2026-01-01")],
    )
    other = await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-30")
    assert job_id_of(first) == job_id_of(second)
    assert job_id_of(other) != job_id_of(first)
    stats = sandbox.stats()
    assert stats["jobs_created"] == 2
    # The repeat still counts against the quota (the guide's rule 1, docs/guide.md).
    assert stats["quota"]["ReportExport"] == 3
    assert stats["calls"]["ReportExport"] == 3


async def test_explicit_csv_equals_the_default_format(partner: Api) -> None:
    plain = await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-02")
    explicit = await partner.export(
        PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-02", ResultFormat="CSV"
    )
    json_job = await partner.export(
        PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-02", ResultFormat="JSON"
    )
    assert job_id_of(plain) == job_id_of(explicit) != job_id_of(json_job)


async def test_default_range_becomes_a_new_job_only_after_the_day_changes(
    sandbox: Sandbox, agency: Api
) -> None:
    first = job_id_of(await agency.export(AGENCY_REPORT))
    sandbox.advance(3600)  # same calendar day (noon to 1 pm)
    again = job_id_of(await agency.export(AGENCY_REPORT))
    sandbox.advance(DAY)
    next_day = job_id_of(await agency.export(AGENCY_REPORT))
    assert first == again
    assert next_day != first
    assert sandbox.stats()["jobs_created"] == 2


@pytest.mark.parametrize(
    ("persona", "report", "params"),
    [
        (
            "Advertisers",
            BRAND_REPORT,
            {"StartDate": "2026-01-01T00:00:00Z", "EndDate": "2026-01-02T00:00:00Z"},
        ),
        ("Advertisers", BRAND_REPORT, {"START_DATE": "2026-01-01", "END_DATE": "2026-01-02"}),
        ("Mediapartners", PARTNER_REPORT, {"START_DATE": "2026-01-01", "END_DATE": "2026-01-02"}),
        ("Agencies", AGENCY_REPORT, {"START_DATE": "2026-01-01", "END_DATE": "2026-01-02"}),
    ],
)
async def test_each_persona_queues_with_its_own_date_parameters(
    sandbox: Sandbox, http: aiohttp.ClientSession, persona: str, report: str, params: dict[str, str]
) -> None:
    api = Api(sandbox, http, persona)
    answer = await api.export(report, **params)
    body = answer.json
    root = f"/{persona}/{sandbox.account_sid}/Jobs/"
    assert body["Status"] == "QUEUED"
    assert body["QueuedUri"].startswith(root)
    assert body["ResultUri"] == body["QueuedUri"] + "/Download"
    # The brand ReportExport spec lists no ReplayUri (docs/api-facts.md §1a).
    assert ("ReplayUri" in body) == (persona != "Advertisers")
    await finish(sandbox)
    job = await api.job(job_id_of(answer))
    assert job["Status"] == "COMPLETED"
    assert job["RecordsProcessed"] == 10  # two days of 5 rows


async def test_brand_date_times_and_plain_dates_name_the_same_job(brand: Api) -> None:
    as_datetimes = await brand.export(
        BRAND_REPORT, StartDate="2026-01-01T00:00:00Z", EndDate="2026-01-02T00:00:00Z"
    )
    as_dates = await brand.export(BRAND_REPORT, StartDate="2026-01-01", EndDate="2026-01-02")
    assert job_id_of(as_datetimes) == job_id_of(as_dates)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"START_DATE": "2026-01-01", "END_DATE": "2026-01-02", "ResultFormat": "PDF"},
            "ResultFormat",
            "Invalid result format",
        ),
        ({"START_DATE": "01/02/2026", "END_DATE": "2026-01-02"}, "START_DATE", "Invalid date"),
        ({"START_DATE": "2026-01-05", "END_DATE": "2026-01-02"}, "START_DATE", "must not be after"),
        ({"START_DATE": "2026-01-05"}, "END_DATE", "is required"),
        (
            {"START_DATE": "2026-01-01", "END_DATE": "2026-01-02", "SUBAID": "x1"},
            "SUBAID",
            "expected Integer",
        ),
    ],
)
async def test_invalid_input_answers_per_persona(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    params: dict[str, str],
    field: str,
    message: str,
) -> None:
    brand = Api(sandbox, http, "Advertisers")
    partner = Api(sandbox, http, "Mediapartners")
    agency = Api(sandbox, http, "Agencies")
    partner_params = {k: v for k, v in params.items() if k != "SUBAID"}
    brand_params = dict(params)
    if "SUBAID" in params:
        # SUBAID is an Integer filter of the brand report, a String for partner and agency.
        answer = await brand.export(BRAND_REPORT, **brand_params)
        assert answer.status == 200
        assert answer.json["Status"] == "ERROR"
        assert message in answer.json["Message"]
        return
    # Partner: 400 with the error envelope; agency and brand: HTTP 200 with Status ERROR (§1c).
    partner_answer = await partner.export(PARTNER_REPORT, **partner_params)
    assert partner_answer.status == 400
    assert partner_answer.json["Status"] == "ERROR"
    assert partner_answer.json["Errors"][0]["Field"] == field
    assert message in partner_answer.json["Errors"][0]["Message"]
    agency_answer = await agency.export(AGENCY_REPORT, **params)
    assert agency_answer.status == 200
    assert agency_answer.json["Status"] == "ERROR"
    assert message in agency_answer.json["Message"]
    assert sandbox.stats()["jobs_created"] == 0


@pytest.mark.parametrize("report", ["no_such_report", "mp_legacy_invoice"])
async def test_unknown_or_inaccessible_report_partner_404(partner: Api, report: str) -> None:
    answer = await partner.export(report, START_DATE="2026-01-01", END_DATE="2026-01-02")
    assert answer.status == 404
    assert answer.json["Status"] == "ERROR"


@pytest.mark.parametrize("report", ["no_such_report", "agency_private_notes"])
async def test_unknown_or_inaccessible_report_agency_200_error(agency: Api, report: str) -> None:
    answer = await agency.export(report, START_DATE="2026-01-01", END_DATE="2026-01-02")
    assert answer.status == 200
    assert answer.json == {"Status": "ERROR", "Message": f"Not permitted to run report {report}"}


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [("IRwrong", "token"), (None, "wrong-token"), ("", "")],
)
async def test_bad_credentials_get_401_in_the_error_envelope(
    sandbox: Sandbox, brand: Api, credentials: tuple[str | None, str]
) -> None:
    sid, token = credentials
    auth = basic(sid if sid is not None else sandbox.account_sid, token)
    answer = await brand.call("Jobs", auth=auth)
    assert answer.status == 401
    assert answer.json["Status"] == "ERROR"
    assert sandbox.stats()["unauthorized"] == 1


async def test_valid_credentials_on_another_accounts_path_get_401(
    sandbox: Sandbox, brand: Api
) -> None:
    answer = await brand.call("/Advertisers/IRsomeoneelse/Jobs")
    assert answer.status == 401


async def test_unknown_path_in_an_account_root_gets_the_envelope(brand: Api) -> None:
    answer = await brand.call("NoSuchThing")
    assert answer.status == 404
    assert answer.json["Status"] == "ERROR"


# -- Jobs: status, download, signed URLs ---------------------------------------------------------


async def test_download_answers_202_then_302_then_the_file(
    sandbox: Sandbox, partner: Api, http: aiohttp.ClientSession
) -> None:
    job_id = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-03")
    )
    early = await partner.call(f"Jobs/{job_id}/Download")
    assert early.status == 202
    assert early.json["Id"] == job_id
    assert early.json["Status"] in ("QUEUED", "RUNNING")
    await finish(sandbox)
    redirect = await partner.call(f"Jobs/{job_id}/Download")
    assert redirect.status == 302
    location = redirect.headers["Location"]
    assert location.startswith(sandbox.signed_base_url)
    assert not location.startswith(sandbox.base_url)
    async with http.get(location) as response:  # no Authorization: cloud storage
        assert response.status == 200
        signed_body = await response.text()
    rows = csv_rows(signed_body)
    assert rows[0][0] == "Date"
    assert len(rows) == 1 + 15
    assert {row[0] for row in rows[1:]} == {"2026-01-01", "2026-01-02", "2026-01-03"}
    streamed = await download_stream(partner, job_id)
    assert streamed.status == 200
    assert streamed.headers["Content-Type"] == "application/octet-stream"
    assert streamed.text == signed_body
    calls = sandbox.stats()["calls"]
    assert calls["Download"] == 3
    assert calls["SignedDownload"] == 1


async def test_signed_url_expires_and_a_fresh_one_works(
    sandbox: Sandbox, partner: Api, http: aiohttp.ClientSession
) -> None:
    job_id = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    await finish(sandbox)
    location = (await partner.call(f"Jobs/{job_id}/Download")).headers["Location"]
    sandbox.advance(sandbox.config.signed_url_ttl + 1)
    async with http.get(location) as response:
        assert response.status == 403
        assert "expired" in await response.text()
    fresh = (await partner.call(f"Jobs/{job_id}/Download")).headers["Location"]
    async with http.get(fresh) as response:
        assert response.status == 200
    assert sandbox.stats()["signed_urls_expired"] == 1


async def test_signed_url_refuses_a_request_carrying_authorization(
    sandbox: Sandbox, partner: Api, http: aiohttp.ClientSession
) -> None:
    job_id = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    await finish(sandbox)
    location = (await partner.call(f"Jobs/{job_id}/Download")).headers["Location"]
    async with http.get(location, headers=partner.auth) as response:
        assert response.status == 400
    tampered = location.replace("Signature=", "Signature=0")
    async with http.get(tampered) as response:
        assert response.status == 403
    assert sandbox.stats()["signed_requests_with_authorization"] == 1


async def test_job_object_has_every_field_and_the_persona_null_style(
    sandbox: Sandbox, brand: Api, agency: Api
) -> None:
    brand_id = job_id_of(await brand.export(BRAND_REPORT))
    agency_id = job_id_of(await agency.export(AGENCY_REPORT))
    brand_job = await brand.job(brand_id)
    agency_job = await agency.job(agency_id)
    fields = {
        "Id", "Type", "ProgramId", "CreatedBy", "CreatedDate", "StartedDate", "CompletedDate",
        "AbandonedDate", "CancelledDate", "FailedDate", "LastProgressUpdateDate", "Status",
        "StatusMessage", "RecordsProcessed", "PercentageComplete", "Replayable", "ResultUri",
    }  # fmt: skip
    assert set(brand_job) == fields == set(agency_job)
    assert brand_job["Type"] == "ApiReport"
    assert brand_job["Status"] == "QUEUED"
    # Brand spec: nullable dates; agency examples: "" (docs/api-facts.md §2).
    assert brand_job["CompletedDate"] is None
    assert agency_job["CompletedDate"] == ""
    assert brand_job["CreatedDate"].startswith("2026-06-15T12:00:00")
    # A job of one persona is not visible under another root.
    assert (await brand.call(f"Jobs/{agency_id}")).status == 404


async def test_string_values_dialect(http: aiohttp.ClientSession) -> None:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(1, 1), rows_per_day=250, string_values=True
    ) as sandbox:
        api = Api(sandbox, http, "Mediapartners")
        job_id = job_id_of(
            await api.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
        )
        await finish(sandbox, 2)
        job = await api.job(job_id)
    assert job["RecordsProcessed"] == "250"
    assert job["PercentageComplete"] == "100"
    assert job["Replayable"] == "true"


async def test_progress_moves_from_queued_to_running_to_completed(
    sandbox: Sandbox, partner: Api
) -> None:
    job_id = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    assert (await partner.job(job_id))["Status"] == "QUEUED"
    sandbox.advance(5)
    running = await partner.job(job_id)
    assert running["Status"] == "RUNNING"
    assert 0 < running["PercentageComplete"] < 100
    assert running["StartedDate"] is not None
    await finish(sandbox, 6)
    done = await partner.job(job_id)
    assert done["Status"] == "COMPLETED"
    assert done["PercentageComplete"] == 100
    assert done["CompletedDate"] is not None


# -- Jobs listing ---------------------------------------------------------------------------------


async def test_listing_pages_follow_nextpageuri_with_each_personas_spelling(
    sandbox: Sandbox, partner: Api, brand: Api
) -> None:
    ids = [
        job_id_of(
            await partner.export(
                PARTNER_REPORT, START_DATE=f"2026-01-0{day}", END_DATE="2026-01-09"
            )
        )
        for day in range(1, 6)
    ]
    seen: list[str] = []
    answer = await partner.call("Jobs", {"PageSize": "2"})
    pages = 0
    while True:
        body = answer.json
        pages += 1
        assert body["@pagesize"] == "2"
        assert body["@total"] == "5"
        assert "@firstpageruri" in body  # the partner doc's spelling (docs/api-facts.md §2)
        seen += [job["Id"] for job in body["Jobs"]]
        if not body["@nextpageuri"]:
            break
        answer = await partner.call(body["@nextpageuri"])
    assert pages == 3
    assert seen == ids
    brand_body = (await brand.call("Jobs", {"PageSize": "2"})).json
    assert "@firstpageuri" in brand_body
    assert brand_body["Jobs"] == []  # jobs belong to the persona root that made them


async def test_agency_listing_is_a_top_level_array_paged_by_page_size(agency: Api) -> None:
    for day in range(1, 4):
        await agency.export(AGENCY_REPORT, START_DATE=f"2026-01-0{day}", END_DATE="2026-01-09")
    first = (await agency.call("Jobs", {"PageSize": "2"})).json
    second = (await agency.call("Jobs", {"PageSize": "2", "Page": "2"})).json
    assert isinstance(first, list)
    assert len(first) == 2
    assert len(second) == 1


async def test_listing_filters_by_creation_date(sandbox: Sandbox, partner: Api, brand: Api) -> None:
    old = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    brand_old = job_id_of(
        await brand.export(BRAND_REPORT, StartDate="2026-01-01", EndDate="2026-01-01")
    )
    sandbox.advance(2 * DAY)
    new = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-02", END_DATE="2026-01-02")
    )
    after = (await partner.call("Jobs", {"CreatedAfter": "2026-06-16"})).json["Jobs"]
    before = (await partner.call("Jobs", {"CreatedBefore": "2026-06-15"})).json["Jobs"]
    assert [job["Id"] for job in after] == [new]
    assert [job["Id"] for job in before] == [old]
    # Brand filters are ISO date-times.
    brand_after = (await brand.call("Jobs", {"CreatedAfter": "2026-06-15T11:00:00Z"})).json["Jobs"]
    assert [job["Id"] for job in brand_after] == [brand_old]
    bad = await partner.call("Jobs", {"CreatedAfter": "yesterday"})
    assert bad.status == 400


# -- Replay ---------------------------------------------------------------------------------------


async def test_replay_refused_while_running_then_requeues_the_same_job(
    sandbox: Sandbox, partner: Api
) -> None:
    job_id = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    refused = await partner.call(f"Jobs/{job_id}/Replay", method="PUT")
    assert refused.status == 403
    assert refused.json["Status"] == "ERROR"
    await finish(sandbox)
    replayed = await partner.call(f"Jobs/{job_id}/Replay", method="PUT")
    assert replayed.status == 200
    assert replayed.json["Id"] == job_id  # brand and partner: the same job is re-queued
    assert replayed.json["Status"] == "QUEUED"
    assert (await partner.call(f"Jobs/{job_id}/Download")).status == 202
    await finish(sandbox)
    assert (await partner.job(job_id))["Status"] == "COMPLETED"
    assert sandbox.stats()["replays"] == 1


async def test_agency_replay_makes_a_new_job_and_leaves_the_original(
    sandbox: Sandbox, agency: Api
) -> None:
    job_id = job_id_of(
        await agency.export(AGENCY_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    )
    await finish(sandbox)
    replayed = await agency.call(f"Jobs/{job_id}/Replay", method="PUT")
    assert replayed.status == 200
    new_id = replayed.json["Id"]
    assert new_id != job_id
    assert (await agency.job(job_id))["Status"] == "COMPLETED"
    assert (await agency.job(new_id))["Status"] == "QUEUED"


async def test_replay_of_a_recent_range_returns_more_rows_old_days_never_change(
    sandbox: Sandbox, partner: Api
) -> None:
    today = SANDBOX_START.date()
    recent = job_id_of(
        await partner.export(
            PARTNER_REPORT, START_DATE=str(today - timedelta(days=1)), END_DATE=str(today)
        )
    )
    old = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-05-01", END_DATE="2026-05-02")
    )
    await finish(sandbox)
    recent_before = csv_rows((await download_stream(partner, recent)).text)
    old_before = (await download_stream(partner, old)).text
    sandbox.advance(2 * DAY)
    for job_id in (recent, old):
        assert (await partner.call(f"Jobs/{job_id}/Replay", method="PUT")).status == 200
    await finish(sandbox)
    recent_after = csv_rows((await download_stream(partner, recent)).text)
    assert len(recent_after) > len(recent_before)
    assert recent_after[: len(recent_before)] == recent_before  # rows only grow
    assert (await download_stream(partner, old)).text == old_before


async def test_cancelled_job_is_replayable(sandbox: Sandbox, brand: Api) -> None:
    job_id = job_id_of(await brand.export(BRAND_REPORT))
    sandbox.cancel_job(job_id)
    job = await brand.job(job_id)
    assert job["Status"] == "CANCELLED"
    assert job["CancelledDate"] is not None
    assert (await brand.call(f"Jobs/{job_id}/Replay", method="PUT")).status == 200


# -- data -----------------------------------------------------------------------------------------


async def test_chunk_rows_equal_whole_range_rows(sandbox: Sandbox, partner: Api) -> None:
    whole = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-03-01", END_DATE="2026-03-20")
    )
    chunks = [
        job_id_of(await partner.export(PARTNER_REPORT, START_DATE=start, END_DATE=end))
        for start, end in [
            ("2026-03-01", "2026-03-07"),
            ("2026-03-08", "2026-03-14"),
            ("2026-03-15", "2026-03-20"),
        ]
    ]
    await finish(sandbox)
    whole_rows = csv_rows((await download_stream(partner, whole)).text)
    chunk_rows: list[list[str]] = []
    for job_id in chunks:
        rows = csv_rows((await download_stream(partner, job_id)).text)
        assert rows[0] == whole_rows[0]  # one header each
        chunk_rows += rows[1:]
    assert chunk_rows == whole_rows[1:]
    assert len(chunk_rows) == 20 * 5


async def test_filters_change_the_data(sandbox: Sandbox, partner: Api) -> None:
    plain = job_id_of(
        await partner.export(PARTNER_REPORT, START_DATE="2026-03-01", END_DATE="2026-03-01")
    )
    program = job_id_of(
        await partner.export(
            PARTNER_REPORT, START_DATE="2026-03-01", END_DATE="2026-03-01", SUBAID="9999"
        )
    )
    await finish(sandbox)
    plain_rows = csv_rows((await download_stream(partner, plain)).text)
    program_rows = csv_rows((await download_stream(partner, program)).text)
    program_column = program_rows[0].index("ProgramId")
    assert {row[program_column] for row in program_rows[1:]} == {"9999"}
    assert plain_rows != program_rows


@pytest.mark.parametrize("fmt", ["JSON", "XML"])
async def test_json_and_xml_results_hold_the_same_rows_as_csv(
    sandbox: Sandbox, partner: Api, fmt: str
) -> None:
    dates = {"START_DATE": "2026-03-01", "END_DATE": "2026-03-02"}
    csv_job = job_id_of(await partner.export(PARTNER_REPORT, **dates))
    other_job = job_id_of(await partner.export(PARTNER_REPORT, ResultFormat=fmt, **dates))
    await finish(sandbox)
    rows = csv_rows((await download_stream(partner, csv_job)).text)
    text = (await download_stream(partner, other_job)).text
    header, body = rows[0], rows[1:]
    if fmt == "JSON":
        records = json.loads(text)
        assert [[record[name] for name in header] for record in records] == body
    else:
        root = ET.fromstring(text)
        assert root.tag == "ImpactRadiusResponse"
        records = root.findall("./Records/Record")
        assert [[record.findtext(name) for name in header] for record in records] == body


# -- limits ---------------------------------------------------------------------------------------


async def test_101st_report_export_of_a_day_gets_429_until_the_day_changes(
    sandbox: Sandbox, partner: Api, brand: Api
) -> None:
    for number in range(100):
        answer = await partner.export(
            PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01", SUBAID=str(number)
        )
        assert answer.status == 200
    refused = await partner.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01")
    assert refused.status == 429
    assert refused.json["Status"] == "ERROR"
    midnight = 12 * 3600
    # Partner: Retry-After on a rate-limited answer (docs/api-facts.md §5).
    assert int(refused.headers["Retry-After"]) == midnight
    brand_refused = await brand.export(BRAND_REPORT)
    assert brand_refused.status == 429
    assert "Retry-After" not in brand_refused.headers  # brand documents no Retry-After
    assert brand_refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(brand_refused.headers["X-RateLimit-Reset"]) == midnight
    stats = sandbox.stats()
    assert stats["rate_limited_by"] == {"daily_ReportExport": 2}
    assert stats["quota"]["ReportExport"] == 100
    sandbox.advance(midnight)
    assert (await brand.export(BRAND_REPORT)).status == 200


async def test_hourly_bucket_and_headers_spare_status_polling(
    http: aiohttp.ClientSession,
) -> None:
    async with Sandbox(clock=ManualClock(SANDBOX_START), hourly_limit=3) as sandbox:
        brand = Api(sandbox, http, "Advertisers")
        partner = Api(sandbox, http, "Mediapartners")
        job_id = job_id_of(await brand.export(BRAND_REPORT))
        listed = await brand.call("Jobs")
        assert listed.headers["X-RateLimit-Limit"] == "3"
        assert listed.headers["X-RateLimit-Remaining"] == "1"
        assert listed.headers["X-RateLimit-Reset"] == "3600"
        for _ in range(5):  # GET /Jobs/{Id} is not limited
            assert (await brand.call(f"Jobs/{job_id}")).status == 200
        assert (await partner.call("Jobs")).headers["X-RateLimit-Remaining-hour"] == "0"
        refused = await partner.call("Jobs")
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) == 3600
        assert refused.headers["RateLimit-Reset"] == "3600"
        sandbox.advance(3600)
        assert (await brand.call("Jobs")).status == 200
        assert sandbox.stats()["rate_limited_by"] == {"hourly": 1}


async def test_reset_header_as_epoch(http: aiohttp.ClientSession) -> None:
    async with Sandbox(clock=ManualClock(SANDBOX_START), reset_style="epoch") as sandbox:
        answer = await Api(sandbox, http, "Agencies").call("Jobs")
    expected = int((SANDBOX_START + timedelta(hours=1)).timestamp())
    assert int(answer.headers["X-RateLimit-Reset"]) == expected


# -- ClickExport, Reports, MetaData ---------------------------------------------------------------


async def test_click_export_for_brand_and_partner_with_its_own_quota(
    sandbox: Sandbox, brand: Api, partner: Api, agency: Api
) -> None:
    brand_answer = await brand.call("Programs/3629/ClickExport", {"Date": "2026-06-14"})
    partner_answer = await partner.call(
        "ClickExport", [("ProgramId[]", "3629"), ("UniqueClick", "TRUE")]
    )
    for answer in (brand_answer, partner_answer):
        assert set(answer.json) == {"Status", "QueuedUri", "ResultUri", "ReplayUri"}
    job = await brand.job(job_id_of(brand_answer))
    assert job["Type"] == "ClickExport"
    assert job["ProgramId"] == "3629"
    assert (await agency.call("ClickExport")).status == 404
    too_old = await brand.call("Programs/3629/ClickExport", {"Date": "2024-04-09"})
    assert too_old.json["Status"] == "ERROR"
    for day in range(1, 9):
        await brand.call("Programs/3629/ClickExport", {"Date": f"2026-06-0{day}"})
    refused = await brand.call("Programs/3629/ClickExport", {"Date": "2026-05-01"})
    assert refused.status == 429
    assert sandbox.stats()["quota"]["ClickExport"] == 10


async def test_report_catalog_and_metadata(brand: Api, agency: Api, partner: Api) -> None:
    brand_reports = (await brand.call("Reports")).json["Reports"]
    agency_reports = (await agency.call("Reports")).json
    assert isinstance(agency_reports, list)
    accessible = [r for r in brand_reports if r["ApiAccessible"]]
    assert len(accessible) >= 2
    assert any(not r["ApiAccessible"] for r in brand_reports)
    assert any(not r["ApiAccessible"] for r in agency_reports)
    metadata = (await partner.call(f"Reports/{PARTNER_REPORT}/MetaData")).json
    filters = {item["Name"] for item in metadata["Filters"]}
    assert {"START_DATE", "END_DATE", "SUBAID"} <= filters
    assert metadata["Attributes"][0]["Name"] == "Date"
    brand_meta = (await brand.call(f"Reports/{BRAND_REPORT}/MetaData")).json
    assert {"StartDate", "EndDate"} <= {item["Name"] for item in brand_meta["Filters"]}
    assert (await partner.call("Reports/nope/MetaData")).status == 404


# -- job faults and postbacks ---------------------------------------------------------------------


async def test_jobs_go_error_then_recover_or_fail_after_five_tries(
    http: aiohttp.ClientSession,
) -> None:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), faults={"job_error": 0.5}, seed=3
    ) as sandbox:
        api = Api(sandbox, http, "Mediapartners")
        ids = [
            job_id_of(
                await api.export(
                    PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-01", SUBAID=str(n)
                )
            )
            for n in range(16)
        ]
        await finish(sandbox)
        first = {job_id: (await api.job(job_id))["Status"] for job_id in ids}
        assert set(first.values()) == {"ERROR", "COMPLETED"}
        errored = [job_id for job_id, status in first.items() if status == "ERROR"]
        for job_id in errored:
            assert (await api.job(job_id))["FailedDate"] is not None
        # The service re-runs an ERROR job every 15 minutes (docs/api-facts.md §2).
        await finish(sandbox, 15 * 60 + 11)
        second = {job_id: (await api.job(job_id))["Status"] for job_id in errored}
        assert "COMPLETED" in second.values()
        # After five unsuccessful tries the job is FAILED, and nothing re-runs it.
        for _ in range(5):
            await finish(sandbox, 15 * 60 + 11)
        final = {job_id: (await api.job(job_id))["Status"] for job_id in ids}
        assert set(final.values()) <= {"COMPLETED", "FAILED"}
        await finish(sandbox, 10 * DAY)
        for job_id in ids:
            assert (await api.job(job_id))["Status"] == final[job_id]


async def test_job_fail_and_job_stuck_faults(http: aiohttp.ClientSession) -> None:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), faults={"job_fail": 1.0}
    ) as sandbox:
        api = Api(sandbox, http, "Advertisers")
        failed = job_id_of(await api.export(BRAND_REPORT))
        sandbox.set_faults({"job_stuck": 1.0})
        stuck = job_id_of(
            await api.export(BRAND_REPORT, StartDate="2026-01-01", EndDate="2026-01-01")
        )
        await finish(sandbox, 10 * DAY)
        assert (await api.job(failed))["Status"] == "FAILED"
        assert (await api.job(stuck))["Status"] == "RUNNING"
        assert (await api.call(f"Jobs/{failed}/Download")).status == 202


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A postback receiver answering with the statuses queued in `answers` (then 200)."""
    received: list[dict[str, Any]] = []
    answers: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        item: dict[str, Any] = {"method": request.method, **request.query}
        if request.method == "POST":
            item.update(await request.json())
        received.append(item)
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_route("*", "/hook", handle)
    async with loopback_server(app) as port:
        yield f"http://127.0.0.1:{port}/hook?token=s3cret", received, answers


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the event loop run (no sandbox time passes) until `condition()` holds."""
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_postback_delivered_and_retried_on_non_2xx(
    http: aiohttp.ClientSession,
    receiver: tuple[str, list[dict[str, Any]], list[int]],
    method: str,
) -> None:
    url, received, answers = receiver
    answers.append(500)
    async with Sandbox(
        clock=ManualClock(SANDBOX_START),
        job_duration=(10, 10),
        postback_url=url,
        postback_method=method,
    ) as sandbox:
        api = Api(sandbox, http, "Mediapartners")
        job_id = job_id_of(await api.export(PARTNER_REPORT))
        await finish(sandbox)
        await eventually(lambda: sandbox.stats()["postbacks"]["failed_attempts"] == 1)
        assert len(received) == 1
        sandbox.advance(2)  # the retry is due 2 sandbox seconds later
        await eventually(lambda: sandbox.stats()["postbacks"]["delivered"] == 1)
        stats = sandbox.stats()["postbacks"]
    assert received[1]["JobId"] == job_id
    assert received[1]["Status"] == "COMPLETED"
    assert received[1]["method"] == method
    assert received[0]["token"] == "s3cret"  # the configured URL's own parameters are kept
    assert stats["attempts"] == 2
    assert stats["failed_attempts"] == 1
    assert stats["delivered"] == 1


async def test_lost_postbacks_are_never_sent(
    http: aiohttp.ClientSession, receiver: tuple[str, list[dict[str, Any]], list[int]]
) -> None:
    url, received, _ = receiver
    async with Sandbox(
        clock=ManualClock(SANDBOX_START),
        job_duration=(10, 10),
        postback_url=url,
        faults={"lost_postback": 1.0},
    ) as sandbox:
        api = Api(sandbox, http, "Mediapartners")
        job_id_of(await api.export(PARTNER_REPORT))
        await finish(sandbox)
        await eventually(lambda: sandbox.stats()["postbacks"]["lost"] == 1)
    assert received == []


# -- HTTP faults ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def faulty(
    http: aiohttp.ClientSession, **faults: float
) -> AsyncIterator[tuple[Sandbox, Api]]:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), faults=faults
    ) as sandbox:
        yield sandbox, Api(sandbox, http, "Mediapartners")


async def test_http_5xx_fault_answers_before_doing_anything(http: aiohttp.ClientSession) -> None:
    async with faulty(http, http_5xx=1.0) as (sandbox, api):
        answer = await api.export(PARTNER_REPORT)
        assert answer.status in (500, 502, 503, 504)
        assert sandbox.stats()["jobs_created"] == 0


async def test_status_error_200_fault(http: aiohttp.ClientSession) -> None:
    async with faulty(http, status_error_200=1.0) as (sandbox, api):
        answer = await api.export(PARTNER_REPORT)
        assert answer.status == 200
        assert answer.json["Status"] == "ERROR"
        assert sandbox.stats()["jobs_created"] == 0


async def test_malformed_json_fault_takes_effect_but_answers_garbage(
    http: aiohttp.ClientSession,
) -> None:
    async with faulty(http, malformed_json=1.0) as (sandbox, api):
        answer = await api.export(PARTNER_REPORT)
        assert answer.status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.text)
        assert sandbox.stats()["jobs_created"] == 1


async def test_burst_of_429(http: aiohttp.ClientSession) -> None:
    async with faulty(http) as (sandbox, api):
        sandbox.configure(faults={"burst_429": 1.0}, burst_length=3)
        first = await api.call("Jobs")
        sandbox.set_faults({})
        rest = [(await api.call("Jobs")).status for _ in range(3)]
        assert first.status == 429
        assert first.headers["Retry-After"] == "2"
        assert rest == [429, 429, 200]
        assert sandbox.stats()["rate_limited_by"] == {"burst": 3}


async def read_all(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str] | None = None
) -> bytes:
    async with http.get(url, headers=auth) as response:
        assert response.status == 200
        return await response.read()


@pytest.mark.parametrize("fault", ["truncate_body", "drop_connection"])
async def test_download_faults_cut_the_body_short(http: aiohttp.ClientSession, fault: str) -> None:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(1, 1), rows_per_day=20000
    ) as sandbox:
        api = Api(sandbox, http, "Mediapartners")
        job_id = job_id_of(
            await api.export(PARTNER_REPORT, START_DATE="2026-01-01", END_DATE="2026-01-02")
        )
        await finish(sandbox, 2)
        size = (await api.job(job_id))["RecordsProcessed"]
        assert size == 40000
        sandbox.set_faults({fault: 1.0})
        stream_url = f"{api.root}/Jobs/{job_id}/Download?Mode=Stream"
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(http, stream_url, api.auth)
        location = (await api.call(f"Jobs/{job_id}/Download")).headers["Location"]
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(http, location)
        sandbox.set_faults({})
        async with http.get(location) as response:
            complete = await response.read()
        assert int(response.headers["Content-Length"]) == len(complete)


async def test_expired_signed_url_fault(http: aiohttp.ClientSession) -> None:
    async with faulty(http) as (sandbox, api):
        job_id = job_id_of(await api.export(PARTNER_REPORT))
        await finish(sandbox)
        sandbox.set_faults({"expired_signed_url": 1.0})
        location = (await api.call(f"Jobs/{job_id}/Download")).headers["Location"]
        async with http.get(location) as response:
            assert response.status == 403


async def test_slow_fault_delays_answers(http: aiohttp.ClientSession) -> None:
    async with faulty(http) as (sandbox, api):
        sandbox.configure(faults={"slow": 1.0}, slow_seconds=0.2)
        started = anyio.current_time()
        assert (await api.call("Jobs")).status == 200
        assert anyio.current_time() - started >= 0.2
        assert sandbox.stats()["faults_injected"]["slow"] == 1


# -- control endpoints ----------------------------------------------------------------------------


async def test_control_endpoints_stats_advance_configure_reset(
    sandbox: Sandbox, partner: Api, http: aiohttp.ClientSession
) -> None:
    before = job_id_of(await partner.export(PARTNER_REPORT))
    async with http.get(f"{sandbox.base_url}/_sandbox/stats") as response:
        stats = await response.json()
    assert stats["calls"]["ReportExport"] == 1
    assert set(stats["calls"]) >= {
        "ReportExport", "ClickExport", "GetJob", "ListJobs", "Download", "SignedDownload", "Replay"
    }  # fmt: skip
    async with http.post(
        f"{sandbox.base_url}/_sandbox/advance", params={"seconds": "86400"}
    ) as response:
        assert response.status == 200
    assert sandbox.now() == SANDBOX_START + timedelta(days=1)
    async with http.post(
        f"{sandbox.base_url}/_sandbox/advance", params={"seconds": "-1"}
    ) as response:
        assert response.status == 400
    async with http.post(
        f"{sandbox.base_url}/_sandbox/configure", json={"faults": {"http_5xx": 1.0}}
    ) as response:
        assert response.status == 200
    assert (await partner.call("Jobs")).status >= 500
    async with http.post(
        f"{sandbox.base_url}/_sandbox/configure", json={"faults": {"no_such_fault": 1.0}}
    ) as response:
        assert response.status == 400
    async with http.post(f"{sandbox.base_url}/_sandbox/reset") as response:
        assert response.status == 200
    stats = sandbox.stats()
    assert stats["jobs_created"] == 0
    assert stats["calls"]["ReportExport"] == 0
    # A reset starts a new series of job ids: a ledger kept across it never takes a new job for
    # the old one of the same id.
    async with http.post(f"{sandbox.base_url}/_sandbox/configure", json={"faults": {}}) as response:
        assert response.status == 200
    after = job_id_of(await partner.export(PARTNER_REPORT))
    assert after != before
    assert (await partner.call(f"Jobs/{before}")).status == 404


# -- the strict dialect: requests as the documents describe them, or 400/406 -----------------------


@pytest.fixture
async def strict(http: aiohttp.ClientSession) -> AsyncIterator[Sandbox]:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), rows_per_day=5, dialect="strict"
    ) as sb:
        yield sb


def api(sandbox: Sandbox, http: aiohttp.ClientSession, persona: str) -> Api:
    return Api(sandbox, http, persona)


PARTNER_DATES = [("START_DATE", "2026-06-01"), ("END_DATE", "2026-06-03")]
BRAND_DATES = [("StartDate", "2026-06-01T00:00:00Z"), ("EndDate", "2026-06-03T00:00:00Z")]


@pytest.mark.parametrize(
    ("persona", "path", "params", "field"),
    [
        # Not a parameter of the operation (IrVersion is an AE convention, not in a document).
        ("Mediapartners", f"ReportExport/{PARTNER_REPORT}", [*PARTNER_DATES, ("IrVersion", "16")],
         "IrVersion"),
        ("Mediapartners", "Jobs", [("PageSize", "5")], "PageSize"),
        ("Mediapartners", "Jobs", [("Page", "2")], "Page"),
        ("Advertisers", f"ReportExport/{BRAND_REPORT}", PARTNER_DATES, "START_DATE"),
        ("Mediapartners", "ClickExport", [("AdId[]", "1")], "AdId[]"),
        # Required: the partner document marks both export dates so.
        ("Mediapartners", f"ReportExport/{PARTNER_REPORT}", PARTNER_DATES[:1], "END_DATE"),
        # Formats and types: date against date-time, both ways; integers; booleans.
        ("Advertisers", f"ReportExport/{BRAND_REPORT}",
         [("StartDate", "2026-06-01"), ("EndDate", "2026-06-03")], "StartDate"),
        ("Advertisers", "Jobs", [("CreatedAfter", "2026-06-01")], "CreatedAfter"),
        ("Mediapartners", "Jobs", [("CreatedBefore", "2026-06-01T00:00:00Z")], "CreatedBefore"),
        ("Mediapartners", "Jobs", [("CreatedAfter", "2026-02-30")], "CreatedAfter"),
        ("Advertisers", f"ReportExport/{BRAND_REPORT}", [*BRAND_DATES, ("SUBAID", "x1")], "SUBAID"),
        ("Advertisers", "Programs/3629/ClickExport", [("UniqueClick", "TRUE")], "UniqueClick"),
        ("Advertisers", "Programs/abc/ClickExport", [], "ProgramId"),
        # Enums are case-sensitive; a parameter that is no array is given once.
        ("Mediapartners", f"ReportExport/{PARTNER_REPORT}",
         [*PARTNER_DATES, ("ResultFormat", "csv")], "ResultFormat"),
        ("Mediapartners", f"ReportExport/{PARTNER_REPORT}",
         [*PARTNER_DATES, ("ResultFormat", "CSV"), ("ResultFormat", "JSON")], "ResultFormat"),
        ("Mediapartners", "ClickExport", [("UniqueClick", "true")], "UniqueClick"),
        ("Mediapartners", "Jobs/ef134f2a-180b-405d-a91a-b32d2976f51d/Download",
         [("Mode", "stream")], "Mode"),
    ],
)  # fmt: skip
async def test_strict_refuses_what_no_document_describes_with_400(
    strict: Sandbox, http: aiohttp.ClientSession, persona: str, path: str, params: Any, field: str
) -> None:
    answer = await api(strict, http, persona).call(path, params)
    assert answer.status == 400, answer.text
    assert answer.json["Message"] == "Validation Failed"
    assert [error["Field"] for error in answer.json["Errors"]] == [field]
    stats = strict.stats()
    # Refused before anything happened: no job, no quota, no hourly use.
    assert stats["jobs_created"] == 0
    assert stats["quota"]["ReportExport"] == stats["quota"]["ClickExport"] == 0
    assert stats["hourly"]["used"] == 0
    assert stats["refused"] == {"400": 1}


async def test_strict_agency_reportexport_refuses_with_http_200_error(
    strict: Sandbox, http: aiohttp.ClientSession
) -> None:
    """The agency's ReportExport never answers 4xx (docs/api-facts.md §1c): its refusal is the
    documented HTTP 200 with Status ERROR."""
    agency = api(strict, http, "Agencies")
    answer = await agency.export(AGENCY_REPORT, START_DATE="2026-06-01", SortBy="Date")
    assert answer.status == 200
    assert answer.json["Status"] == "ERROR"
    assert "SortBy" in answer.json["Message"]
    assert strict.stats()["jobs_created"] == 0


async def test_strict_accepts_every_documented_request(
    strict: Sandbox, http: aiohttp.ClientSession
) -> None:
    brand, partner, agency = (
        api(strict, http, p) for p in ("Advertisers", "Mediapartners", "Agencies")
    )
    answers = [
        # Report filters from MetaData are parameters too (brand MIN_AMOUNT, agency Advertiser).
        await brand.call(
            f"ReportExport/{BRAND_REPORT}",
            [*BRAND_DATES, ("SUBAID", "3629"), ("MIN_AMOUNT", "2.5"), ("ResultFormat", "JSON")],
        ),
        await partner.call(f"ReportExport/{PARTNER_REPORT}", [*PARTNER_DATES, ("SUBAID", "7")]),
        await agency.call(f"ReportExport/{AGENCY_REPORT}", [("Advertiser", "Acme")]),
        await brand.call(
            "Programs/3629/ClickExport",
            [("AdId", "1"), ("AdId", "2"), ("MediaId", "9"), ("UniqueClick", "true")],
        ),
        await partner.call(
            "ClickExport", [("ProgramId", "3629"), ("SubId", "a"), ("UniqueClick", "FALSE")]
        ),
        await brand.call("Jobs", [("CreatedAfter", "2026-06-01T00:00:00Z")]),
        await partner.call("Jobs", [("CreatedBefore", "2026-06-30")]),
        await agency.call("Reports"),
        await agency.call(f"Reports/{AGENCY_REPORT}/MetaData"),
    ]
    assert [a.status for a in answers] == [200] * len(answers)
    assert all("Errors" not in a.json and a.json != {"Status": "ERROR"} for a in answers[:5])
    assert strict.stats()["jobs_created"] == 5
    assert strict.stats()["refused"] == {}


async def test_strict_answers_406_when_accept_admits_no_documented_type(
    strict: Sandbox, http: aiohttp.ClientSession
) -> None:
    partner = api(strict, http, "Mediapartners")
    job_id = job_id_of(await partner.call(f"ReportExport/{PARTNER_REPORT}", PARTNER_DATES))
    path = f"Jobs/{job_id}"

    async def status(path: str, accept: str, **params: str) -> int:
        headers = {**partner.auth, "Accept": accept}
        return (await partner.call(path, params, auth=headers)).status

    assert await status(path, "application/xml") == 406
    assert await status(path, "application/json;q=0, */*") == 406
    assert await status(path, "*/*") == 200
    assert await status(path, "application/*") == 200
    # Download: application/octet-stream (200) or application/json (202) are documented.
    assert await status(f"{path}/Download", "text/csv") == 406
    assert await status(f"{path}/Download", "application/octet-stream") == 406  # a 202 now
    assert await status(f"{path}/Download", "application/json") == 202
    await finish(strict)
    assert await status(f"{path}/Download", "application/json", Mode="Stream") == 406
    assert await status(f"{path}/Download", "application/octet-stream", Mode="Stream") == 200
    assert await status(f"{path}/Download", "application/json") == 302  # no body: no 406
    assert strict.stats()["refused"] == {"406": 5}


async def test_strict_replay_takes_no_body(strict: Sandbox, http: aiohttp.ClientSession) -> None:
    partner = api(strict, http, "Mediapartners")
    job_id = job_id_of(await partner.call(f"ReportExport/{PARTNER_REPORT}", PARTNER_DATES))
    await finish(strict)
    async with http.put(
        f"{partner.root}/Jobs/{job_id}/Replay", data=b"{}", headers=partner.auth
    ) as answer:
        assert answer.status == 400
    assert (await partner.call(f"Jobs/{job_id}/Replay", method="PUT")).status == 200


async def test_examples_dialect_takes_both_spellings_of_repeatable_ids(partner: Api) -> None:
    documented = await partner.call("ClickExport", [("AdId", "1"), ("AdId", "2")])
    bracketed = await partner.call("ClickExport", [("AdId[]", "2"), ("AdId[]", "1")])
    assert job_id_of(documented) == job_id_of(bracketed)


@pytest.mark.parametrize(
    ("accept", "media_type", "admitted"),
    [
        (None, "application/json", True),
        ("", "application/octet-stream", True),
        ("application/json", "application/json", True),
        ("application/json", "application/octet-stream", False),
        ("APPLICATION/JSON; charset=utf-8", "application/json", True),
        ("text/*, application/json;q=0.5", "application/json", True),
        ("*/*;q=0", "application/json", False),
        ("application/json;q=0, */*", "application/json", False),
        ("application/json;q=0, */*", "text/csv", True),
        ("application/*;q=0.1, application/json;q=0", "application/octet-stream", True),
        ("application/json;q=oops", "application/json", False),
    ],
)
def test_accept_header_matching(accept: str | None, media_type: str, admitted: bool) -> None:
    assert accepts(accept, media_type) is admitted


async def test_strict_refuses_string_values() -> None:
    with pytest.raises(ValueError, match="string_values"):
        Sandbox(dialect="strict", string_values=True)
