"""The session layer and the job client against the sandbox, over loopback, for all three account
types, every call and every fault the sandbox can inject. Time is the sandbox's (`SandboxTime`):
the client's sleeps move the sandbox clock, so nothing here waits for real."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportexport_async import (
    APIError,
    ClientConfig,
    DownloadIntegrityError,
    ExportRequest,
    JobFailed,
    JobStatus,
    NotFound,
    PollPolicy,
    QuotaExhausted,
    RateLimiter,
    RateLimitPolicy,
    ReplayRefused,
    ReportExportClient,
    RetryPolicy,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from reportexport_async.core.models import ClickExportRequest
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.testing import SandboxTime
from reportexport_async.transport.api import ListingMark

from .conftest import SANDBOX_START

REPORTS = {
    "Advertisers": "adv_action_listing_pm",
    "Mediapartners": "mp_action_listing_fast",
    "Agencies": "agency_action_listing",
}
PERSONAS = list(REPORTS)
JANUARY = {"start": date(2026, 1, 1), "end": date(2026, 1, 3)}


def request(persona: str = "Mediapartners", **changes: Any) -> ExportRequest:
    fields: dict[str, Any] = {"report_id": REPORTS[persona], **JANUARY}
    fields.update(changes)
    return ExportRequest(**fields)


def config_for(sandbox: Sandbox, persona: str, **policies: Any) -> ClientConfig:
    return ClientConfig(
        account_sid=sandbox.account_sid,
        auth_token=sandbox.auth_token,
        account_type=persona,
        base_url=sandbox.base_url,
        **policies,
    )


@asynccontextmanager
async def running(
    persona: str = "Mediapartners",
    *,
    limiter_policy: RateLimitPolicy | None = None,
    retry: RetryPolicy | None = None,
    stream_downloads: bool = False,
    **sandbox_options: Any,
) -> AsyncIterator[tuple[Sandbox, ReportExportClient, SandboxTime]]:
    """A sandbox on a manual clock and a client whose clock is the sandbox's."""
    sandbox_options.setdefault("job_duration", (10, 10))
    sandbox_options.setdefault("rows_per_day", 5)
    async with Sandbox(clock=ManualClock(SANDBOX_START), **sandbox_options) as sandbox:
        clock = SandboxTime(sandbox)
        policies: dict[str, Any] = {"poll": PollPolicy(initial=5, maximum=60)}
        if retry is not None:
            policies["retry"] = retry
        limiter = RateLimiter(limiter_policy or RateLimitPolicy(), clock=clock)
        config = config_for(sandbox, persona, **policies)
        async with ReportExportClient(
            config,
            limiter=limiter,
            clock=clock,
            random_source=lambda: 0.5,
            stream_downloads=stream_downloads,
        ) as client:
            yield sandbox, client, clock


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the whole path, per persona --------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("stream", [False, True], ids=["redirect", "stream"])
async def test_export_wait_download_for_each_persona(
    tmp_path: Path, persona: str, stream: bool
) -> None:
    async with running(persona, stream_downloads=stream) as (sandbox, client, _):
        ticket = await client.export(request(persona))
        job = await client.wait(ticket.job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.records_processed == 15
        result = await client.download(ticket.job_id, tmp_path / "out.csv")
        stats = sandbox.stats()
    assert result.path == tmp_path / "out.csv"
    lines = result.path.read_text().splitlines()
    assert len(lines) == 16
    assert result.size == result.path.stat().st_size
    assert result.sha256 == sha256_of(result.path)
    assert not (tmp_path / "out.csv.part").exists()
    assert stats["calls"]["ReportExport"] == 1
    assert stats["calls"]["Download"] == 1
    assert stats["calls"]["SignedDownload"] == (0 if stream else 1)
    # The signed URL on the other origin never saw the impact.com credentials.
    assert stats["signed_requests_with_authorization"] == 0
    assert stats["rate_limited"] == 0
    usage = client.usage
    assert usage.calls["ReportExport"] == 1
    assert usage.calls["GetJob"] == stats["calls"]["GetJob"]
    assert usage.bytes_downloaded == result.size


@pytest.mark.parametrize("persona", PERSONAS)
async def test_every_call_of_the_client_is_one_the_documents_describe(
    tmp_path: Path, persona: str
) -> None:
    """Against the strict dialect (400 for an undocumented parameter, 406 for an `Accept` that
    admits no documented type), every call the client makes is accepted, and the `Accept` the
    client used to send to Download gets 406."""
    async with running(persona, dialect="strict") as (sandbox, client, _):
        ticket = await client.export(request(persona, filters={"SUBAID": "3629"}))
        clicks = None
        if persona != "Agencies":
            program = {"program_id": "3629"} if persona == "Advertisers" else {}
            ids = {"media_ids": ("9",)} if persona == "Advertisers" else {"sub_ids": ("s",)}
            clicks = await client.export(
                ClickExportRequest(
                    **program, ad_ids=("1", "2"), **ids, unique_click=True, date=date(2026, 6, 1)
                )
            )
        await client.reports()
        await client.wait(ticket.job_id)
        await client.list_jobs(created_after=date(2026, 6, 1), created_before=date(2026, 6, 30))
        await client.download(ticket.job_id, tmp_path / "redirect.csv")
        client.stream_downloads = True
        await client.download(ticket.job_id, tmp_path / "stream.csv")
        replayed = await client.replay(ticket.job_id)
        await client.download(replayed.id, tmp_path / "pending.csv")  # 202s, then the file
        if clicks is not None:
            await client.download(clicks.job_id, tmp_path / "clicks.csv")
        stats = sandbox.stats()
        assert stats["refused"] == {}
        assert not {"400", "406"} & stats["status_codes"].keys()
        assert stats["calls"]["Download"] >= 4
        # The Accept the client sent before, through its own session: refused for the file.
        url = f"{client.session.url(client.config.account_root)}/Jobs/{ticket.job_id}/Download"
        headers = {"Authorization": client.session._authorization, "Accept": "application/json"}
        async with client.session.http.get(url, params={"Mode": "Stream"}, headers=headers) as bad:
            assert bad.status == 406
        assert sandbox.stats()["refused"] == {"406": 1}


async def test_wait_polls_on_a_growing_schedule() -> None:
    async with running(job_duration=(300, 300)) as (sandbox, client, clock):
        ticket = await client.export(request())
        job = await client.wait(ticket.job_id, poll=PollPolicy(initial=5, growth=2, maximum=60))
        calls = sandbox.stats()["calls"]["GetJob"]
    assert job.status is JobStatus.COMPLETED
    assert clock.slept[:5] == [5, 10, 20, 40, 60]
    # 300 sandbox seconds polled in 5+10+20+40+60+60+60+60 steps: 9 calls, not 60.
    assert calls == 9


async def test_download_waits_on_202_without_an_explicit_wait(tmp_path: Path) -> None:
    async with running() as (sandbox, client, _):
        ticket = await client.export(request())
        result = await client.download(ticket.job_id, tmp_path / "r.csv")
        stats = sandbox.stats()
    assert result.size > 0
    assert stats["status_codes"]["202"] >= 1


async def test_click_export_brand(tmp_path: Path) -> None:
    async with running("Advertisers") as (_, client, _clock):
        ticket = await client.export(
            ClickExportRequest(program_id="3629", date=date(2026, 6, 14), unique_click=True)
        )
        job = await client.wait(ticket.job_id)
        result = await client.download(ticket.job_id, tmp_path / "clicks.csv")
    assert job.type == "ClickExport"
    assert result.path.read_text().startswith("Date,ClickId,ProgramId,ProgramName")


# -- listing ------------------------------------------------------------------------------------


async def seven_jobs(client: ReportExportClient, persona: str) -> list[str]:
    """Seven exports of different ranges (January 1-9 to 7-9), oldest first: their job ids."""
    return [
        (await client.export(request(persona, start=date(2026, 1, d), end=date(2026, 1, 9)))).job_id
        for d in range(1, 8)
    ]


@pytest.mark.parametrize("persona", PERSONAS)
async def test_list_jobs_follows_every_page(persona: str) -> None:
    async with running(persona) as (sandbox, client, _):
        ids = await seven_jobs(client, persona)
        if sandbox.config.dialect == "strict":
            # No document pages GET /Jobs: asked for nothing, the server answers every job.
            listed, pages = await client.list_jobs(), 1
        else:
            # 7 jobs in pages of 3: three pages (the agency's bare arrays end on a short one).
            listed, pages = await client.list_jobs(page_size=3), 3
        calls = sandbox.stats()["calls"]["ListJobs"]
    assert [job.id for job in listed] == ids
    assert calls == pages


@pytest.mark.parametrize("persona", PERSONAS)
async def test_iter_jobs_only_reads_the_ids_asked_for_and_stops_when_all_are_given(
    persona: str,
) -> None:
    async with running(persona, dialect="examples") as (sandbox, client, _):
        ids = await seven_jobs(client, persona)

        async def listed(only: set[str]) -> tuple[list[str], int]:
            before = sandbox.stats()["calls"].get("ListJobs", 0)
            found = [job.id async for job in client.iter_jobs(page_size=3, only=only)]
            return found, sandbox.stats()["calls"]["ListJobs"] - before

        newest, newest_calls = await listed({ids[0], ids[6]})  # first and last page
        absent, absent_calls = await listed({ids[3], "no-such-job"})  # never all found
    wrapped = persona != "Agencies"  # pages that name their last and previous pages
    # The first page, then the last one: the middle page is never asked for.
    assert sorted(newest) == sorted([ids[0], ids[6]])
    assert newest_calls == (2 if wrapped else 3)
    # An id that is nowhere: every page is read once, backwards or forwards.
    assert absent == [ids[3]]
    assert absent_calls == 3


@pytest.mark.parametrize("persona", ["Advertisers", "Mediapartners"])
async def test_iter_jobs_with_a_mark_starts_at_the_page_it_last_found_a_job_on(
    persona: str,
) -> None:
    async with running(persona, dialect="examples") as (sandbox, client, _):
        ids = await seven_jobs(client, persona)  # pages of 3: [0 1 2] [3 4 5] [6]
        mark = ListingMark()

        async def listed(only: set[str]) -> tuple[list[str], int]:
            before = sandbox.stats()["calls"].get("ListJobs", 0)
            found = [job.id async for job in client.iter_jobs(page_size=3, only=only, mark=mark)]
            return sorted(found), sandbox.stats()["calls"]["ListJobs"] - before

        # No mark yet: the first page, the last, then back to the second.
        assert await listed({ids[4], ids[6]}) == (sorted([ids[4], ids[6]]), 3)
        assert mark.uri is not None
        assert "Page=2" in mark.uri
        # From the mark forward: the first page is never read.
        assert await listed({ids[4], ids[6]}) == (sorted([ids[4], ids[6]]), 2)
        # A job before the mark: the pages from the mark, then the first page; no mark after
        # (a listing starts at the first page anyway).
        assert await listed({ids[0], ids[5]}) == (sorted([ids[0], ids[5]]), 3)
        assert mark.uri is None
        # An id that is nowhere, from a mark: every page read once, no more.
        assert await listed({ids[4]}) == ([ids[4]], 3)
        assert await listed({ids[4], "no-such-job"}) == ([ids[4]], 3)


@pytest.mark.parametrize("persona", ["Advertisers", "Mediapartners"])
async def test_list_jobs_sends_no_page_size_and_follows_the_servers_pages(persona: str) -> None:
    async with running(persona, jobs_page_size=2, dialect="examples") as (sandbox, client, _):
        for day in range(1, 6):
            await client.export(request(persona, start=date(2026, 1, day), end=date(2026, 1, 9)))
        listed = await client.list_jobs()
        calls = sandbox.stats()["calls"]["ListJobs"]
    assert len(listed) == 5
    assert calls == 3  # the server's pages of 2, through its @nextpageuri


async def test_list_jobs_by_creation_date() -> None:
    async with running() as (sandbox, client, _):
        first = (await client.export(request())).job_id
        sandbox.advance(2 * 86400)
        second = (await client.export(request(start=date(2026, 1, 2)))).job_id
        recent = await client.list_jobs(created_after=date(2026, 6, 16))
        old = await client.list_jobs(created_before=date(2026, 6, 15))
    assert [job.id for job in recent] == [second]
    assert [job.id for job in old] == [first]


# -- replay -------------------------------------------------------------------------------------


async def test_replay_takes_the_job_id_from_the_answer() -> None:
    async with running("Agencies") as (_, agency, _clock):
        ticket = await agency.export(request("Agencies"))
        with pytest.raises(ReplayRefused) as refused:
            await agency.replay(ticket.job_id)  # still QUEUED: 403
        assert refused.value.rule == "server"
        await agency.wait(ticket.job_id)
        replayed = await agency.replay(ticket.job_id)
    assert replayed.id != ticket.job_id  # the agency makes a new job
    async with running("Mediapartners") as (_, partner, _clock):
        ticket = await partner.export(request())
        await partner.wait(ticket.job_id)
        replayed = await partner.replay(ticket.job_id)
    assert replayed.id == ticket.job_id  # brand and partner re-queue the same job
    assert replayed.status is JobStatus.QUEUED


# -- job outcomes -------------------------------------------------------------------------------


async def test_error_is_not_final_and_recovers() -> None:
    async with running(faults={"job_error": 0.5}, seed=3) as (sandbox, client, _):
        tickets = [await client.export(request(filters={"SUBAID": str(n)})) for n in range(8)]
        jobs = [await client.wait(ticket.job_id) for ticket in tickets]
        stats = sandbox.stats()
    assert stats["faults_injected"]["job_error"] >= 1
    # Every job ends COMPLETED or FAILED (five unsuccessful tries); ERROR is never returned.
    assert {job.status for job in jobs} <= {JobStatus.COMPLETED, JobStatus.FAILED}
    assert JobStatus.COMPLETED in {job.status for job in jobs}


async def test_failed_job_is_returned_by_wait_and_refused_by_download(tmp_path: Path) -> None:
    async with running(faults={"job_fail": 1.0}) as (_, client, _clock):
        ticket = await client.export(request())
        job = await client.wait(ticket.job_id)
        assert job.status is JobStatus.FAILED
        with pytest.raises(JobFailed) as failed:
            await client.download(ticket.job_id, tmp_path / "never.csv")
    assert failed.value.job.id == ticket.job_id
    assert not (tmp_path / "never.csv").exists()
    assert not (tmp_path / "never.csv.part").exists()


async def test_wait_deadline_on_a_stuck_job() -> None:
    async with running(faults={"job_stuck": 1.0}) as (_, client, _clock):
        ticket = await client.export(request())
        with pytest.raises(WaitTimeout) as timeout:
            await client.wait(ticket.job_id, deadline=3600)
    assert timeout.value.job.status is JobStatus.RUNNING
    assert isinstance(timeout.value, TimeoutError)


# -- errors that are not retried ------------------------------------------------------------------


async def test_wrong_token_is_unauthorized_and_not_retried() -> None:
    async with Sandbox(clock=ManualClock(SANDBOX_START)) as sandbox:
        config = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token="wrong-token",
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        async with ReportExportClient(config) as client:
            with pytest.raises(Unauthorized):
                await client.get_job("ef134f2a-180b-405d-a91a-b32d2976f51d")
        assert sandbox.stats()["unauthorized"] == 1


async def test_unknown_report_partner_404_agency_200_error_not_retried() -> None:
    async with running("Mediapartners") as (sandbox, client, _):
        with pytest.raises(NotFound):
            await client.export(request(report_id="no_such_report"))
        assert sandbox.stats()["calls"]["ReportExport"] == 1
    async with running("Agencies") as (sandbox, client, _):
        with pytest.raises(APIError, match="Not permitted to run report no_such_report"):
            await client.export(request("Agencies", report_id="no_such_report"))
        assert sandbox.stats()["calls"]["ReportExport"] == 1


# -- faults that are retried ----------------------------------------------------------------------

FAULT_RETRY = RetryPolicy(max_attempts=8, initial_backoff=0.5, max_backoff=4, total_budget=600)


@pytest.mark.parametrize(
    "fault",
    ["http_5xx", "status_error_200", "malformed_json", "burst_429", "slow"],
)
async def test_transient_api_faults_are_retried(tmp_path: Path, fault: str) -> None:
    async with running(retry=FAULT_RETRY, faults={fault: 0.3}, seed=11, slow_seconds=0.01) as (
        sandbox,
        client,
        _,
    ):
        tickets = [await client.export(request(filters={"SUBAID": str(n)})) for n in range(6)]
        for ticket in tickets:
            job = await client.wait(ticket.job_id)
            assert job.status is JobStatus.COMPLETED
        listed = await client.list_jobs()
        stats = sandbox.stats()
    assert stats["faults_injected"][fault] >= 1
    assert len(listed) == 6
    # Retries never made a second job: the sandbox de-duplicates, and 5xx/200-ERROR answer
    # before doing anything.
    assert stats["jobs_created"] == 6
    if fault != "slow":
        assert client.usage.retries >= 1


@pytest.mark.parametrize("fault", ["truncate_body", "drop_connection", "expired_signed_url"])
@pytest.mark.parametrize("stream", [False, True], ids=["redirect", "stream"])
async def test_download_faults_end_with_the_intact_file(
    tmp_path: Path, fault: str, stream: bool
) -> None:
    async with running(retry=FAULT_RETRY, rows_per_day=3000, stream_downloads=stream, seed=1) as (
        sandbox,
        client,
        _,
    ):
        ticket = await client.export(request())
        await client.wait(ticket.job_id)
        clean = await client.download(ticket.job_id, tmp_path / "clean.csv")
        sandbox.set_faults({fault: 0.6})
        faulty = await client.download(ticket.job_id, tmp_path / "faulty.csv")
        stats = sandbox.stats()
    assert faulty.sha256 == clean.sha256 == sha256_of(tmp_path / "faulty.csv")
    assert faulty.size == clean.size
    assert not (tmp_path / "faulty.csv.part").exists()
    if not (stream and fault == "expired_signed_url"):  # Mode=Stream has no signed URL
        assert stats["faults_injected"][fault] >= 1


async def test_download_gives_up_after_max_attempts_and_leaves_nothing(tmp_path: Path) -> None:
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=1)
    async with running(retry=retry, rows_per_day=3000) as (sandbox, client, _):
        ticket = await client.export(request())
        await client.wait(ticket.job_id)
        sandbox.set_faults({"truncate_body": 1.0})
        with pytest.raises((TransportError, DownloadIntegrityError)):
            await client.download(ticket.job_id, tmp_path / "x.csv")
        assert sandbox.stats()["faults_injected"]["truncate_body"] == 3
    assert list(tmp_path.iterdir()) == []


