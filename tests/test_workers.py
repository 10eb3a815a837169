"""Several workers on one account: 8 backfill processes (`tests/backfill_child.py`) started at once
on one ledger and one output folder, against one sandbox process on scaled time (600 sandbox
seconds a second, jobs of 0-60 sandbox seconds).

- with the SQLite ledger (one host): every process exits 0 and every file is downloaded once;
- with a PostgreSQL ledger (the server the test session starts): the same, with the limits
  counted in the database;
- with PostgreSQL, 3 of the 8 workers SIGKILLed at seeded moments and the database server
  restarted once mid-run: the survivors finish every chunk, still one job per chunk.

Every run is checked on the server's side: jobs created, ReportExport and Download calls, 429s,
the most calls seen in one hour and the day's ReportExport count.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from .postgres_server import PostgresServer
from .test_reliability import assert_manifest_matches_disk, sandbox_command, sandbox_stats

#: Eight processes at a time, for 10 to 30 s each: a step of their own in CI (`-m slow`).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
WORKERS = 8
REPORTS = [["mp_action_listing_fast", {}], ["mp_performance_by_day", {}]]
DAYS = 200  # two reports x 200 one-day chunks = 400 chunks
CHUNKS = len(REPORTS) * DAYS
START = date(2025, 1, 1)
SCALE = 600.0
HOURLY_LIMIT = 1000
#: The quota raised to fit 400 chunks in one day (on both sides).
DAILY_LIMIT = 500
LEASE_SECONDS = 1800.0  # sandbox seconds: a dead worker's chunks are free 3 s (real) after it died


@contextmanager
def sandbox_process(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with sandbox_command(
        tmp_path, "--time-scale", str(SCALE), "--job-duration", "0-60", "--rows-per-day", "2",
        "--seed", "15", "--signed-url-ttl", "36000", "--hourly-limit", str(HOURLY_LIMIT),
        "--daily-export-limit", str(DAILY_LIMIT),
    ) as info:  # fmt: skip
        yield info


def start_worker(
    info: dict[str, Any], ledger: str, out: Path, number: int, skew: float = 0.0
) -> subprocess.Popen[str]:
    payload = {
        "base_url": info["base_url"],
        "account_sid": info["account_sid"],
        "auth_token": info["auth_token"],
        "time_scale": SCALE,
        "ledger": ledger,
        "out": str(out),
        "start": START.isoformat(),
        "end": (START + timedelta(days=DAYS - 1)).isoformat(),
        "reports": REPORTS,
        "chunk": "1d",
        "daily_limit": DAILY_LIMIT,
        "lease_seconds": LEASE_SECONDS,
        "clock_skew": skew,
    }
    env = {k: v for k, v in os.environ.items() if k != "BACKFILL_CHILD_KILL"}
    stderr = open(out.parent / f"worker{number}.stderr", "w")  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(
            [PY, "-m", "tests.backfill_child", json.dumps(payload)],
            stdout=subprocess.PIPE, stderr=stderr, cwd=REPO, env=env, text=True,
        )  # fmt: skip
    finally:
        stderr.close()


def run_workers(
    tmp_path: Path,
    ledger: str,
    *,
    kills: dict[int, int] | None = None,
    restart: tuple[PostgresServer, int] | None = None,
    workers: int = WORKERS,
    skews: list[float] | None = None,
) -> dict[str, Any]:
    """8 workers at once; `kills` maps a worker to the moment it is SIGKILLed at, `restart`
    restarts the database server at a moment; a moment is a count of files downloaded (server
    side), so it falls mid-run however fast the machine is. Returns what was seen."""
    out = tmp_path / "out"
    out.mkdir()
    kills = kills or {}
    with sandbox_process(tmp_path) as info:
        started = time.monotonic()
        sandbox_start = sandbox_stats(info)["now"]
        skews = skews or [0.0] * workers
        processes = [start_worker(info, ledger, out, n, skews[n]) for n in range(workers)]
        moments = sorted(
            [(at, "kill", n) for n, at in kills.items()]
            + ([(restart[1], "restart", -1)] if restart else [])
        )
        for at, what, number in moments:
            deadline = time.monotonic() + 120
            while sandbox_stats(info)["calls"]["Download"] < at and time.monotonic() < deadline:
                time.sleep(0.05)
            if what == "kill":
                processes[number].kill()
            elif restart is not None:
                restart[0].restart()
        codes, finals = [], {}
        for number, worker in enumerate(processes):
            output, _ = worker.communicate(timeout=300)
            codes.append(worker.returncode)
            if worker.returncode == 0:
                finals[number] = json.loads(output.strip().splitlines()[-1])
        stats = sandbox_stats(info)
        stats["started"] = sandbox_start
    manifest = json.loads((out / "manifest.json").read_text())

    def stderr_of(number: int, tail: int = 3000) -> str:
        return (tmp_path / f"worker{number}.stderr").read_text()[-tail:]

    return {
        "codes": codes,
        "finals": finals,
        "stats": stats,
        "manifest": manifest,
        "out": out,
        "seconds": time.monotonic() - started,
        "stderr": stderr_of,
    }


def assert_limits_kept(stats: dict[str, Any]) -> None:
    assert stats["rate_limited"] == 0, stats["rate_limited_by"]
    assert stats["hourly"]["max_used"] <= HOURLY_LIMIT
    assert stats["quota"]["ReportExport"] <= DAILY_LIMIT
    assert stats["jobs_created"] == CHUNKS


def assert_every_chunk_done_once(seen: dict[str, Any], survivors: list[int]) -> None:
    for number in survivors:
        assert seen["codes"][number] == 0, seen["stderr"](number)
        assert seen["finals"][number]["counts"]["done"] == CHUNKS
    assert assert_manifest_matches_disk(seen["manifest"]) == CHUNKS
    assert not list(seen["out"].rglob("*.part"))


def test_eight_processes_on_one_sqlite_ledger_and_folder(tmp_path: Path) -> None:
    """One host, one SQLite ledger, one folder: all 8 exit 0, each file downloaded once."""
    seen = run_workers(tmp_path, str(tmp_path / "ledger.sqlite"))
    stats = seen["stats"]
    print(f"\n8 workers, SQLite: {seen['seconds']:.1f} s, calls {stats['calls']}")
    assert_every_chunk_done_once(seen, list(range(WORKERS)))
    assert_limits_kept(stats)
    assert stats["calls"]["ReportExport"] == CHUNKS
    assert stats["calls"]["Download"] <= CHUNKS * 1.10
    # The work was shared: more than one worker downloaded files.
    downloads = [f["calls"].get("Download", 0) for f in seen["finals"].values()]
    assert sum(downloads) == stats["calls"]["Download"]
    assert sum(1 for n in downloads if n) > 1


@pytest.mark.parametrize(
    ("spread", "downloads"), [(0.0, 1.10), (300.0, 1.05)], ids=["same-clock", "clocks-5-min-apart"]
)
def test_eight_workers_on_one_postgresql_ledger(
    tmp_path: Path, postgres_server: PostgresServer, spread: float, downloads: float
) -> None:
    """Also with each worker's own clock off the server's by -150 s to +150 s (`spread`
    between the first and the last): every lease, stamp and quota day is on the server's clock
    as its answers show it, so still one job per chunk and each downloaded at most 1.05 times."""
    url = postgres_server.create_database(f"workers{spread:.0f}")
    skews = [spread * (n / (WORKERS - 1) - 0.5) for n in range(WORKERS)]
    seen = run_workers(tmp_path, url, skews=skews)
    stats = seen["stats"]
    print(f"\n8 workers, PostgreSQL, clocks {spread:.0f} s apart: {seen['seconds']:.1f} s, "
          f"calls {stats['calls']}")  # fmt: skip
    assert_every_chunk_done_once(seen, list(range(WORKERS)))
    assert_limits_kept(stats)
    assert stats["calls"]["ReportExport"] == CHUNKS
    assert stats["calls"]["Download"] <= CHUNKS * downloads


def test_three_workers_killed_and_the_database_restarted(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """3 of 8 workers SIGKILLed at seeded moments, the PostgreSQL server restarted once: the
    survivors take the dead workers' chunks over by job id and finish everything."""
    rng = random.Random(15)
    victims = rng.sample(range(WORKERS), 3)
    kills = {n: rng.randint(20, 250) for n in victims}  # after that many files
    url = postgres_server.create_database("workers_killed")
    seen = run_workers(tmp_path, url, kills=kills, restart=(postgres_server, 150))
    stats = seen["stats"]
    print(
        f"\nkilled {kills} (after n files), server restarted after 150 files: "
        f"{seen['seconds']:.1f} s, calls {stats['calls']}"
    )
    for number in victims:
        assert seen["codes"][number] == -9, f"worker {number} finished before its kill"
    survivors = [n for n in range(WORKERS) if n not in victims]
    assert_every_chunk_done_once(seen, survivors)
    assert_limits_kept(stats)
    # A worker killed between a submit's answer and its record costs a second ReportExport
    # call, answered by the service's de-duplication with the same job: still 400 jobs.
    assert CHUNKS <= stats["calls"]["ReportExport"] <= CHUNKS + 3 * 4
    # The restart was seen, and waited out, by the survivors.
    assert "unreachable" in "".join(seen["stderr"](n, 10**9) for n in survivors)


