"""`sync`: a dataset kept current day after day, against the sandbox's settling data in simulated
time (a manual clock: a day passes with `advance`). Costs are the sandbox's own counts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reportexport_async import Client, ConfigurationError, RateLimitPolicy
from reportexport_async.core.chunking import Chunk
from reportexport_async.core.freshness import (
    FreshnessPolicy,
    account_day,
    judge_fetched,
    judge_unfetched,
)
from reportexport_async.core.server_time import corrected_offset, server_date
from reportexport_async.jobs.datasets import load_datasets
from reportexport_async.jobs.sync import Dataset
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.testing import SandboxTime

REPORTS = ("mp_action_listing_fast", "mp_clicks_by_day")
#: Day 1 of the tests: Monday 2026-06-15, 13:00 UTC (after the default refresh hour).
DAY1 = datetime(2026, 6, 15, 13, 0, tzinfo=UTC)
FIRST = date(2026, 6, 8)
DAY = 86_400.0


@asynccontextmanager
async def account(
    tmp_path: Path,
    start: datetime = DAY1,
    *,
    daily_limit: int = 100,
    clock_skew: float = 0.0,
    **options: Any,
) -> AsyncIterator[tuple[Sandbox, Client]]:
    """A sandbox whose recent days settle over 1 + 3 days (96 rows a day, one more each hour),
    and a `Client` of it on its clock (shifted by `clock_skew` seconds: a machine whose clock
    is off)."""
    async with Sandbox(
        clock=ManualClock(start),
        job_duration=(30, 300),
        rows_per_day=96,
        settle_days=3,
        daily_export_limit=daily_limit,
        **options,
    ) as sandbox:
        client = Client.for_sandbox(
            sandbox,
            ledger=tmp_path / "ledger.sqlite",
            rate_limit=RateLimitPolicy(daily_report_export=daily_limit),
        )
        if clock_skew:
            client.clock = _Skewed(SandboxTime(sandbox), clock_skew)
        async with client:
            yield sandbox, client


class _Skewed:
    def __init__(self, inner: SandboxTime, skew: float) -> None:
        self.inner, self.skew = inner, skew

    def now(self) -> datetime:
        return self.inner.now() + timedelta(seconds=self.skew)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def calls(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.stats()["calls"])


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def next_day(sandbox: Sandbox, hour: int = 13) -> None:
    """Move the sandbox to `hour` o'clock (UTC, the account's zone) of the next day."""
    now = sandbox.now()
    target = datetime.combine(now.date() + timedelta(days=1), time(hour), UTC)
    sandbox.advance((target - now).total_seconds())


def at_most_the_clock_check(cost: dict[str, int]) -> bool:
    """Nothing spent: at most the one listing call that asks the server which day it is (a
    run whose last answer is more than a few minutes old)."""
    return cost in ({}, {"ListJobs": 1})


def data_lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines()[1:])


def manifest(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "manifest.json").read_text()))


#: This machine's clock right, three hours ahead, three hours behind (at the server's 13:00 it
#: reads 16:00, or 10:00: before the refresh hour): no decision and no count changes.
SKEWS = pytest.mark.parametrize("skew", [0, 3 * 3600, -3 * 3600], ids=["right", "ahead", "behind"])


@SKEWS
async def test_day_by_day_costs_the_new_day_and_one_replay_per_unsettled_chunk(
    tmp_path: Path, skew: float
) -> None:
    out = tmp_path / "data"
    dataset = Dataset("actions", REPORTS, out, first_day=FIRST, merge=True)
    async with account(tmp_path, clock_skew=skew) as (sandbox, client):
        first = await client.sync(dataset)
        # Day 1: 7 days of each report, all new; the 4 latest go first.
        assert first.counts["new"] == 2 * 4
        assert first.counts["history"] == 2 * 3
        assert calls(sandbox)["ReportExport"] == 14
        assert calls(sandbox)["Replay"] == 0
        day1_latest = first.datasets[0].chunks[-1]
        before = calls(sandbox)
        again = await client.sync(dataset)
        assert spent(before, calls(sandbox)) == {}, "a second sync the same day costs nothing"
        assert again.datasets[0].merged == ()  # nothing changed: the merged files stay as they are
        assert again.counts["fresh"] == 2 * 3
        assert again.counts["final"] == 2 * 4
        for _ in range(4):  # days 2 to 5
            next_day(sandbox)
            before = calls(sandbox)
            result = await client.sync(dataset)
            cost = spent(before, calls(sandbox))
            # The new day's submit, one replay per chunk still settling (3 days), nothing else
            # that spends: no other submit, no second replay.
            assert cost["ReportExport"] == 2, cost
            assert cost["Replay"] == 2 * 3, cost
            assert result.counts["new"] == 2
            assert result.counts["refresh"] == 2 * 3
            before = calls(sandbox)
            await client.sync(dataset)
            assert spent(before, calls(sandbox)) == {}
        today = account_day(sandbox.now(), UTC)
        last_day = today - timedelta(days=1)
        # The merged files against one whole-range export per report, taken now.
        for report in REPORTS:
            whole = await client.export(report, out=tmp_path / f"{report}.whole.csv",
                                        start=FIRST, end=last_day)  # fmt: skip
            merged = data_lines(out / f"{report}.csv")
            assert merged == data_lines(whole.path)
            assert len(merged) > 0
    chunks = manifest(out)["chunks"]
    assert len(chunks) == 2 * (last_day - FIRST).days + 2
    for chunk in chunks:
        end = date.fromisoformat(chunk["end"])
        assert chunk["final"] == (end <= today - timedelta(days=4)), chunk
        assert all(chunk[name] for name in ("job_id", "sha256", "fetched_at", "downloaded_at")), (
            chunk
        )
        assert chunk["rows"] == (96 if chunk["final"] else chunk["rows"])
    # The latest day of day 1 was fetched with part of its rows; its file has them all now.
    path = out / next(c["path"] for c in chunks if c["start"] == str(day1_latest.start))
    assert day1_latest.rows is not None
    assert day1_latest.rows < 96
    assert len(path.read_text().splitlines()) - 1 == 96


async def test_the_latest_day_is_refreshed_later_in_the_day(tmp_path: Path) -> None:
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=FIRST, refresh_hour=12)
    early = datetime(2026, 6, 15, 1, 0, tzinfo=UTC)
    async with account(tmp_path, early) as (sandbox, client):
        await client.sync(dataset)  # 01:00: the new day is submitted, with few rows yet
        sandbox.advance(3600)
        before = calls(sandbox)
        result = await client.sync(dataset)  # 02:00: its refresh waits, and says until when
        assert at_most_the_clock_check(spent(before, calls(sandbox)))
        assert result.counts["deferred"] == 1
        assert result.datasets[0].deferred_until == datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
        sandbox.advance(11 * 3600)  # 13:00
        before = calls(sandbox)
        later = await client.sync(dataset)
        cost = spent(before, calls(sandbox))
        assert cost.get("ReportExport", 0) == 0, cost
        assert cost["Replay"] == 1, cost
        latest = later.datasets[0].chunks[-1]
        assert latest.kind == "refresh"
        assert latest.end == date(2026, 6, 14)
        before = calls(sandbox)
        await client.sync(dataset)  # at most once a day
        assert spent(before, calls(sandbox)) == {}


async def test_a_refresh_right_after_its_submit_waits_for_the_guard(tmp_path: Path) -> None:
    """Chunks submitted at 23:30 are due for a refresh after midnight, but the replay guard
    never replays within an hour of the submit: the run defers them until then (no Replay),
    and the run after that hour replays each once."""
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=FIRST)
    late = datetime(2026, 6, 15, 23, 30, tzinfo=UTC)
    async with account(tmp_path, late) as (sandbox, client):
        await client.sync(dataset)
        sandbox.advance(40 * 60)  # the next day, well within the hour of the submits
        assert account_day(sandbox.now(), UTC) == date(2026, 6, 16)
        before = calls(sandbox)
        result = await client.sync(dataset)
        cost = spent(before, calls(sandbox))
        assert cost.get("Replay", 0) == 0, cost
        assert cost["ReportExport"] == 1, cost  # the new day alone
        deferred = [c for c in result.datasets[0].chunks if c.kind == "deferred"]
        assert len(deferred) == 3  # the settle window's days, none of them replayed
        assert all(c.outcome == "done" and c.until is not None for c in deferred)
        until = result.datasets[0].deferred_until
        assert until is not None
        assert late + timedelta(hours=1) <= until < late + timedelta(hours=1, minutes=10)
        sandbox.advance((until - sandbox.now()).total_seconds() + 60)
        before = calls(sandbox)
        later = await client.sync(dataset)
        cost = spent(before, calls(sandbox))
        assert cost["Replay"] == 3, cost
        assert cost.get("ReportExport", 0) == 0, cost
        assert later.counts["refresh"] == 3
        assert all(c.outcome == "done" for c in later.datasets[0].chunks)


async def test_one_sync_run_is_one_orchestrator_run(tmp_path: Path) -> None:
    """New days, history and refreshes of a dataset go through one run of the orchestrator:
    one plan, and each refreshed chunk is followed by its tracker and downloaded in it."""
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=FIRST)
    events: list[Any] = []
    async with account(tmp_path) as (sandbox, client):
        await client.sync(dataset, on_event=events.append)  # new days and history
        assert [e.kind for e in events].count("plan") == 1
        next_day(sandbox)
        events.clear()
        result = await client.sync(dataset, on_event=events.append)
        assert [e.kind for e in events].count("plan") == 1
        refreshed = {str(Chunk(c.start, c.end)) for c in result.datasets[0].chunks
                     if c.kind == "refresh"}  # fmt: skip
        assert len(refreshed) == 3
        for chunk in refreshed:
            moves = [e.status for e in events if e.kind == "chunk" and e.chunk == chunk]
            assert moves[0] == "submitted", (chunk, moves)  # its replay, by the run
            assert moves[-1] == "done", (chunk, moves)


class Stop(Exception):
    pass


@pytest.mark.parametrize("status", ["running", "done"])
async def test_a_run_stopped_after_its_replays_resumes_without_replaying_again(
    tmp_path: Path, status: str
) -> None:
    """The run stops (the caller's callback raises) once the replayed jobs are followed
    (`running`: before the run's task group, so it ends its work first, then raises; `done`:
    at the first download, the rest cancelled). The next run follows the replayed jobs, never
    replays them again, and makes the merged file good."""
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=FIRST, merge=True)

    def stop_at_tracking(event: Any) -> None:
        if event.kind == "chunk" and event.status == status:
            raise Stop

    async with account(tmp_path) as (sandbox, client):
        await client.sync(dataset)
        next_day(sandbox)
        with pytest.raises(Stop):
            await client.sync(dataset, on_event=stop_at_tracking)
        assert calls(sandbox)["Replay"] == 3
        resumed = await client.sync(dataset)
        assert calls(sandbox)["Replay"] == 3, "the replayed jobs are followed, not replayed again"
        assert calls(sandbox)["ReportExport"] == 7 + 1
        assert resumed.counts["failed"] == 0
        assert all(chunk.outcome == "done" for chunk in resumed.datasets[0].chunks)
        assert resumed.datasets[0].merged == (out / f"{REPORTS[0]}.csv",)
        before = calls(sandbox)
        last = await client.sync(dataset)
        assert spent(before, calls(sandbox)) == {}
        assert last.datasets[0].merged == ()
        whole = await client.export(REPORTS[0], out=tmp_path / "whole.csv",
                                    start=FIRST, end=date(2026, 6, 15))  # fmt: skip
        assert data_lines(out / f"{REPORTS[0]}.csv") == data_lines(whole.path)


async def test_a_dataset_without_dates_makes_one_job_per_calendar_day(tmp_path: Path) -> None:
    out = tmp_path / "data"
    dataset = Dataset("default", REPORTS[:1], out)
    # The partner document marks the dates required: the default range is the examples' dialect.
    async with account(tmp_path, dialect="examples") as (sandbox, client):
        for _ in range(3):
            await client.sync(dataset)
            sandbox.advance(3 * 3600)
        assert sandbox.stats()["jobs_created"] == 1
        assert calls(sandbox)["ReportExport"] == 1
        next_day(sandbox)
        for _ in range(2):
            await client.sync(dataset)
        assert sandbox.stats()["jobs_created"] == 2
        assert calls(sandbox)["ReportExport"] == 2
    files = sorted(p.name for p in (out / REPORTS[0]).iterdir())
    assert files == ["default-range_2026-06-15.csv", "default-range_2026-06-16.csv"]


async def test_a_default_range_export_the_quota_cannot_serve_waits(tmp_path: Path) -> None:
    dataset = Dataset("default", REPORTS, tmp_path / "data")
    async with account(tmp_path, daily_limit=1, dialect="examples") as (sandbox, client):
        result = await client.sync(dataset)
        assert result.counts["pending"] == 1
        assert result.datasets[0].pending_resets_at == datetime(2026, 6, 16, tzinfo=UTC)
        assert calls(sandbox)["ReportExport"] == 1


async def test_within_the_quota_new_days_go_first_and_history_waits(tmp_path: Path) -> None:
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=date(2026, 6, 1))
    async with account(tmp_path, daily_limit=6) as (sandbox, client):
        first = await client.sync(dataset)
        chunks = first.datasets[0].chunks
        done = [c.start for c in chunks if c.outcome == "done"]
        # The 4 latest days first, then history (oldest first) while the quota lasts; what
        # does not fit is pending, nothing lost.
        assert set(done) >= {date(2026, 6, d) for d in (11, 12, 13, 14)}
        assert len(done) == 6
        assert first.counts["pending"] == 14 - 6
        assert first.datasets[0].pending_resets_at is not None
        next_day(sandbox)
        second = await client.sync(dataset)
        assert calls(sandbox)["ReportExport"] == 12
        kinds = {c.start: c.kind for c in second.datasets[0].chunks}
        assert kinds[date(2026, 6, 15)] == "new"
        assert kinds[date(2026, 6, 14)] == "refresh"
        outcomes = {c.start: c.outcome for c in second.datasets[0].chunks}
        assert outcomes[date(2026, 6, 15)] == "done"
        assert outcomes[date(2026, 6, 14)] == "done"
        # Day 2's 6 submits: the new day, then 5 days of history.
        assert second.counts["pending"] == 15 - 12


async def test_two_datasets_share_the_quota_new_days_first(tmp_path: Path) -> None:
    """Dataset `a` has history, `b` only new days; 6 submits left today: the new days of both
    go before `a`'s history (it runs first), and what waits is history."""
    a = Dataset("a", REPORTS[:1], tmp_path / "a", first_day=date(2026, 6, 1))
    b = Dataset("b", REPORTS[1:], tmp_path / "b", first_day=date(2026, 6, 12))
    async with account(tmp_path, daily_limit=8) as (sandbox, client):
        result = await client.sync([a, b])
        assert calls(sandbox)["ReportExport"] == 8
        first, second = result.datasets
        new_days = [c for r in result.datasets for c in r.chunks if c.kind == "new"]
        assert len(new_days) == 4 + 3
        assert all(c.outcome == "done" for c in new_days)
        history = [c for c in first.chunks if c.kind == "history"]
        assert [c.outcome for c in history].count("done") == 1  # the quota's last submit
        assert [c.outcome for c in history].count("pending") == 9
        assert first.pending_resets_at == datetime(2026, 6, 16, tzinfo=UTC)
        assert second.counts["pending"] == 0


async def test_the_day_is_the_servers_not_the_machines(tmp_path: Path) -> None:
    """This machine's clock is 6 hours behind: at the server's 03:00 of 2026-06-16 it reads
    21:00 of the 15th. The run asks the server (one listing call) before spending anything."""
    out = tmp_path / "data"
    dataset = Dataset("a", REPORTS[:1], out, first_day=FIRST)
    start = datetime(2026, 6, 16, 3, 0, tzinfo=UTC)
    async with account(tmp_path, start, clock_skew=-6 * 3600) as (sandbox, client):
        result = await client.sync(dataset)
        assert result.datasets[0].last_day == date(2026, 6, 15)
        assert abs(result.server_offset - 6 * 3600) < 2
        assert calls(sandbox)["ListJobs"] >= 1
        next_day(sandbox, hour=13)  # the server's 13:00, this machine's 07:00
        await client.sync(dataset)
        assert calls(sandbox)["Replay"] == 3
        # The server's 03:00 of the 18th, this machine's 21:00 of the 17th: yesterday's
        # replays (the server's 13:00 of the 17th) are not today's, so each chunk still
        # settling is refreshed again; the latest day waits for the refresh hour.
        next_day(sandbox, hour=3)
        before = calls(sandbox)
        third = await client.sync(dataset)
        assert spent(before, calls(sandbox))["Replay"] == 3
        assert third.datasets[0].last_day == date(2026, 6, 17)
        # The ledger's stamps are the server's: its 03:00 of the 18th, not this machine's 21:00.
        replayed = [e.last_replay_at for e in await client.ledger.entries() if e.last_replay_at]
        assert max(replayed).astimezone(UTC).date() == date(2026, 6, 18)


async def test_the_sandbox_date_header_follows_its_own_clock(tmp_path: Path) -> None:
    async with (
        Sandbox(clock=ManualClock(DAY1)) as sandbox,
        aiohttp.ClientSession() as http,
    ):
        sandbox.advance(DAY + 3600)
        async with http.get(sandbox.base_url + "/Mediapartners/x/Jobs") as answer:
            header = answer.headers["Date"]
    assert header == "Tue, 16 Jun 2026 14:00:00 GMT"
    seen = server_date({"date": header})
    assert seen is not None
    assert corrected_offset(0.0, seen, DAY1) == DAY + 3600


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"first_day": date(2026, 6, 15)}, "in the future"),
        ({"first_day": date(2027, 1, 1)}, "in the future"),
    ],
)
async def test_a_first_day_in_the_future_fails_before_any_call(
    tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    dataset = Dataset("a", REPORTS[:1], tmp_path / "data", **change)
    async with account(tmp_path) as (sandbox, client):
        with pytest.raises(ConfigurationError, match=needle):
            await client.sync(dataset)
        assert sandbox.stats()["total_calls"] == 0
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"settle_days": -1}, "0 days or more"),
        ({"refresh_hour": 24}, "0 to 23"),
        ({"chunk": "auto"}, "auto"),
        ({"reports": ()}, "at least one report"),
        ({"reports": ("../x",)}, "report_id '../x' must not contain"),
        ({"result_format": "pdf"}, "'CSV', 'JSON' or 'XML'"),
    ],
)
def test_bad_datasets_are_refused_when_made(changes: dict[str, Any], needle: str) -> None:
    values: dict[str, Any] = {"name": "a", "reports": REPORTS, "out": Path("x"), **changes}
    with pytest.raises(ConfigurationError, match=needle):
        Dataset(**values)


