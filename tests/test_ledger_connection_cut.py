"""A worker cut from its PostgreSQL ledger while it holds leases, and reconnected later: through a
TCP proxy on loopback (`tests/tcp_proxy.py`) that resets every connection of that worker and
refuses new ones, while a second worker, connected directly, works on. Both run in this process
against one sandbox on scaled time (60 sandbox seconds a real second; jobs of 600 sandbox
seconds).

- cut for less than a lease: the second worker leaves the chunks alone (their leases still run),
  the first one reconnects and finishes them;
- cut for longer than a lease: the second worker takes every chunk over by its job id (no second
  submit) and downloads it; the first one, reconnected, finds them done and fetches nothing again.

Either way: one job per chunk, each file downloaded once, every chunk on disk as the manifest
says."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from reportexport_async import Client
from reportexport_async.ledger.postgres import PostgresLedger
from reportexport_async.machine.clock import ScaledClock
from reportexport_async.sandbox import Sandbox
from reportexport_async.sandbox.clock import ScaledClock as SandboxClock

from .conftest import SANDBOX_START
from .postgres_server import PostgresServer
from .tcp_proxy import TcpProxy
from .test_reliability import assert_manifest_matches_disk

#: Six simulated days at 60 times, about 12 s a case: with the other slow tests (`-m slow`).
pytestmark = pytest.mark.slow

SCALE = 60.0
DAYS = 6
START = date(2025, 1, 1)
REPORT = "mp_action_listing_fast"


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 120.0) -> None:
    """Wait (real time) until `condition` holds; fail naming `what` if it never does."""
    with anyio.fail_after(within):
        while not await condition():  # noqa: ASYNC110 - the sandbox and the ledger have no event to wait on
            await anyio.sleep(0.05)
    assert await condition(), what


@pytest.mark.parametrize("cut", ["shorter", "longer"])
async def test_a_worker_cut_from_postgresql_while_holding_leases_loses_nothing_and_costs_nothing(
    tmp_path: Path,
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    cut: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="reportexport_async.ledger")
    url = postgres_server.create_database(f"cut_{cut}")
    # Sandbox time: a lease of 30 real seconds against a cut of one, or of one real second
    # against a cut that lasts until the other worker has done everything.
    lease = timedelta(minutes=30) if cut == "shorter" else timedelta(minutes=1)
    out = tmp_path / "out"
    results: dict[str, Any] = {}
    async with (
        Sandbox(clock=SandboxClock(SANDBOX_START, scale=SCALE), job_duration=(600, 600)) as sandbox,
        TcpProxy("127.0.0.1", postgres_server.port) as proxy,
    ):

        def ledger(spec: str) -> PostgresLedger:
            clock = ScaledClock(start=sandbox.now(), scale=SCALE)
            return PostgresLedger(spec, clock=clock, lease=lease, reconnect_for=300)

        def calls(name: str) -> int:
            return int(sandbox.stats()["calls"].get(name, 0))

        async def done() -> bool:
            return calls("Download") == DAYS

        async def worker(name: str, store: PostgresLedger) -> None:
            async with store, Client.for_sandbox(sandbox, ledger=store) as client:
                results[name] = await client.backfill(
                    REPORT, START, START + timedelta(days=DAYS - 1), out=out, chunk="1d"
                )

        first, second = ledger(proxy.url(url)), ledger(url)
        async with PostgresLedger(url):  # the tables made, for the observer to read at once
            pass
        async with PostgresLedger(url, read_only=True) as observer:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker, "first", first)

                async def submitted() -> bool:  # every job id recorded, every chunk leased
                    found = await observer.entries()
                    mine = [e for e in found if e.claimed_by == first.owner and e.job_id]
                    return len(mine) == DAYS

                await until(submitted, "the first worker submits and records every chunk")
                held = await observer.entries()
                assert calls("Download") == 0
                await proxy.cut()
                before = proxy.accepted
                tg.start_soon(worker, "second", second)
                if cut == "shorter":
                    await anyio.sleep(1.0)  # real time: a thirtieth of the lease
                else:
                    await until(done, "the second worker downloads every chunk")
                await proxy.restore()
            history = {e.fingerprint: await observer.history(e.fingerprint) for e in held}
        stats = sandbox.stats()
    assert proxy.accepted > before  # the first worker had to reconnect
    assert "unreachable" in caplog.text
    for name in ("first", "second"):
        assert results[name].complete, name
        assert results[name].counts["done"] == DAYS
    assert stats["jobs_created"] == DAYS
    assert stats["calls"]["ReportExport"] == DAYS  # nothing submitted twice
    assert stats["calls"]["Download"] == DAYS  # nothing fetched twice
    downloads = [e for events in history.values() for e in events if e.kind == "download"]
    assert len(downloads) == DAYS
    taken = [e for events in history.values() for e in events if e.kind == "lease"]
    if cut == "shorter":
        assert taken == []  # the leases still ran: nobody touched the first worker's chunks
    else:
        assert sorted(e.fingerprint for e in taken) == sorted(history)
        assert {e.detail["took_over"] for e in taken} == {first.owner}
        assert {e.detail["owner"] for e in taken} == {second.owner}
    manifest = json.loads((out / "manifest.json").read_text())
    assert assert_manifest_matches_disk(manifest) == DAYS
