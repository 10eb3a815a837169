"""The account's quota beside the session (`transport.quota_account.QuotaAccount`), against the
sandbox over loopback, its counts kept in a ledger's counters (the store the limiter is given, never
the ledger): a charge for every submit the server counted and for nothing else, a daily-quota 429
remembered and raised at once without shutting the hourly bucket, the hourly view taken from the
answers' headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from reportexport_async import (
    ExportRequest,
    ReportExportClient,
    RetryPolicy,
)
from reportexport_async.core.personas import persona_for
from reportexport_async.core.requests import Endpoint
from reportexport_async.errors import ConnectError, QuotaExhausted, Unauthorized
from reportexport_async.ledger import Ledger
from reportexport_async.sandbox import Sandbox
from reportexport_async.sandbox.testing import SandboxTime
from reportexport_async.transport.quota_account import QuotaAccount
from reportexport_async.transport.server_clock import ServerClock

from .conftest import SANDBOX_START
from .transport_parts import client_on, closed_port, manual_sandbox

RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.5, max_backoff=0.5)


def report(day: int) -> ExportRequest:
    return ExportRequest(
        report_id="mp_action_listing_fast", start=date(2026, 1, day), end=date(2026, 1, day)
    )


@asynccontextmanager
async def account(
    tmp_path: Path, **sandbox: Any
) -> AsyncIterator[tuple[Sandbox, ReportExportClient, SandboxTime, Ledger]]:
    """`token` and `base_url` in `sandbox` go to the client's config."""
    config = {k: sandbox.pop(k) for k in ("auth_token", "base_url") if k in sandbox}
    async with (
        manual_sandbox(**sandbox) as box,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
        client_on(box, store=ledger.counters, retry=RETRY, **config) as (client, clock),
    ):
        yield box, client, clock, ledger


async def used(client: ReportExportClient) -> int:
    daily = await client.session.limiter.daily("ReportExport")
    assert daily is not None
    return daily.used


async def test_a_submit_the_server_counted_is_charged_once(tmp_path: Path) -> None:
    async with account(tmp_path) as (box, client, _, ledger):
        assert isinstance(client.session.quota, QuotaAccount)
        for day in (1, 2):
            await client.export(report(day))
        assert await used(client) == box.stats()["quota"]["ReportExport"] == 2
        key = client.session.limiter.account or ""
        today = SANDBOX_START.date()
        assert await ledger.counters.used("ReportExport", today, key) == 2
        assert await ledger.entries() == []  # the counters only: no record of an export


async def test_a_refused_token_is_refunded(tmp_path: Path) -> None:
    async with account(tmp_path, auth_token="not-the-token") as (box, client, _, _):
        with pytest.raises(Unauthorized):
            await client.export(report(1))
        assert box.stats()["unauthorized"] == 1
        assert await used(client) == 0


