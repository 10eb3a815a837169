"""Trust under ordinary mistakes and failures: the quota is charged only for what the server
counts, account-wide failures stop a run at once, a daily-quota 429 is recognised in any time
zone, nothing waits in silence, and a job the server forgot costs one chunk a new submit, never
the run.

Each case is a real run against the sandbox over loopback: the command line in process (`main`)
against a sandbox in a background thread with real time, or the Python API against a sandbox on a
manual clock (simulated hours in milliseconds). Each asserts the outcome, the message, the time it
took, and the ledger's quota count against the server's own (`stats()`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportexport_async import AccountUnavailable
from reportexport_async.cli import main
from reportexport_async.jobs.orchestrator import ExportSpec, ProgressEvent, backfill
from reportexport_async.sandbox.clock import ScaledClock as SandboxScaledClock
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .conftest import simulated_account

REPORT = "mp_action_listing_fast"
TODAY = datetime.now(UTC).date()
# Settled days well in the past: one-day chunks.
START = TODAY - timedelta(days=40)
ENV_VARS = ("IMPACT_ACCOUNT_SID", "IMPACT_AUTH_TOKEN", "IMPACT_ACCOUNT_TYPE", "IMPACT_BASE_URL")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the default ledger's folder


def days(n: int) -> list[str]:
    return ["--start", str(START), "--end", str(START + timedelta(days=n - 1)), "--chunk", "1d"]


def use_account(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxThread, **env: str) -> None:
    values = {
        "IMPACT_ACCOUNT_SID": sandbox.account_sid,
        "IMPACT_AUTH_TOKEN": sandbox.auth_token,
        "IMPACT_ACCOUNT_TYPE": "Mediapartners",
        "IMPACT_BASE_URL": sandbox.base_url,
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def real_time_sandbox(factory: Callable[..., SandboxThread], **options: Any) -> SandboxThread:
    """A sandbox on the wall clock (the command line's client uses the wall clock too), whose
    jobs take a second or two."""
    options.setdefault("job_duration", (0.5, 1.5))
    options.setdefault("rows_per_day", 5)
    return factory(clock=SandboxScaledClock(start=datetime.now(UTC), scale=1), **options)


def ledger_charged(path: Path = Path("data/reportexport/ledger.sqlite")) -> int:
    """ReportExport units the ledger counts, over every day and account."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT SUM(used) FROM quota_use WHERE name = 'ReportExport'").fetchone()
    return int(row[0] or 0)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


# -- a wrong token ------------------------------------------------------------------------------