# -- limits ---------------------------------------------------------------------------------------


async def test_daily_quota_fails_at_once_without_a_call() -> None:
    policy = RateLimitPolicy(daily_report_export=2)
    async with running(limiter_policy=policy) as (sandbox, client, _):
        await client.export(request(start=date(2026, 1, 1)))
        await client.export(request(start=date(2026, 1, 2)))
        with pytest.raises(QuotaExhausted) as exhausted:
            await client.export(request(start=date(2026, 1, 3)))
        calls = sandbox.stats()["calls"]["ReportExport"]
    assert calls == 2
    assert exhausted.value.quota == "ReportExport"
    assert exhausted.value.resets_at.date() == date(2026, 6, 16)


async def test_server_daily_429_becomes_quota_exhausted_and_is_remembered() -> None:
    async with running(daily_export_limit=1) as (sandbox, client, _):
        await client.export(request(start=date(2026, 1, 1)))
        with pytest.raises(QuotaExhausted) as exhausted:
            await client.export(request(start=date(2026, 1, 2)))
        with pytest.raises(QuotaExhausted):
            await client.export(request(start=date(2026, 1, 3)))  # remembered: no call
        stats = sandbox.stats()
    assert exhausted.value.resets_at == SANDBOX_START.replace(hour=0) + timedelta(days=1)
    assert stats["calls"]["ReportExport"] == 2
    assert stats["rate_limited"] == 1