TOML = """
[datasets.actions]
reports = ["mp_action_listing_fast"]
first_day = 2026-06-08
chunk = "1d"
out = "data/actions"
merge = true
settle_days = 3

[datasets.clicks]
reports = ["mp_clicks_by_day"]
"""


def test_datasets_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "datasets.toml"
    path.write_text(TOML)
    actions, clicks = load_datasets(path)
    assert actions == Dataset(
        "actions", ("mp_action_listing_fast",), tmp_path / "data/actions",
        first_day=FIRST, merge=True,
    )  # fmt: skip
    assert clicks.first_day is None
    assert clicks.out == tmp_path / "clicks"
    assert [d.name for d in load_datasets(path, ["clicks"])] == ["clicks"]


@pytest.mark.parametrize(
    ("text", "names", "needle"),
    [
        (TOML.replace("settle_days", "setle_days"), (), "unknown key 'setle_days' (did you mean"),
        (TOML, ("nope",), "no dataset 'nope' (it holds: actions, clicks)"),
        (TOML.replace("settle_days = 3", "settle_days = -2"), (), "0 days or more"),
        (TOML.replace("first_day = 2026-06-08", 'first_day = "June"'), (), "first_day must be"),
        (TOML.replace("[datasets.actions]", "[dataset.actions]"), (), "unknown key 'dataset'"),
        ("reports = [", (), "not valid TOML"),
    ],
)
def test_toml_mistakes_are_one_clear_error(
    tmp_path: Path, text: str, names: tuple[str, ...], needle: str
) -> None:
    path = tmp_path / "datasets.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as raised:
        load_datasets(path, names)
    message = str(raised.value)
    assert needle in message
    assert str(path) in message
    assert "\n" not in message


