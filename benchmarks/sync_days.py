"""A dataset kept current for 30 simulated days: the library's daily `sync` against the two
ways users keep data current without it.

    .venv/bin/python -m benchmarks.sync_days                 # 30 days, 2 reports
    .venv/bin/python -m benchmarks.sync_days --days 5        # quicker

Each method gets its own in-process sandbox on a manual clock (simulated days pass at once; the
same account SID, so the same rows), whose recent days keep gaining rows for 1 + 3 days (its
`settle_days`, as impact.com's recent data is still being completed), and a `Client` on the
sandbox's clock. History starts 7 days before day 1; every day at 13:00 of the account's day:

- `sync`: `client.sync(Dataset(..., first_day, chunk="1d", merge=True))`;
- `re-export last N days`: each report's last N = settle + 1 days exported again, one export per
  day, with a new submit each (what a script without a ledger does; identical parameters get the
  existing job back from the service, and still spend quota);
- `backfill, never refreshed`: `client.backfill(reports, first_day, yesterday, chunk="1d",
  merge=True)`: each day only the new day is exported; a file, once there, is never fetched again.

Server-side counts (`Sandbox.stats()`) before and after each day's run are its calls. At the end,
one whole-range export per report taken at that moment is the truth: rows missing from the
method's files against it, for all days and for the days already settled.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio

from reportexport_async import Client, ExportRequest, RateLimitPolicy
from reportexport_async.jobs.sync import Dataset
from reportexport_async.sandbox import ManualClock, Sandbox

from .results import API, RESULTS_FILE, command_line, fmt, publish, section_head

SECTION_TITLE = "## Daily sync: 30 days against re-exporting and never refreshing"
REPORTS = ("mp_action_listing_fast", "mp_clicks_by_day")
START = datetime(2026, 6, 15, 13, 0, tzinfo=UTC)  # day 1, 13:00 (after the refresh hour)
HISTORY_DAYS = 7
SETTLE_DAYS = 3
ROWS_PER_DAY = 240  # ten more rows an hour while a day settles
SID = "IRBENCHSYNC0000000000000000000000"
METHODS = ("sync", "re-export last N days", "backfill, never refreshed")


@dataclass
class Figures:
    method: str
    calls_per_day: list[int] = field(default_factory=list)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    quota_per_day: list[int] = field(default_factory=list)
    replays: int = 0
    rows_whole: int = 0
    rows_missing: int = 0
    settled_whole: int = 0
    settled_missing: int = 0
    stale_rows: int = 0
    seconds: float = 0.0


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:] if path.exists() else []


async def _reexport(client: Client, out: Path, first: date, last: date, n: int) -> None:
    """Each day of the last `n` (all days on day 1), exported again with a submit each."""
    api = client.api
    start = max(first, last - timedelta(days=n - 1)) if (out / "started").exists() else first
    for report in REPORTS:
        (out / report).mkdir(exist_ok=True)
        day = start
        while day <= last:
            ticket = await api.export(ExportRequest(report_id=report, start=day, end=day))
            await api.wait(ticket.job_id)
            await api.download(ticket.job_id, out / report / f"{day}_{day}.csv")
            day += timedelta(days=1)
    (out / "started").touch()


def _merged(out: Path, report: str, first: date, last: date) -> list[str]:
    folder = out / report
    merged = out / f"{report}.csv"
    if merged.exists():
        return _lines(merged)
    rows: list[str] = []
    day = first
    while day <= last:
        rows += _lines(folder / f"{day}_{day}.csv")
        day += timedelta(days=1)
    return rows


async def run_method(method: str, days: int, work: Path) -> Figures:
    figures = Figures(method)
    first = START.date() - timedelta(days=HISTORY_DAYS)
    out = work / "data"
    out.mkdir(parents=True)
    async with Sandbox(
        clock=ManualClock(START),
        account_sid=SID,
        job_duration=(30, 300),
        rows_per_day=ROWS_PER_DAY,
        settle_days=SETTLE_DAYS,
    ) as sandbox:
        client = Client.for_sandbox(
            sandbox, ledger=work / "ledger.sqlite", rate_limit=RateLimitPolicy()
        )
        dataset = Dataset("bench", REPORTS, out, first_day=first, chunk="1d", merge=True)
        started = time.perf_counter()
        async with client:
            for number in range(days):
                target = START + timedelta(days=number)
                if sandbox.now() < target:
                    sandbox.advance((target - sandbox.now()).total_seconds())
                last = sandbox.now().date() - timedelta(days=1)
                before = sandbox.stats()
                if method == "sync":
                    await client.sync(dataset)
                elif method == "re-export last N days":
                    await _reexport(client, out, first, last, SETTLE_DAYS + 1)
                else:
                    await client.backfill(
                        list(REPORTS), first, last, out=out, chunk="1d", merge=True
                    )
                after = sandbox.stats()
                spent = {name: after["calls"][name] - before["calls"][name] for name in API}
                figures.calls_per_day.append(sum(spent.values()))
                figures.by_endpoint.update(spent)
                figures.quota_per_day.append(spent["ReportExport"])
            figures.seconds = time.perf_counter() - started
            figures.replays = figures.by_endpoint["Replay"]
            # The truth: one whole-range export per report, now.
            last = sandbox.now().date() - timedelta(days=1)
            settled = last - timedelta(days=SETTLE_DAYS)
            for report in REPORTS:
                truth = work / f"{report}.whole.csv"
                ticket = await client.api.export(
                    ExportRequest(report_id=report, start=first, end=last)
                )
                await client.api.wait(ticket.job_id)
                await client.api.download(ticket.job_id, truth)
                whole = Counter(_lines(truth))
                have = Counter(_merged(out, report, first, last))
                missing = whole - have
                figures.rows_whole += sum(whole.values())
                figures.rows_missing += sum(missing.values())
                figures.stale_rows += sum((have - whole).values())
                for row, count in whole.items():
                    if date.fromisoformat(row.split(",", 1)[0]) <= settled:
                        figures.settled_whole += count
                        figures.settled_missing += missing[row]
    return figures


def benchmark(days: int) -> dict[str, Figures]:
    results: dict[str, Figures] = {}
    for method in METHODS:
        work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
        try:
            results[method] = anyio.run(run_method, method, days, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return results


def _row(label: str, value: Callable[[Figures], float], figures: dict[str, Figures],
         digits: int = 0, target: str = "–", met: str = "–") -> str:  # fmt: skip
    values = [value(figures[m]) for m in METHODS]
    base = values[0]
    ratios = [fmt(base / v, 2) if v else "n/a" for v in values[1:]]
    cells = [fmt(v, digits) for v in values] + ratios + [target, met]
    return f"| {label} | " + " | ".join(cells) + " |"


def render_section(days: int, figures: dict[str, Figures], command: str) -> str:
    import os

    lines = section_head(SECTION_TITLE, command, os.getloadavg()[0])
    sync = figures["sync"]
    lines += [
        f"{days} simulated days of daily runs at 13:00 (the account's day, UTC) for 2 reports "
        f"({', '.join(REPORTS)}), history from {HISTORY_DAYS} days before day 1, one-day "
        f"chunks; the sandbox's recent days gain rows for 1 + {SETTLE_DAYS} days "
        f"({ROWS_PER_DAY} rows a day when settled), jobs take 30-300 sandbox seconds. Calls are "
        "server-side; ratio = sync / the method. Completeness: rows missing from the method's "
        "files (the merged file per report, or its day files) against one whole-range export "
        "per report taken at the end; settled days are those more than 3 days old.",
        "",
        "| Figure | sync | re-export last N days | backfill, never refreshed | Ratio vs re-export "
        "| Ratio vs backfill | Target | Met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        _row("API calls per day, median", lambda f: statistics.median(f.calls_per_day[1:]),
             figures, 1),
        _row("API calls, day 1", lambda f: f.calls_per_day[0], figures),
        _row("API calls, all days", lambda f: sum(f.calls_per_day), figures),
        _row("ReportExport (quota) per day, median",
             lambda f: statistics.median(f.quota_per_day[1:]), figures, 1),
        _row("ReportExport (quota), all days", lambda f: sum(f.quota_per_day), figures),
        _row("Replay calls, all days", lambda f: f.replays, figures),
        _row("Rows in the whole export at the end", lambda f: f.rows_whole, figures),
        _row("Rows missing, all days", lambda f: f.rows_missing, figures),
        _row("Rows missing, settled days", lambda f: f.settled_missing, figures,
             target="0 (sync)", met="yes" if sync.settled_missing == 0 else "no"),
        _row("Completeness, settled days (%)",
             lambda f: 100 * (1 - f.settled_missing / f.settled_whole) if f.settled_whole else 0,
             figures, 2),
        _row("Real seconds for all days", lambda f: f.seconds, figures, 1),
        "",
        "- sync: day 1 submits every day of the history (the 4 latest first); each later day "
        "one submit (the new day) and one replay of each chunk still settling (3 a report), "
        "tracked and downloaded; the other calls are the tracker's status calls and the "
        "downloads. A chunk fetched after its days settled is final and costs nothing again.",
        "- re-export last N days: N = 4 (the settle window and the new day), each day its own "
        "export, submitted every day with the library's single calls (`client.api`, no "
        "ledger). The service answers an identical request with the job it already has, so "
        "the re-exports return the rows of the first export: they spend quota and refresh "
        "nothing.",
        "- backfill, never refreshed: the ledger keeps it to one submit a day, but the newest "
        "day is fetched once, at 13:00 of the next day, with the rows it had then, and never "
        "again.",
        "- Real seconds: all three run in one process beside their sandbox; sync downloads "
        "about 3.4 times the files of the backfill (each fsynced, each recorded in the ledger in "
        "a transaction) and checks every file's sha256 when it plans, so most of its time is "
        "waiting for the disk; simulated days cost no real time.",
        "- Per-endpoint calls, all days: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{k} {v}" for k, v in sorted(figures[m].by_endpoint.items())
                                 if v)
            for m in METHODS
        )
        + ".",
    ]  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_days")
    parser.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print, do not write files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    started = time.perf_counter()
    figures = benchmark(args.days)
    # Where the section was written is not how it was measured: `--results FILE` (both forms)
    # and `--no-write` are left out of the command shown.
    shown = []
    for before, arg in zip(["", *given], given, strict=False):
        if arg == "--no-write" or arg.startswith("--results") or before == "--results":
            continue
        shown.append(arg)
    section = render_section(args.days, figures, command_line("benchmarks.sync_days", shown))
    publish(section, SECTION_TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