async def test_a_daily_429_does_not_shut_the_hourly_bucket() -> None:
    """The daily quota's 429 carries headers that reset at the day's end: they describe that
    quota, not the hourly bucket, so status calls and downloads go on at once (found by the
    2,000-chunk load test: every task slept until midnight)."""
    async with running(daily_export_limit=1) as (sandbox, client, clock):
        ticket = await client.export(request(start=date(2026, 1, 1)))
        with pytest.raises(QuotaExhausted):
            await client.export(request(start=date(2026, 1, 2)))
        slept = len(clock.slept)
        job = await client.get_job(ticket.job_id)
        jobs = await client.list_jobs()
        stats = sandbox.stats()
    assert job.id == ticket.job_id
    assert [j.id for j in jobs] == [ticket.job_id]
    assert all(pause < 60 for pause in clock.slept[slept:])
    assert stats["rate_limited"] == 1


async def test_a_quota_call_just_before_midnight_counts_on_both_days() -> None:
    """Within `quota_day_guard` seconds of the reset, a call may be counted on the server's next
    day (clock skew, time in flight): the limiter counts it there too, so the next day never
    goes one over."""
    policy = RateLimitPolicy(daily_report_export=3, quota_day_guard=300)
    async with running(limiter_policy=policy, daily_export_limit=3) as (sandbox, client, _):
        sandbox.advance(12 * 3600 - 120)  # 23:58
        await client.export(request(start=date(2026, 1, 1)))  # today 1; tomorrow 1 as well
        sandbox.advance(240)  # 00:02 the next day
        today = await client.limiter.daily("ReportExport")
        sandbox.advance(3600)
        await client.export(request(start=date(2026, 1, 2)))
        await client.export(request(start=date(2026, 1, 3)))
        with pytest.raises(QuotaExhausted):
            await client.export(request(start=date(2026, 1, 2), end=date(2026, 1, 6)))
        stats = sandbox.stats()
    assert today is not None
    assert today.used == 1
    assert stats["calls"]["ReportExport"] == 3
    assert stats["rate_limited"] == 0