async def test_two_workers_with_folders_of_their_own_share_the_chunks(tmp_path: Path) -> None:
    """Two workers (two clients, two ledger objects) on one ledger, each writing to its own
    folder: every chunk is downloaded once, and each manifest says where every file is, in its
    own folder or the other's."""
    import anyio

    from reportexport_async import Client
    from reportexport_async.ledger import Ledger
    from reportexport_async.sandbox import ManualClock, Sandbox

    from .conftest import SANDBOX_START

    days = 12
    async with Sandbox(clock=ManualClock(SANDBOX_START), job_duration=(30, 300)) as sandbox:
        results = {}

        opened: list[str] = []
        both_open = anyio.Event()

        async def worker(name: str) -> None:
            # The two share one manual clock, which each one's sleeps move forward: a lease
            # longer than the run, so that neither outlives the other's lease while it sleeps
            # (on a real clock a worker renews its leases every third of one).
            async with (
                Ledger(tmp_path / "ledger.sqlite", lease=timedelta(hours=6)) as ledger,
                Client.for_sandbox(sandbox, ledger=ledger) as client,
            ):
                # Both plan together: a worker that plans after the other recorded a file in
                # its own folder downloads that file again into its own (a file recorded before
                # a run's plan is this run's to check, and it is not in this run's folder).
                opened.append(name)
                if len(opened) == 2:
                    both_open.set()
                await both_open.wait()
                results[name] = await client.backfill(
                    "mp_action_listing_fast", START, START + timedelta(days=days - 1),
                    out=tmp_path / name, chunk="1d",
                )  # fmt: skip

        async with anyio.create_task_group() as group:
            group.start_soon(worker, "a")
            group.start_soon(worker, "b")
        stats = sandbox.stats()
    assert stats["calls"]["ReportExport"] == days
    # One download per chunk; the two workers share one manual clock that each one's sleeps
    # move forward, so a signed URL may expire before the other worker fetches it: each such
    # URL costs one more Download call (a new URL), never a second file.
    assert stats["calls"]["Download"] == days + stats["signed_urls_expired"]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        recorded = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'download'").fetchone()
    assert recorded == (days,)
    for name in ("a", "b"):
        assert results[name].complete
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert assert_manifest_matches_disk(manifest) == days
    where = {
        name: [
            (tmp_path / name / chunk["path"]).resolve().parent.parent.name
            for chunk in json.loads((tmp_path / name / "manifest.json").read_text())["chunks"]
        ]
        for name in ("a", "b")
    }
    # Which worker takes which chunk is a race; whatever the split, each chunk's file is in one
    # folder only, and at least one manifest points into the other worker's folder.
    assert where["a"] == where["b"]
    assert any(folder != name for name in ("a", "b") for folder in where[name])


