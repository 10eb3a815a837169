"""Several workers and the ledger's cost: `python -m benchmarks.workers`.

(a) 1, 2, 4 and 8 backfill processes on one account, one PostgreSQL ledger and one folder, 400
    one-day chunks (the sandbox on scaled time, 600 sandbox seconds a second, jobs of 0-60 sandbox
    seconds; the quota raised to 500): wall time in sandbox (simulated) seconds and in real
    seconds, API calls per chunk and Download calls per chunk (server-side), 429s. The baseline is
    the same run with 1 worker.
(c) The ledger's own cost per chunk, PostgreSQL against SQLite (the baseline), in one process:
    the writes and reads one chunk makes on its way (the daily-quota charge, the hourly bucket
    taken in batches of five, the claim, the job id, a status, the lease check before the
    download, the download's record, a lease renewal every 10 chunks), chunk after chunk, and
    the same with 8 tasks at once. Microseconds per chunk, medians of `--repeats` runs; and
    the PostgreSQL round trips per chunk (statements sent, counted by `tests/round_trips.py`).

The PostgreSQL server is the one the tests use (`tests/postgres_server.py`): started here, in a
temporary folder, with `fsync=off`; a production server with durable commits pays an fsync per
commit on top (as SQLite's WAL does at each checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from reportexport_async.core.models import Job, JobStatus
from reportexport_async.core.quota import HourlyWindow
from reportexport_async.ledger.store import LedgerStore, open_ledger
from reportexport_async.transport.ratelimit import SHARED_HOURLY_BATCH

from .results import RESULTS_FILE, command_line, fmt, median, publish, ratio, section_head

TITLE = "## Several workers and the ledger's cost"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' PostgreSQL server and worker processes

from tests.postgres_server import PostgresServer  # noqa: E402
from tests.round_trips import SENT, CountedLedger  # noqa: E402
from tests.test_workers import CHUNKS, run_workers  # noqa: E402

API = ("ReportExport", "GetJob", "ListJobs", "Download", "Replay", "Reports")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts for (a)")
    parser.add_argument("--chunks", type=int, default=2000, help="chunks for (c)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS_FILE)
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


# -- (a) workers ----------------------------------------------------------------------------------


def workers_run(server: PostgresServer, count: int, index: int) -> dict[str, Any]:
    url = server.create_database(f"bench_workers_{count}_{index}")
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        seen = run_workers(Path(folder), url, workers=count)
    stats = seen["stats"]
    if any(code != 0 for code in seen["codes"]):
        raise SystemExit(f"{count} workers: exit codes {seen['codes']}")
    started = datetime.fromisoformat(stats["started"])
    ended = datetime.fromisoformat(stats["now"])
    calls = sum(stats["calls"].get(name, 0) for name in API)
    return {
        "simulated_s": (ended - started).total_seconds(),
        "real_s": seen["seconds"],
        "calls_per_chunk": calls / CHUNKS,
        "downloads_per_chunk": stats["calls"]["Download"] / CHUNKS,
        "jobs": stats["jobs_created"],
        "rate_limited": stats["rate_limited"],
        "max_hourly": stats["hourly"]["max_used"],
    }


# -- (c) the ledger's cost per chunk --------------------------------------------------------------


def job(job_id: str, status: JobStatus) -> Job:
    return Job.model_validate(
        {"Id": job_id, "Status": status.value, "RecordsProcessed": 2, "ReportId": "r"}
    )


async def one_chunk(ledger: LedgerStore, number: int, day: date) -> None:
    key = f"{number:064d}"
    await ledger.counters.charge("ReportExport", day, 10**9, "bench")
    if number % SHARED_HOURLY_BATCH == 0:

        def take(window: HourlyWindow | None) -> tuple[HourlyWindow, None]:
            now = datetime.now(UTC)
            current = window or HourlyWindow.fresh(10**9, now)
            return current.acquire(now, count=SHARED_HOURLY_BATCH)[0], None

        await ledger.counters.hourly("bench", take)
    await ledger.claim(
        key,
        '{"report_id": "r"}',
        endpoint="ReportExport",
        report_id="r",
        range_start=day,
        range_end=day,
        result_format="CSV",
    )
    await ledger.record_submitted(key, f"job-{number}")
    await ledger.record_statuses([(key, job(f"job-{number}", JobStatus.COMPLETED))])
    await ledger.take_lease(key)
    await ledger.record_download(key, f"job-{number}", Path(f"/tmp/{number}.csv"), 100, "ab" * 32)
    if number % 10 == 0:
        await ledger.renew_leases()


async def ledger_cost(spec: str, chunks: int, tasks: int) -> float:
    """Microseconds of wall time per chunk."""
    day = date(2026, 1, 1)
    async with open_ledger(spec) as ledger:
        started = time.perf_counter()
        queue = list(range(chunks))

        async def worker() -> None:
            while queue:
                await one_chunk(ledger, queue.pop(), day)

        await asyncio.gather(*(worker() for _ in range(tasks)))
        return (time.perf_counter() - started) / chunks * 1e6


async def round_trips(url: str, chunks: int = 50) -> float:
    """PostgreSQL round trips per chunk (`chunks` a multiple of 10: whole hourly batches and
    renewals), once the hourly bucket's row exists (a chunk first)."""
    day = date(2026, 1, 1)
    async with CountedLedger(url) as ledger:
        await one_chunk(ledger, chunks, day)
        SENT.clear()
        for number in range(chunks):
            await one_chunk(ledger, number, day)
        return sum(SENT.values()) / chunks