async def test_quota_resets_the_next_day() -> None:
    policy = RateLimitPolicy(daily_report_export=1)
    async with running(limiter_policy=policy) as (sandbox, client, _):
        await client.export(request(start=date(2026, 1, 1)))
        with pytest.raises(QuotaExhausted):
            await client.export(request(start=date(2026, 1, 2)))
        sandbox.advance(12 * 3600)
        ticket = await client.export(request(start=date(2026, 1, 2)))
    assert ticket.job_id


async def test_hourly_headers_keep_the_client_under_the_servers_limit() -> None:
    async with running(hourly_limit=3) as (sandbox, client, clock):
        for day in range(1, 6):
            await client.export(request(start=date(2026, 1, day), end=date(2026, 1, 9)))
        stats = sandbox.stats()
    # The server's X-RateLimit-Remaining reached 0 after the third call: the client waited for
    # the window to roll over instead of provoking a 429.
    assert stats["rate_limited"] == 0
    assert stats["calls"]["ReportExport"] == 5
    assert max(clock.slept) >= 3000


@pytest.mark.parametrize("persona", PERSONAS)
async def test_server_hourly_429_is_waited_out(persona: str) -> None:
    """Another tool spent the account's bucket: our first call gets the 429 and waits."""
    async with running(persona, hourly_limit=2) as (sandbox, client, clock):
        root = sandbox.account_url(persona)  # type: ignore[arg-type]
        import aiohttp

        from .conftest import basic

        async with aiohttp.ClientSession() as other:
            for _ in range(2):
                async with other.get(
                    f"{root}/Jobs", headers=basic(sandbox.account_sid, sandbox.auth_token)
                ) as response:
                    assert response.status == 200
        jobs = await client.list_jobs()
        stats = sandbox.stats()
    assert jobs == []
    assert stats["rate_limited"] == 1
    assert client.usage.rate_limited == 1
    assert client.usage.calls["ListJobs"] == 2
    assert sum(clock.slept) >= 3000  # until the top of the sandbox hour