async def test_a_worker_held_by_the_hourly_limit_keeps_renewing_its_leases(
    tmp_path: Path,
) -> None:
    """While the limiter holds every task of a run for the hourly bucket (an hour at most), no
    submit, tick or download renews the run's leases; they are renewed through the wait all the
    same, every third of a lease, so another worker never takes a live worker's chunks (and
    downloads them a second time). Checked on the renewals themselves: between two of them, and
    from the start of the run to the first one, never more than a lease while leases are held.
    On scaled time (an hour in 3 real seconds): on a manual clock a sleep is one jump, with no
    moment in it for a renewal."""
    from datetime import datetime

    from reportexport_async import Client
    from reportexport_async.core.policies import RateLimitPolicy
    from reportexport_async.jobs.orchestrator import ProgressEvent
    from reportexport_async.ledger import Ledger
    from reportexport_async.machine.clock import ScaledClock
    from reportexport_async.sandbox import Sandbox
    from reportexport_async.sandbox.clock import ScaledClock as SandboxClock

    from .conftest import SANDBOX_START

    scale = 1200.0
    # Renewed every 400 s (a third of a real second): a late renewal has two thirds of a real
    # second before the lease runs out, even on a busy machine.
    lease = timedelta(seconds=1200)
    days = 6
    policy = RateLimitPolicy(hourly_limit=8, safety_margin=0, daily_report_export=None)
    async with Sandbox(
        clock=SandboxClock(SANDBOX_START, scale=scale), job_duration=(30, 60), hourly_limit=8
    ) as sandbox:
        clock = ScaledClock(start=sandbox.now(), scale=scale)
        async with Ledger(tmp_path / "ledger.sqlite", lease=lease, clock=clock) as ledger:
            renewals: list[tuple[datetime, int]] = []
            renew = ledger.renew_leases

            async def counted() -> int:
                held = await renew()
                renewals.append((clock.now(), held))
                return held

            ledger.renew_leases = counted  # type: ignore[method-assign]
            events: list[ProgressEvent] = []
            started = clock.now()
            async with Client.for_sandbox(sandbox, ledger=ledger, rate_limit=policy) as client:
                result = await client.backfill(
                    "mp_action_listing_fast", START, START + timedelta(days=days - 1),
                    out=tmp_path / "out", chunk="1d", on_event=events.append,
                )  # fmt: skip
            ended = clock.now()
        stats = sandbox.stats()
    assert result.complete
    assert stats["calls"]["ReportExport"] == days
    assert stats["calls"]["Download"] == days
    # The run did wait for the hourly bucket, for longer than a lease (8 calls an hour for
    # 6 submits, a listing or more and 6 downloads).
    waits = [e for e in events if e.kind == "wait" and "hourly" in (e.message or "")]
    assert waits
    assert ended - started > 2 * lease
    held = [at for at, count in renewals if count > 0]
    assert held, renewals
    gaps = [b - a for a, b in zip([started, *held], held, strict=False)]
    assert max(gaps) <= lease, (max(gaps), renewals)
