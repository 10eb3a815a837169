"""`Client`, the one object an application needs: it owns its ledger, its limiter (built from
its configuration) and its clock; its methods are safe by default and raise no ExceptionGroup.
Each test runs it against a sandbox on a manual clock (simulated hours in milliseconds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from reportexport_async import (
    BackfillOptions,
    Client,
    ClientConfig,
    ConfigurationError,
    ExportSpec,
    ProgressEvent,
    RateLimitPolicy,
    ReplayRefused,
)
from reportexport_async.sandbox import ManualClock, Sandbox

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
REPORT = "mp_action_listing_fast"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(clock=ManualClock(START), job_duration=(30, 300), rows_per_day=4) as sb:
        yield sb


class Boom(Exception):
    """An application's own error, raised in a progress callback."""


async def test_a_backfill_is_one_object_and_one_call(sandbox: Sandbox, tmp_path: Path) -> None:
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        first = await client.backfill(REPORT, date(2026, 5, 1), date(2026, 5, 14), out=tmp_path)
        again = await client.backfill(REPORT, date(2026, 5, 1), date(2026, 5, 14), out=tmp_path)
    assert first.complete
    assert first.counts["done"] == 3  # 7-day chunks aligned to Mondays
    assert again.calls == {}  # the ledger remembers: the second run costs nothing
    assert sandbox.stats()["jobs_created"] == 3


async def test_options_as_one_value_or_as_keywords(sandbox: Sandbox, tmp_path: Path) -> None:
    options = BackfillOptions(chunk="1d", dry_run=True)
    async with Client.for_sandbox(sandbox) as client:
        by_value = await client.backfill(
            [ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 4), out=tmp_path, options=options
        )
        by_keywords = await client.backfill(
            REPORT, date(2026, 5, 1), date(2026, 5, 4), out=tmp_path, chunk="1d", dry_run=True
        )
        with pytest.raises(ConfigurationError, match="chunk"):
            BackfillOptions(chunk="fortnight")
    assert by_value.plan.cost == by_keywords.plan.cost
    assert by_value.plan.cost.chunks == 4
    assert sandbox.stats()["total_calls"] == 0


async def test_the_configured_hourly_limit_is_the_limit_in_effect(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = ClientConfig(
        account_sid=sandbox.account_sid,
        auth_token=sandbox.auth_token,
        account_type="Mediapartners",
        base_url=sandbox.base_url,
        rate_limit=RateLimitPolicy(hourly_limit=100),
    )
    from reportexport_async.sandbox.testing import SandboxTime

    async with Client(config, ledger=tmp_path / "l.sqlite", clock=SandboxTime(sandbox)) as client:
        assert client.limiter.policy.hourly_limit == 100
        started = sandbox.now()
        for _ in range(100):  # the sandbox allows 1,000 an hour; the client keeps to its 100
            await client.jobs(date(2026, 6, 1))
        waited = (sandbox.now() - started).total_seconds()
    assert sandbox.stats()["calls"]["ListJobs"] == 100
    assert waited >= 3000  # past the first ~90 calls (100 less the safety margin) it waited
    assert sandbox.stats()["rate_limited"] == 0


async def test_an_exception_in_a_progress_callback_reaches_the_caller_as_itself(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    def explode(event: ProgressEvent) -> None:
        if event.kind == "chunk" and event.status == "done":
            raise Boom("my callback failed")

    async with Client.for_sandbox(sandbox) as client:
        with pytest.raises(Boom, match="my callback failed"):
            await client.backfill(
                REPORT, date(2026, 5, 1), date(2026, 5, 3), out=tmp_path, chunk="1d",
                on_event=explode,
            )  # fmt: skip
    manifest = (tmp_path / "manifest.json").read_text()
    assert '"chunks"' in manifest  # the run stopped cleanly: its manifest is written


async def test_progress_as_an_async_iterator(sandbox: Sandbox, tmp_path: Path) -> None:
    kinds: list[str] = []
    async with (
        Client.for_sandbox(sandbox) as client,
        client.backfill_events(
            REPORT, date(2026, 5, 1), date(2026, 5, 3), out=tmp_path, chunk="1d"
        ) as events,
    ):
        async for event in events:
            kinds.append(event.kind)
    assert events.result is not None
    assert events.result.complete
    assert kinds[0] == "plan"
    assert kinds.count("chunk") >= 3 * 3  # submitted, downloading, done at least, per chunk


async def test_leaving_the_iterator_early_stops_the_run_consistently(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "l.sqlite") as client:
        async with client.backfill_events(
            REPORT, date(2026, 5, 1), date(2026, 5, 10), out=tmp_path, chunk="1d"
        ) as events:
            async for event in events:
                if event.kind == "chunk" and event.status == "submitted":
                    break
        assert events.result is None
        rest = await client.backfill(
            REPORT, date(2026, 5, 1), date(2026, 5, 10), out=tmp_path, chunk="1d"
        )
    assert rest.complete
    assert sandbox.stats()["jobs_created"] == 10  # resumed, nothing submitted twice


async def test_export_download_jobs_and_replay_through_the_client(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    dest = tmp_path / "actions.csv"
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "l.sqlite") as client:
        first = await client.export(REPORT, start=date(2026, 5, 1), end=date(2026, 5, 3), out=dest)
        again = await client.export(REPORT, start=date(2026, 5, 1), end=date(2026, 5, 3), out=dest)
        jobs = await client.jobs(date(2026, 6, 1))
        copy = await client.download(first.job_id, tmp_path / "copy.csv")
        with pytest.raises(ReplayRefused, match="too_soon"):
            await client.replay(first.job_id)  # the guide: never right after the submit
    assert first.submitted
    assert again.action == "cached"  # the intact file: no call
    assert [job.id for job in jobs] == [first.job_id]
    assert copy.sha256 == first.sha256
    assert sandbox.stats()["calls"]["ReportExport"] == 1


async def test_a_closed_client_says_so(sandbox: Sandbox) -> None:
    client = Client.for_sandbox(sandbox)
    with pytest.raises(RuntimeError, match="async with"):
        _ = client.api
    async with client:
        assert client.ledger.path.exists()
        temporary = client.ledger.path
    assert not temporary.exists()  # a temporary ledger is removed on close