async def test_export_429_near_midnight_is_the_daily_quota() -> None:
    async with running(daily_export_limit=1) as (sandbox, client, _):
        sandbox.advance(11.5 * 3600)  # 23:30: a reset 30 minutes away is the day's end
        await client.export(request(start=date(2026, 1, 1)))
        with pytest.raises(QuotaExhausted) as exhausted:
            await client.export(request(start=date(2026, 1, 2)))
    assert exhausted.value.quota == "ReportExport"


async def test_client_hourly_limit_waits_instead_of_provoking_429() -> None:
    policy = RateLimitPolicy(hourly_limit=5, safety_margin=0)
    async with running(limiter_policy=policy) as (sandbox, client, clock):
        for _ in range(8):
            await client.list_jobs()
        stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["calls"]["ListJobs"] == 8
    assert any(pause >= 3000 for pause in clock.slept)


async def test_a_wait_for_the_hourly_bucket_across_midnight_charges_the_new_day() -> None:
    """The daily quota is charged once nothing is left to wait for: a submit that waits for
    the hourly bucket from 23:30 to past midnight counts on the day it is sent, as the server
    counts it (found by the 2,000-chunk load test: the old order charged yesterday and let
    the new day go one over, a 429)."""
    policy = RateLimitPolicy(hourly_limit=1, safety_margin=0, daily_report_export=2)
    async with running(limiter_policy=policy, daily_export_limit=2, hourly_limit=1) as (
        sandbox, client, clock,
    ):  # fmt: skip
        sandbox.advance(11.5 * 3600)  # 23:30 sandbox time
        await client.export(request(start=date(2026, 1, 1)))  # today: 1 of 2
        await client.export(request(start=date(2026, 1, 2)))  # waits for the hour: tomorrow
        today = await client.limiter.daily("ReportExport")
        assert today is not None
        assert clock.now().date() == date(2026, 6, 16)
        assert today.used == 1  # the second submit is counted on the new day
        await client.export(request(start=date(2026, 1, 3)))  # the new day's second
        with pytest.raises(QuotaExhausted) as exhausted:
            await client.export(request(start=date(2026, 1, 2), end=date(2026, 1, 5)))
        resets = exhausted.value.resets_at
        stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["calls"]["ReportExport"] == 3
    assert resets.date() == date(2026, 6, 17)