def cost_run(server: PostgresServer, chunks: int, tasks: int, index: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder:
        sqlite = asyncio.run(ledger_cost(str(Path(folder) / "ledger.sqlite"), chunks, tasks))
    url = server.create_database(f"bench_cost_{tasks}_{index}")
    postgres = asyncio.run(ledger_cost(url, chunks, tasks))
    return {"sqlite": sqlite, "postgresql": postgres}


# -- the section ----------------------------------------------------------------------------------


def render(args: argparse.Namespace, command: str, load: float, figures: dict[str, Any]) -> str:
    lines = section_head(TITLE, command, load)
    lines += [
        f"(a) {CHUNKS} one-day chunks (2 reports x 200 days) on one account, one PostgreSQL "
        "ledger, one output folder; every worker a `backfill` process started at once "
        "(`tests/backfill_child.py`); sandbox at 600x, jobs of 0-60 sandbox seconds, hourly "
        "limit 1,000, quota 500. Server-side counts; medians of "
        f"{args.repeats} runs; ratio = N workers / 1 worker (the baseline).",
        "",
        "| Workers | Wall time, simulated (s) | Ratio | Wall time, real (s) | API calls per chunk "
        "| Download calls per chunk | Jobs created | 429s | Most calls in one hour |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = figures["workers"]
    base = median([r["simulated_s"] for r in runs[min(runs)]])
    for count in sorted(runs):
        rs = runs[count]
        sim = median([r["simulated_s"] for r in rs])
        lines.append(
            f"| {count} | {fmt(sim)} | {ratio(sim, base):.2f} | "
            f"{fmt(median([r['real_s'] for r in rs]), 1)} | "
            f"{median([r['calls_per_chunk'] for r in rs]):.2f} | "
            f"{median([r['downloads_per_chunk'] for r in rs]):.2f} | "
            f"{max(r['jobs'] for r in rs)} | {max(r['rate_limited'] for r in rs)} | "
            f"{max(r['max_hourly'] for r in rs)} |"
        )
    lines += [
        "",
        f"(c) The ledger's own cost per chunk: {args.chunks} chunks through the ledger calls a "
        "chunk makes (see `benchmarks/workers.py`), in one process; microseconds of wall time "
        f"per chunk, medians of {args.repeats} runs; ratio = PostgreSQL / SQLite (the baseline).",
        "",
        "| Tasks at once | SQLite (µs per chunk) | PostgreSQL (µs per chunk) | Ratio |",
        "|---:|---:|---:|---:|",
    ]
    for tasks, rs in sorted(figures["cost"].items()):
        sqlite = median([r["sqlite"] for r in rs])
        postgres = median([r["postgresql"] for r in rs])
        lines.append(
            f"| {tasks} | {fmt(sqlite)} | {fmt(postgres)} | {ratio(postgres, sqlite):.2f} |"
        )
    lines += [
        "",
        f"PostgreSQL round trips per chunk: {figures['round_trips']:.2f} (statements sent, "
        "counted over 50 chunks by `tests/round_trips.py`).",
        "",
        "Notes: simulated wall time includes each process's start (about a second of real "
        "time, 600 sandbox seconds) and is bounded below by the jobs' own durations; on this "
        "2-core machine the 8 processes share two cores with the sandbox and the database "
        "server, so more workers mostly spread the same work. What more workers buy is on "
        "hosts of their own; the table shows what they cost (API calls per chunk, Download "
        "calls per chunk, 429s). The ledger's cost per chunk: each ledger call a chunk makes is "
        "one statement, a write and its history row together (the hourly bucket one "
        "transaction of two statements per five calls; `tests/test_postgres_ledger.py` pins "
        "the count), each round trip a switch to the server's process on this machine.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    command = command_line("benchmarks.workers", list(argv if argv is not None else sys.argv[1:]))
    counts = [int(n) for n in args.workers.split(",") if n]
    figures: dict[str, Any] = {"workers": {}, "cost": {}}
    with PostgresServer() as server:
        figures["round_trips"] = asyncio.run(round_trips(server.create_database("bench_trips")))
        print(f"round trips per chunk: {figures['round_trips']:.2f}", flush=True)
        for index in range(args.repeats):
            for count in counts:
                run = workers_run(server, count, index)
                print(f"{count} workers: {run}", flush=True)
                figures["workers"].setdefault(count, []).append(run)
            for tasks in (1, 8):
                cost = cost_run(server, args.chunks, tasks, index)
                print(f"ledger cost, {tasks} tasks: {cost}", flush=True)
                figures["cost"].setdefault(tasks, []).append(cost)
    section = render(args, command, load, figures)
    publish(section, TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