# -- the rules, pure ----------------------------------------------------------------------------

POLICY = FreshnessPolicy(settle_days=3, refresh_hour=12)
LAST = date(2026, 6, 14)


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 6, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("end", "fetched", "replayed", "now", "kind"),
    [
        (11, at(14, 13), False, at(15, 13), "refresh"),  # fetched 3 days after: still settling
        (10, at(14, 1), False, at(15, 13), "final"),  # fetched 4 days after its end: settled
        (11, at(14, 13), True, at(15, 13), "fresh"),  # replayed today already
        (14, at(14, 13), False, at(15, 9), "deferred"),  # the latest day, before noon
        (14, at(14, 13), False, at(15, 12), "refresh"),  # from noon on
        (14, at(15, 1), False, at(15, 2), "deferred"),  # fetched today early: later today
        (14, at(15, 1), False, at(15, 13), "refresh"),  # ... and refreshed after noon, once
        (14, at(15, 13), False, at(15, 14), "fresh"),  # fetched today after noon
        (12, at(15, 1), False, at(15, 13), "fresh"),  # not the latest: fetched today is enough
    ],
)
def test_judging_a_fetched_chunk(
    end: int, fetched: datetime, replayed: bool, now: datetime, kind: str
) -> None:
    chunk = Chunk(date(2026, 6, end), date(2026, 6, end))
    verdict = judge_fetched(
        chunk, fetched_at=fetched, replayed_today=replayed, now=now, zone=UTC,
        last_day=LAST, policy=POLICY,
    )  # fmt: skip
    assert verdict.kind == kind, verdict