async def test_one_limiter_shared_by_two_clients() -> None:
    async with running() as (sandbox, first, clock):
        policy = RateLimitPolicy(daily_report_export=3)
        shared = RateLimiter(policy, clock=clock)
        config = first.config
        async with (
            ReportExportClient(config, limiter=shared, clock=clock) as a,
            ReportExportClient(config, limiter=shared, clock=clock) as b,
        ):
            await a.export(request(start=date(2026, 1, 1)))
            await b.export(request(start=date(2026, 1, 2)))
            await a.export(request(start=date(2026, 1, 3)))
            with pytest.raises(QuotaExhausted):
                await b.export(request(start=date(2026, 1, 4), end=date(2026, 1, 9)))
        assert sandbox.stats()["calls"]["ReportExport"] == 3


# -- secrets --------------------------------------------------------------------------------------


async def test_token_never_in_logs_reprs_or_exceptions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with running(retry=FAULT_RETRY, faults={"http_5xx": 0.3}, seed=5) as (
        sandbox,
        client,
        _,
    ):
        token = sandbox.auth_token
        ticket = await client.export(request())
        await client.wait(ticket.job_id)
        await client.download(ticket.job_id, tmp_path / "r.csv")
        texts += [repr(client), repr(client.config), repr(client.session), repr(client.limiter)]
        texts += [str(client.config), str(client.usage)]
        for attempt in (
            lambda: client.export(ExportRequest(report_id="no_such_report")),
            lambda: client.get_job("00000000-0000-4000-8000-000000000000"),
        ):
            try:
                await attempt()
            except Exception as exc:
                texts += [str(exc), repr(exc)]
    async with running() as (sandbox, _, _clock):
        bad = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token=token,
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        async with ReportExportClient(bad) as client:
            with pytest.raises(Unauthorized) as caught:
                await client.get_job("x")
            texts += [str(caught.value), repr(caught.value)]
    import base64

    encoded = base64.b64encode(f"{sandbox.account_sid}:{token}".encode()).decode()
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert len(caplog.records) > 0
    for text in texts:
        assert token not in text
        assert encoded not in text


def test_config_from_env_names_the_missing_setting() -> None:
    with pytest.raises(ValueError, match="IMPACT_ACCOUNT_SID"):
        ClientConfig.from_env({"IMPACT_AUTH_TOKEN": "t", "IMPACT_ACCOUNT_TYPE": "partner"})


async def test_a_listing_larger_than_one_network_read_is_read_whole() -> None:
    """A page of 300 jobs is far more than aiohttp buffers at once (found by the 10,000-chunk
    benchmark: the listing was cut at ~64 KiB and read as garbage)."""
    no_daily_quota = RateLimitPolicy(daily_report_export=None)
    async with running(daily_export_limit=0, limiter_policy=no_daily_quota) as (_, client, _c):
        for day in range(300):
            start = date(2025, 1, 1) + timedelta(days=day)
            await client.export(request(start=start, end=start))
        jobs = await client.list_jobs()
    assert len(jobs) == 300
    assert len({job.id for job in jobs}) == 300