async def test_a_call_that_never_connected_is_refunded(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with account(tmp_path, base_url=url) as (_, client, clock, _):
        with pytest.raises(ConnectError):
            await client.export(report(1))
        assert clock.slept == [0.25]  # retried once, by the one policy
        assert await used(client) == 0


async def test_a_daily_429_is_remembered_and_leaves_the_hourly_bucket_open(
    tmp_path: Path,
) -> None:
    async with account(tmp_path, daily_export_limit=1) as (box, client, clock, ledger):
        await client.export(report(1))
        # The local limit (100) is above the server's (1): the server refuses the next one.
        with pytest.raises(QuotaExhausted) as spent:
            await client.export(report(2))
        assert spent.value.resets_at == datetime.fromisoformat(box.stats()["quota"]["resets_at"])
        assert box.stats()["quota"]["ReportExport"] == 1
        assert box.stats()["calls"]["ReportExport"] == 2  # refused once: never retried
        key = client.session.limiter.account or ""
        assert await ledger.counters.spent("ReportExport", SANDBOX_START.date(), key)
        assert await ledger.counters.used("ReportExport", SANDBOX_START.date(), key) == 1
        with pytest.raises(QuotaExhausted):  # known now: no call at all
            await client.export(report(3))
        assert box.stats()["calls"]["ReportExport"] == 2
        clock.slept.clear()
        await client.reports()  # every other endpoint goes on, without a wait
        assert clock.slept == []
        window = client.session.limiter.hourly
        assert window is not None
        assert window.remaining > 0


async def test_the_hourly_view_follows_the_answers_headers(tmp_path: Path) -> None:
    async with account(tmp_path, hourly_limit=40) as (box, client, _, _):
        for _ in range(3):
            await client.reports()
        window = client.session.limiter.hourly
        assert window is not None
        assert window.limit == 40
        assert window.remaining == 40 - box.stats()["hourly"]["used"] == 37


async def test_a_call_that_spends_the_quota_asks_the_servers_day_first(tmp_path: Path) -> None:
    async with account(tmp_path) as (box, client, _, _):
        asked: list[str] = []
        clock = client.session.clock
        assert isinstance(clock, ServerClock)

        async def probe() -> None:
            asked.append("probe")
            await client.reports()

        clock.set_probe(probe)
        clock.ask_before_spending = True
        quota = QuotaAccount(client.session.limiter, clock, persona_for("Mediapartners"))
        await quota.ready(Endpoint.GET_JOB)  # spends nothing: no question
        assert asked == []
        await quota.ready(Endpoint.REPORT_EXPORT)  # never observed: ask first
        assert asked == ["probe"]
        await quota.ready(Endpoint.REPORT_EXPORT)  # a fresh answer: no second question
        assert asked == ["probe"]
        assert box.stats()["calls"]["ReportExport"] == 0


class HeldUpPastMidnight:
    """The ledger's counters, except that right after the next charge the sandbox's clock jumps
    past the account's midnight: another task's long pause, between this call's charge and its
    send (the server then counts the call on the new day)."""

    def __init__(self, counters: Any, box: Sandbox, hours: float) -> None:
        self._counters, self._box, self._hours = counters, box, hours

    def __getattr__(self, name: str) -> Any:
        return getattr(self._counters, name)

    async def charge(self, name: Any, day: date, limit: int, account: str = "") -> int | None:
        counted: int | None = await self._counters.charge(name, day, limit, account)
        if self._hours:
            self._box.advance(self._hours * 3600)
            self._hours = 0
        return counted


async def test_a_call_counted_after_the_accounts_midnight_is_charged_on_that_day(
    tmp_path: Path,
) -> None:
    """Charged at 12:00 on day 1 (far from the midnight guard), counted by the server at 01:00 on
    day 2: day 2 is charged too, so the new day's count is the server's (else the run would take
    one more of day 2 than the server allows, and meet a 429)."""
    async with manual_sandbox() as box, Ledger(tmp_path / "ledger.sqlite") as ledger:
        late = HeldUpPastMidnight(ledger.counters, box, hours=13)
        async with client_on(box, store=late, retry=RETRY) as (client, _):
            await held_up(box, client, ledger)


async def held_up(box: Sandbox, client: ReportExportClient, ledger: Ledger) -> None:
    await client.export(report(1))
    key = client.session.limiter.account or ""
    first, second = SANDBOX_START.date(), date.fromordinal(SANDBOX_START.toordinal() + 1)
    assert box.now().date() == second
    assert box.stats()["quota"]["ReportExport"] == 1  # on the server's day 2
    assert await ledger.counters.used("ReportExport", second, key) == 1
    assert await used(client) == 1  # today, the server's day 2
    assert await ledger.counters.used("ReportExport", first, key) == 1  # kept: it was sent
    await client.export(report(2))  # an ordinary call later that day: charged once
    assert await ledger.counters.used("ReportExport", second, key) == 2
    assert box.stats()["quota"]["ReportExport"] == 2