def test_judging_an_unfetched_chunk_and_reading_the_date_header() -> None:
    assert judge_unfetched(Chunk(date(2026, 6, 11), LAST), LAST, POLICY).kind == "new"
    assert judge_unfetched(Chunk(date(2026, 6, 10), date(2026, 6, 10)), LAST, POLICY).kind == (
        "history"
    )
    now = at(15, 12)
    seen = server_date({"Date": "Mon, 15 Jun 2026 12:00:10 GMT"})
    assert seen is not None
    assert corrected_offset(0.0, seen, now) == 10
    # An answer that agrees with the offset (the header's rounding) leaves it as it is.
    assert corrected_offset(10.5, seen, now) == 10.5
    assert corrected_offset(9.5, seen, now) == 10
    for headers in ({}, {"Date": "yesterday"}, {"Date": ""}):
        assert server_date(headers) is None
    assert account_day(at(15, 23), timezone(timedelta(hours=1))) == date(2026, 6, 16)
    with pytest.raises(ValueError, match="settle"):
        FreshnessPolicy(settle_days=-1)


# -- the command line ---------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from reportexport_async.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--config", "datasets.toml", "--dataset", "nope"], "no dataset 'nope'"),
        (["--config", "typo.toml"], "unknown key 'setle_days'"),
        (["--config", "datasets.toml", "--param", "A=1", "--format", "json"],
         "drop --param, --format"),
        (["mp_action_listing_fast", "--first-day", "2999-01-01"], "in the future"),
        (["mp_action_listing_fast", "--first-day", "2025-01-01", "--settle-days", "-1"],
         "0 days or more"),
    ],
)  # fmt: skip
def test_sync_command_bad_input_is_one_line_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("datasets.toml").write_text(TOML)
    Path("typo.toml").write_text(TOML.replace("settle_days", "setle_days"))
    code, out, err = run_cli(capsys, "sync", *args, "--sandbox", "--json")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert needle in lines[0], err
    assert not any(json.loads(line)["event"] == "sync" for line in out.splitlines())
    assert not Path("reportexport-out").exists()
    assert not Path("data").exists()


def test_sync_command_json_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    first = (datetime.now(UTC) - timedelta(days=5)).date()
    code, out, err = run_cli(capsys, "sync", "mp_action_listing_fast", "--first-day", str(first),
                             "--merge", "--sandbox", "--json")  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["exit_code"] == 0
    kinds = summary["counts"]
    assert kinds["new"] + kinds["history"] >= 4
    assert kinds["pending"] == 0
    assert summary["calls"]["ReportExport"] == kinds["new"] + kinds["history"]
    # What is left after the run's submits, not before them (the sandbox's quota is 100).
    assert summary["quota_left"] == 100 - summary["calls"]["ReportExport"]
    dataset = next(e for e in events if e["event"] == "dataset")
    assert dataset["merged"] == ["reportexport-out/mp_action_listing_fast.csv"]
    assert {e["status"] for e in events if e["event"] == "sync"} <= {"new", "history"}