def test_wrong_token_costs_one_call_charges_nothing_and_leaves_the_day_whole(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = real_time_sandbox(impact_sandbox_factory)
    use_account(monkeypatch, sandbox, IMPACT_AUTH_TOKEN="wrong-token-0123456789")
    code, out, err, took = run_cli(capsys, "backfill", REPORT, *days(13))
    line = one_line(err)
    stats = sandbox.stats()
    assert code == 2, err
    assert "credentials" in line
    assert "401" in line
    assert "run the same command again" in line
    assert "wrong-token-0123456789" not in out + err
    assert took < 15
    assert stats["total_calls"] <= 1
    assert stats["quota"]["ReportExport"] == 0
    assert ledger_charged() == 0  # the server counted nothing, nor does the ledger
    manifest = json.loads(Path("reportexport-out/manifest.json").read_text())
    assert "credentials" in manifest["stopped"]
    first = (code, took, stats["total_calls"], ledger_charged(), stats["quota"]["ReportExport"])
    # The right token: the whole day's quota is there, and the run finishes.
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", sandbox.auth_token)
    code, out, err, _ = run_cli(capsys, "backfill", REPORT, *days(13), "--json")
    assert code == 0, err
    plan = next(e for e in map(json.loads, out.splitlines()) if e["event"] == "plan")
    assert plan["plan"]["cost"]["quota_left_today"] == 100
    stats = sandbox.stats()
    assert stats["quota"]["ReportExport"] == 13 == ledger_charged()
    # A wrong token again, on a report the ledger knows (no probe needed): still one call.
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", "wrong-token-0123456789")
    later = ["--start", str(START + timedelta(days=20)), "--end", str(START + timedelta(days=32))]
    code, _, err, _ = run_cli(capsys, "backfill", REPORT, *later, "--chunk", "1d")
    assert code == 2, err
    assert sandbox.stats()["total_calls"] == stats["total_calls"] + 1
    assert ledger_charged() == 13
    print(
        f"\ntrust: wrong token over 13 chunks: exit {first[0]} in {first[1]:.1f} s, API calls "
        f"{first[2]}, ledger charged {first[3]}, server counted {first[4]}; then the right "
        f"token: quota left 100, 13 submitted; a wrong token again: 1 call, 0 charged"
    )


# -- a dead server, then the server back ---------------------------------------------------------


class Forwarder:
    """A TCP forwarder on a fixed loopback port in front of the sandbox: `stop()` closes the port
    and every connection (a stopped server: connections refused), `start()` opens it again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def forwarder_factory() -> Iterator[Callable[[int], Forwarder]]:
    made: list[Forwarder] = []

    def make(port: int) -> Forwarder:
        made.append(Forwarder(port))
        return made[-1]

    yield make
    for forwarder in made:
        forwarder.close()


def test_a_port_nobody_listens_on_stops_at_once_and_charges_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    monkeypatch.setenv("IMPACT_ACCOUNT_SID", "IRdead")
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", "token")
    monkeypatch.setenv("IMPACT_ACCOUNT_TYPE", "Mediapartners")
    monkeypatch.setenv("IMPACT_BASE_URL", f"http://127.0.0.1:{port}")
    code, _, err, took = run_cli(capsys, "backfill", REPORT, *days(5))
    line = one_line(err)
    assert code == 1, err
    assert "cannot be reached" in line
    assert "no further chunk was tried" in line
    assert took < 30
    assert ledger_charged() == 0
    print(
        f"\ntrust: a port nobody listens on, 5 chunks: exit {code} in {took:.1f} s, "
        f"ledger charged {ledger_charged()}"
    )
    assert json.loads(Path("reportexport-out/manifest.json").read_text())["stopped"]


def test_a_server_stopped_mid_run_ends_the_run_and_the_next_run_finishes_without_duplicates(
    impact_sandbox_factory: Callable[..., SandboxThread],
    forwarder_factory: Callable[[int], Forwarder],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = real_time_sandbox(impact_sandbox_factory, job_duration=(2, 4))
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    forwarder = forwarder_factory(port)
    forwarder.start()
    use_account(monkeypatch, sandbox, IMPACT_BASE_URL=f"http://127.0.0.1:{forwarder.port}")

    def stop_after_three_submits() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sandbox.stats()["calls"]["ReportExport"] < 3:
            time.sleep(0.02)
        forwarder.stop()

    killer = threading.Thread(target=stop_after_three_submits)
    killer.start()
    code, _, err, took = run_cli(capsys, "backfill", REPORT, *days(40), "--concurrency", "1")
    killer.join()
    line = one_line(err)
    assert code == 1, err
    assert "cannot be reached" in line or "every call has failed" in line
    assert took < 45
    stats = sandbox.stats()
    assert stats["calls"]["ReportExport"] < 40
    assert ledger_charged() >= stats["quota"]["ReportExport"]  # a call cut mid-flight may count
    first = (code, took, stats["calls"]["ReportExport"], ledger_charged())
    # The server back: the next run finishes, and no chunk was ever submitted twice.
    forwarder.start()
    code, _, err, _ = run_cli(capsys, "backfill", REPORT, *days(40))
    assert code == 0, err
    stats = sandbox.stats()
    assert stats["jobs_created"] == 40
    manifest = json.loads(Path("reportexport-out/manifest.json").read_text())
    assert manifest["stopped"] is None
    assert manifest["counts"] == {"done": 40}
    print(
        f"\ntrust: server stopped mid-run, 40 chunks: exit {first[0]} in {first[1]:.1f} s after "
        f"{first[2]} submits (ledger charged {first[3]}); with the server back: exit {code}, "
        f"jobs created {stats['jobs_created']} for 40 chunks, server counted "
        f"{stats['quota']['ReportExport']}, ledger charged {ledger_charged()}"
    )


# -- a daily quota whose day does not start at UTC midnight ---------------------------------------


def _offset_far_from_reset(now: datetime) -> int:
    """A UTC offset (whole hours, not 0: a zone learned from a reset must be one real zones use)
    in whose day `now` is mid-morning: the daily reset is hours away and not at UTC midnight.
    Never -12:00 or +12:00: their midnights are the same instant (noon UTC), so a reset cannot
    tell them apart (the client takes +12:00, where people live)."""
    for local_hour in (10, 16, 4):
        minutes = (local_hour * 60 - (now.hour * 60 + now.minute)) // 60 * 60
        minutes = (minutes + 720) % 1440 - 720
        if 120 <= abs(minutes) < 720:
            return minutes
    raise AssertionError("unreachable")


async def test_a_daily_429_in_any_time_zone_ends_the_run_pending_and_teaches_the_zone(
    tmp_path: Path,
) -> None:
    offset = -480
    async with simulated_account(
        tmp_path, utc_offset_minutes=offset, daily_export_limit=3, daily_limit=100
    ) as (sandbox, client, ledger):
        # The sandbox starts at 12:00 UTC, 04:00 in the account's day: its quota resets at
        # 08:00 UTC tomorrow, 20 hours away, not at UTC midnight.
        specs = [ExportSpec(REPORT)]
        started = time.monotonic()
        first = await backfill(
            client, ledger, specs, date(2026, 5, 1), date(2026, 5, 6), out_dir=tmp_path / "out",
            chunk="1d",
        )  # fmt: skip
        assert time.monotonic() - started < 10
        stats = sandbox.stats()
        assert first.counts["done"] == 3
        assert first.counts["pending"] == 3
        reset = first.pending_resets_at
        assert reset is not None
        assert reset.astimezone(UTC).hour == 8  # the server's reset, not UTC midnight
        assert stats["quota"]["ReportExport"] == 3
        assert await ledger.counters.quota_zone(client.limiter.account or "") == offset
        account = client.limiter.account or ""
        today = sandbox.now().astimezone(client.limiter.timezone).date()
        assert await ledger.counters.used("ReportExport", today, account) == 3  # the server's count
        assert await ledger.counters.spent("ReportExport", today, account)
        # The same again: nothing is tried, the reset is known.
        second = await backfill(
            client, ledger, specs, date(2026, 5, 1), date(2026, 5, 6), out_dir=tmp_path / "out",
            chunk="1d",
        )  # fmt: skip
        assert sandbox.stats()["calls"]["ReportExport"] == stats["calls"]["ReportExport"]
        assert second.counts["pending"] == 3
        assert second.pending_resets_at == reset
        # After the server's reset (08:00 UTC), the rest goes through.
        sandbox.advance((reset - sandbox.now()).total_seconds() + 60)
        third = await backfill(
            client, ledger, specs, date(2026, 5, 1), date(2026, 5, 6), out_dir=tmp_path / "out",
            chunk="1d",
        )  # fmt: skip
        assert third.complete, third.counts
        assert sandbox.stats()["quota"]["ReportExport"] == 3


def test_a_non_utc_account_exits_3_at_once_on_both_runs(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    offset = _offset_far_from_reset(datetime.now(UTC))
    sandbox = real_time_sandbox(
        impact_sandbox_factory, utc_offset_minutes=offset, daily_export_limit=3
    )
    use_account(monkeypatch, sandbox)
    for attempt in range(2):
        code, out, err, took = run_cli(capsys, "backfill", REPORT, *days(6))
        assert code == 3, err
        assert took < 20, f"run {attempt + 1} took {took:.1f} s"
        assert "3 chunks wait for the daily ReportExport quota" in out
    stats = sandbox.stats()
    assert stats["quota"]["ReportExport"] == 3
    assert stats["calls"]["ReportExport"] <= 3 + 4  # at most one refusal per submitter
    with sqlite3.connect("data/reportexport/ledger.sqlite") as db:
        (learned,) = db.execute("SELECT utc_offset_minutes FROM quota_zone").fetchone()
    assert learned == offset
    print(
        f"\ntrust: a UTC{offset / 60:+g} account, daily limit 3, 6 chunks: exit 3 twice, the "
        f"second run in {took:.1f} s; ReportExport calls {stats['calls']['ReportExport']}, "
        f"server counted {stats['quota']['ReportExport']}, zone learned {learned} min"
    )


# -- failed jobs: deferred, never a silent hour ---------------------------------------------------


def test_failed_jobs_end_the_run_deferred_with_the_time_exit_4(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = real_time_sandbox(impact_sandbox_factory, faults={"job_fail": 1.0})
    use_account(monkeypatch, sandbox)
    code, out, err, took = run_cli(capsys, "backfill", REPORT, *days(3))
    assert code == 4, out + err
    assert took < 20
    assert "3 chunks are deferred" in out
    assert "--wait-for-replays" in out
    manifest = json.loads(Path("reportexport-out/manifest.json").read_text())
    for chunk in manifest["chunks"]:
        assert chunk["status"] == "deferred"
        assert chunk["until"] is not None
        assert "a replay is allowed from" in chunk["error"]
    assert sandbox.stats()["quota"]["ReportExport"] == 3 == ledger_charged()
    print(f"\ntrust: every job failing, 3 chunks: exit {code} (deferred) in {took:.1f} s")


async def test_deferred_chunks_are_replayed_by_the_next_run_after_their_time(
    tmp_path: Path,
) -> None:
    async with simulated_account(tmp_path, faults={"job_fail": 1.0}) as (sandbox, client, ledger):
        args = ([ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 3))
        first = await backfill(client, ledger, *args, out_dir=tmp_path / "out", chunk="1d")
        assert first.counts["deferred"] == 3
        assert first.deferred_until is not None
        assert sandbox.stats()["replays"] == 0
        sandbox.set_faults({})
        sandbox.advance((first.deferred_until - sandbox.now()).total_seconds() + 1)
        second = await backfill(client, ledger, *args, out_dir=tmp_path / "out", chunk="1d")
        stats = sandbox.stats()
    assert second.complete, second.counts
    assert stats["replays"] == 3
    assert stats["jobs_created"] == 3  # replayed, never submitted again


# -- a job the server no longer knows -------------------------------------------------------------


async def test_a_job_the_server_forgot_is_submitted_again_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        args = ([ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 4))
        first = await backfill(client, ledger, *args, out_dir=out, chunk="1d")
        assert first.complete
        forgotten = first.chunks[1]
        sandbox.reset()  # the server forgets every job
        # One file is lost too: its job must be found again to download it.
        (out / forgotten.planned.path).unlink()
        second = await backfill(client, ledger, *args, out_dir=out, chunk="1d")
        stats = sandbox.stats()
        history = await ledger.history(forgotten.planned.fingerprint)
    assert second.complete, second.counts
    assert stats["calls"]["ReportExport"] == 1  # only the chunk whose file was lost
    assert stats["jobs_created"] == 1
    assert any(event.kind == "job_unknown" for event in history)
    print(
        f"\ntrust: jobs the server forgot, 4 chunks, one file lost: rerun {second.counts}, "
        f"ReportExport calls {stats['calls']['ReportExport']}"
    )


async def test_a_job_in_flight_the_server_forgot_is_submitted_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with simulated_account(tmp_path, faults={"job_stuck": 1.0}) as (sandbox, client, ledger):
        args = ([ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 2))
        first = await backfill(
            client, ledger, *args, out_dir=out, chunk="1d", stuck_after=timedelta(minutes=30)
        )
        assert first.counts["stuck"] == 2
        sandbox.reset()
        sandbox.set_faults({})
        second = await backfill(client, ledger, *args, out_dir=out, chunk="1d")
    assert second.complete, second.counts


# -- every call failing: stopped after the bound ---------------------------------------------------


async def test_an_outage_stops_the_run_after_the_bound_with_the_manifest_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    events: list[ProgressEvent] = []
    async with simulated_account(tmp_path, faults={"http_5xx": 1.0}) as (sandbox, client, ledger):
        started = sandbox.now()
        with pytest.raises(AccountUnavailable) as raised:
            await backfill(
                client, ledger, [ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 10),
                out_dir=out, chunk="1d", on_event=events.append,
            )  # fmt: skip
        waited = (sandbox.now() - started).total_seconds()
        stats = sandbox.stats()
    error = raised.value
    assert error.problem == "outage"
    assert "every call has failed" in str(error)
    limit = client.config.retry.outage_limit
    # Stopped once the next attempt would come after the bound: within it, never far before.
    assert limit / 2 <= waited <= limit, waited
    assert stats["jobs_created"] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "every call has failed" in manifest["stopped"]
    assert error.result is not None
    assert [e.kind for e in events].count("stopped") == 1
    print(
        f"\ntrust: every call answered 5xx, 10 chunks: stopped after {waited:.0f} s of client "
        f"time (outage limit {limit:.0f} s), jobs created {stats['jobs_created']}"
    )


# -- waits are announced ---------------------------------------------------------------------------


async def test_jobs_in_flight_for_long_are_announced_with_the_next_look(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    async with simulated_account(tmp_path, faults={"job_stuck": 1.0}) as (sandbox, client, ledger):
        started = sandbox.now()
        await backfill(
            client, ledger, [ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 2),
            out_dir=tmp_path / "out", chunk="1d", stuck_after=timedelta(hours=1),
            on_event=events.append,
        )  # fmt: skip
        lasted = (sandbox.now() - started).total_seconds()
    waits = [e for e in events if e.kind == "wait"]
    assert waits, [e.kind for e in events]
    assert all("jobs in flight" in (e.message or "") and e.until is not None for e in waits)
    # At most one every five minutes of the run's clock, and at least one per ten.
    assert len(waits) <= lasted / 300 + 1
    assert len(waits) >= lasted / 600 - 1


async def test_a_wait_for_the_hourly_limit_is_announced_with_its_end(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    async with simulated_account(tmp_path, hourly_limit=30) as (sandbox, client, ledger):
        await backfill(
            client, ledger, [ExportSpec(REPORT)], date(2026, 5, 1), date(2026, 5, 20),
            out_dir=tmp_path / "out", chunk="1d", on_event=events.append,
        )  # fmt: skip
        stats = sandbox.stats()
    waits = [e for e in events if e.kind == "wait" and "hourly API limit" in (e.message or "")]
    assert waits
    assert all(e.until is not None for e in waits)
    assert stats["rate_limited"] == 0 or all(e.until for e in waits)


async def test_one_export_whose_job_the_server_forgot_is_submitted_again(tmp_path: Path) -> None:
    from reportexport_async import ExportRequest
    from reportexport_async.jobs.exports import fetch_export

    request = ExportRequest(report_id=REPORT, start=date(2026, 5, 1), end=date(2026, 5, 3))
    dest = tmp_path / "actions.csv"
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        first = await fetch_export(client, ledger, request, dest)
        sandbox.reset()
        dest.unlink()  # the file must come from the server again
        second = await fetch_export(client, ledger, request, dest)
        stats = sandbox.stats()
        history = [event.kind for event in await ledger.history(first.fingerprint)]
    assert second.submitted
    assert stats["jobs_created"] == 1
    assert dest.stat().st_size == second.size
    assert "job_unknown" in history


def test_an_outage_on_the_command_line_stops_after_outage_limit(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = real_time_sandbox(impact_sandbox_factory, faults={"http_5xx": 1.0})
    use_account(monkeypatch, sandbox)
    code, _, err, took = run_cli(capsys, "backfill", REPORT, *days(5), "--outage-limit", "3")
    line = one_line(err)
    assert code == 1, err
    assert "every call has failed" in line
    assert took < 20
    assert sandbox.stats()["jobs_created"] == 0


@pytest.mark.parametrize("kind", ["ledger", "memory"])
async def test_quota_stores_refund_mark_spent_and_learn_the_zone(tmp_path: Path, kind: str) -> None:
    from reportexport_async.ledger import Ledger
    from reportexport_async.transport.ratelimit import MemoryQuotaStore, QuotaStore

    day = date(2026, 6, 15)
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        store: QuotaStore = ledger.counters if kind == "ledger" else MemoryQuotaStore()
        assert await store.charge("ReportExport", day, 3, "acct") == 1
        assert await store.charge("ReportExport", day, 3, "acct") == 2
        await store.refund("ReportExport", day, "acct")
        assert await store.used("ReportExport", day, "acct") == 1
        await store.refund("ReportExport", day, "acct")
        await store.refund("ReportExport", day, "acct")  # never below zero
        assert await store.used("ReportExport", day, "acct") == 0
        await store.exhaust("ReportExport", day, 3, "acct")
        assert await store.spent("ReportExport", day, "acct")
        assert await store.used("ReportExport", day, "acct") == 0  # the server's count stays
        assert await store.charge("ReportExport", day, 3, "acct") is None
        assert not await store.spent("ReportExport", day, "other")
        assert await store.quota_zone("acct") is None
        await store.learn_quota_zone(-480, "acct")
        assert await store.quota_zone("acct") == -480
        assert await store.quota_zone("other") is None
