"""Many accounts in one process: 1,000 accounts x 10 instant chunks, beside one account x 10,000
chunks, in one run against one sandbox.

    .venv/bin/python -m benchmarks.many_accounts                       # 1,000 x 10, 2 rounds
    .venv/bin/python -m benchmarks.many_accounts --accounts 50 --repeats 1   # quicker

The sandbox (its own process, `python -m reportexport_async.sandbox --port 0 ...`) has instant
jobs, no hourly or daily limits and 5 rows a day, and serves `--accounts` accounts besides its
main one (`POST /_sandbox/accounts`). Both methods pull `--chunks-per-account` x `--accounts`
one-day chunks of `mp_action_listing_fast` in total, each in a fresh process of its own
(`--child METHOD`) so that its CPU time (`getrusage(RUSAGE_SELF)`, user + system, all threads)
and its peak memory (`VmHWM`, reset once the imports are done) are its own:

- `accounts`: `run_per_account(accounts, work, ledger=<one fresh file>, concurrency=P)`: one
  `Client` per account (its own session and limiter, limits off as below), all sharing one
  ledger; `work` is `client.backfill(report, start, end, out=<out>/<name>, chunk="1d",
  submit_concurrency=C, download_concurrency=C, tick=TickPolicy(base=0.05, minimum=0.01))`,
  each account over the same 10 days;
- `single`: the 10,000-chunk figure of `benchmarks.backfill_10k`: one `Client`, the same
  `backfill` over `--accounts` x `--chunks-per-account` days, the same options.

Limits off on the client side (huge hourly limit, no daily quotas, no safety margin,
`max_concurrent_requests` = C). The sandbox is reset before each run; its counts after each run are
that method's calls. The order alternates from round to round; figures are medians. The section
`## Many accounts in one process` of `benchmarks/RESULTS.md` reports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from .backfill_10k import ENDPOINT_KEYS, ROWS_PER_DAY, TICK_BASE, TICK_MINIMUM, control
from .procstats import cpu_seconds, peak_rss_kib, proc_status_kib, reset_peak_rss
from .results import RESULTS_FILE, command_line, fmt, median, publish, ratio, section_head
from .sandbox_throughput import instant_sandbox_argv, start_server

SECTION_TITLE = "## Many accounts in one process"
PERSONA = "Mediapartners"
REPORT = "mp_action_listing_fast"
METHODS = ("accounts", "single")


# -- the children ---------------------------------------------------------------------------------


def _policy(concurrency: int) -> Any:
    from reportexport_async import RateLimitPolicy

    return RateLimitPolicy(
        hourly_limit=10**9,
        daily_report_export=None,
        daily_click_export=None,
        max_concurrent_requests=concurrency,
        safety_margin=0,
    )


def _config(spec: dict[str, Any], sid: str, token: str) -> Any:
    from reportexport_async import ClientConfig

    return ClientConfig(
        account_sid=sid,
        auth_token=token,
        account_type=PERSONA,
        base_url=spec["base_url"],
        rate_limit=_policy(int(spec["concurrency"])),
    )


async def run_accounts(spec: dict[str, Any], out: Path, ledger: Path) -> dict[str, Any]:
    from reportexport_async.accounts import Account, run_per_account
    from reportexport_async.core.tracking import TickPolicy

    concurrency = int(spec["concurrency"])
    accounts = [
        Account(f"a{n:05d}", _config(spec, sid, token), "benchmark")
        for n, (sid, token) in enumerate(spec["accounts"])
    ]
    start = date.fromisoformat(spec["start"])
    end = start + timedelta(days=int(spec["chunks_per_account"]) - 1)
    tick = TickPolicy(base=TICK_BASE, minimum=TICK_MINIMUM)

    async def work(client: Any, account: Account) -> dict[str, int]:
        result = await client.backfill(
            REPORT, start, end, out=out / account.name, chunk="1d", tick=tick,
            submit_concurrency=concurrency, download_concurrency=concurrency,
        )  # fmt: skip
        return dict(result.counts)

    async def everything() -> tuple[int, list[str]]:
        outcomes = await run_per_account(
            accounts, work, ledger=ledger, concurrency=int(spec["parallel_accounts"])
        )
        done = sum((o.result or {}).get("done", 0) for o in outcomes)
        failed = [f"{o.account.name}: {o.error!r}" for o in outcomes if o.error is not None]
        return done, failed[:5]

    return await measured(everything())


async def measured(run: Coroutine[Any, Any, tuple[int, list[str]]]) -> dict[str, Any]:
    """`run` (it returns the chunks done and the errors) with its wall time, CPU time and peak
    memory over the run (the peak reset first to the resident size after the imports)."""
    rss_before = proc_status_kib("VmRSS")
    reset = reset_peak_rss()
    cpu_started = cpu_seconds()
    started = time.perf_counter()
    done, errors = await run
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu_started,
        "rss_before_kib": rss_before,
        "peak_kib": peak_rss_kib(),
        "peak_reset": reset,
        "done": done,
        "errors": errors,
    }


async def run_single(spec: dict[str, Any], out: Path, ledger: Path) -> dict[str, Any]:
    from reportexport_async import Client
    from reportexport_async.core.tracking import TickPolicy

    concurrency = int(spec["concurrency"])
    config = _config(spec, spec["main_sid"], spec["main_token"])
    chunks = int(spec["chunks_per_account"]) * len(spec["accounts"])
    start = date.fromisoformat(spec["start"])
    end = start + timedelta(days=chunks - 1)

    async def everything() -> tuple[int, list[str]]:
        async with Client(config, ledger=ledger) as client:
            result = await client.backfill(
                REPORT, start, end, out=out, chunk="1d", download_concurrency=concurrency,
                submit_concurrency=concurrency,
                tick=TickPolicy(base=TICK_BASE, minimum=TICK_MINIMUM),
            )  # fmt: skip
        return result.counts.get("done", 0), []

    return await measured(everything())


def child_main(args: argparse.Namespace) -> int:
    spec = json.loads(sys.stdin.readline())  # the tokens come on stdin, not on the command line
    run = run_accounts if args.child == "accounts" else run_single
    figures = asyncio.run(run(spec, args.out, args.ledger))
    figures["method"] = args.child
    print(json.dumps(figures), flush=True)
    return 0


def run_child(method: str, spec: dict[str, Any], out: Path, ledger: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.many_accounts", "--child", method]
    argv += ["--out", str(out), "--ledger", str(ledger)]
    done = subprocess.run(
        argv,
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the parent ---------------------------------------------------------------------------------


@dataclass
class Figures:
    accounts: int = 0
    per_account: int = 0
    start: date = date.min
    runs: list[dict[str, Any]] = field(default_factory=list)
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def chunks(self) -> int:
        return self.accounts * self.per_account

    def values(self, method: str, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs if run["method"] == method]


async def add_accounts(base: str, accounts: list[tuple[str, str]]) -> None:
    body = [{"account_sid": sid, "auth_token": token} for sid, token in accounts]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/_sandbox/accounts", json=body) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"POST /_sandbox/accounts: HTTP {response.status}")


def check_run(run: dict[str, Any], out: Path, chunks: int) -> None:
    files = sum(1 for p in out.rglob("*.csv") if p.is_file())
    problems = []
    if files != chunks or run["done"] != chunks:
        problems.append(f"{files} files and {run['done']} chunks done, expected {chunks}")
    if run["errors"]:
        problems.append(f"errors: {run['errors']}")
    if run["server"]["rate_limited"]:
        problems.append(f"429 answers: {run['server']['rate_limited']}")
    if problems:
        raise RuntimeError(f"{run['method']}: " + "; ".join(problems))


def benchmark(args: argparse.Namespace) -> Figures:
    figures = Figures(accounts=args.accounts, per_account=args.chunks_per_account)
    end = datetime.now(UTC).date() - timedelta(days=14)
    figures.start = end - timedelta(days=figures.chunks - 1)
    accounts = [
        (f"IRbench{n:05d}", f"token-{n:05d}-{os.urandom(4).hex()}") for n in range(args.accounts)
    ]
    with tempfile.TemporaryDirectory(prefix="many-accounts-") as folder:
        scratch = Path(folder)
        storage = scratch / "sandbox"
        storage.mkdir()
        argv = instant_sandbox_argv(storage, "--rows-per-day", str(ROWS_PER_DAY))
        with start_server(argv, "sandbox") as server:
            base = str(server.info["base_url"])
            asyncio.run(add_accounts(base, accounts))
            spec = {
                "base_url": base,
                "main_sid": server.info["account_sid"],
                "main_token": server.info["auth_token"],
                "accounts": accounts,
                "start": figures.start.isoformat(),
                "chunks_per_account": args.chunks_per_account,
                "concurrency": args.concurrency,
                "parallel_accounts": args.parallel_accounts,
            }
            for repetition in range(args.repeats):
                order = METHODS if repetition % 2 == 0 else METHODS[::-1]
                for method in order:
                    asyncio.run(control(base, "POST", "reset"))
                    out = scratch / f"out-{method}-{repetition}"
                    ledger = scratch / f"ledger-{method}-{repetition}.sqlite"
                    run = run_child(method, spec, out, ledger)
                    run["round"] = repetition + 1
                    run["server"] = asyncio.run(control(base, "GET", "stats"))
                    check_run(run, out, figures.chunks)
                    shutil.rmtree(out, ignore_errors=True)
                    for leftover in scratch.glob(ledger.name + "*"):
                        leftover.unlink()
                    figures.runs.append(run)
                    print(
                        f"  round {repetition + 1} {method:8} {run['seconds']:7.2f} s  "
                        f"CPU {run['cpu_seconds']:6.2f} s  peak {run['peak_kib'] / 1024:6.1f} MiB",
                        flush=True,
                    )
    return figures


def render_section(args: argparse.Namespace, figures: Figures, command: str) -> str:
    n = figures.chunks
    wall = {m: median(figures.values(m, "seconds")) for m in METHODS}
    cpu = {m: median(figures.values(m, "cpu_seconds")) for m in METHODS}
    peak = {m: median(figures.values(m, "peak_kib")) / 1024 for m in METHODS}
    before = {m: median(figures.values(m, "rss_before_kib")) / 1024 for m in METHODS}
    growth = {m: peak[m] - before[m] for m in METHODS}

    def calls(method: str, key: str) -> float:
        runs = [run for run in figures.runs if run["method"] == method]
        return median([run["server"]["calls"].get(key, 0) / n for run in runs])

    per_chunk = {m: cpu[m] / n * 1000 for m in METHODS}
    lines = [
        *section_head(SECTION_TITLE, command, figures.load_average),
        f"One sandbox (instant jobs, no limits, {ROWS_PER_DAY} rows a day) serving "
        f"{figures.accounts:,} accounts besides its main one. `accounts`: {figures.accounts:,} "
        f"accounts x {figures.per_account} one-day chunks of `{REPORT}`, one `Client` each, "
        f"{args.parallel_accounts} accounts at a time, one shared ledger. `single`: the main "
        f"account alone, {n:,} one-day chunks ({figures.start} onwards), as "
        "`benchmarks.backfill_10k` measures it. Concurrency "
        f"{args.concurrency} per client on both sides. Medians of {args.repeats} rounds, the "
        "order alternating, each run in a fresh process after `POST /_sandbox/reset`; "
        "ratio = accounts / single.",
        "",
        "| Figure | Accounts | Single account | Ratio |",
        "|---|---:|---:|---:|",
        f"| Chunks | {n:,} | {n:,} | – |",
        f"| Wall time (s) | {fmt(wall['accounts'], 1)} | {fmt(wall['single'], 1)} | "
        f"{fmt(ratio(wall['accounts'], wall['single']), 2)} |",
        f"| Client CPU time (s) | {fmt(cpu['accounts'], 1)} | {fmt(cpu['single'], 1)} | "
        f"{fmt(ratio(cpu['accounts'], cpu['single']), 2)} |",
        f"| Client CPU time per chunk (ms) | {fmt(per_chunk['accounts'], 2)} | "
        f"{fmt(per_chunk['single'], 2)} | "
        f"{fmt(ratio(per_chunk['accounts'], per_chunk['single']), 2)} |",
        f"| Peak memory (MiB, VmHWM) | {fmt(peak['accounts'], 1)} | {fmt(peak['single'], 1)} | "
        f"{fmt(ratio(peak['accounts'], peak['single']), 2)} |",
        f"| Memory growth over the run (MiB, peak - RSS before) | {fmt(growth['accounts'], 1)} "
        f"| {fmt(growth['single'], 1)} | {fmt(ratio(growth['accounts'], growth['single']), 2)} |",
    ]
    for key in ENDPOINT_KEYS:
        lines.append(
            f"| Server-side `{key}` calls per chunk | {fmt(calls('accounts', key), 3)} | "
            f"{fmt(calls('single', key), 3)} | – |"
        )
    connections = {
        m: median(
            [float(r["server"].get("connections", 0)) for r in figures.runs if r["method"] == m]
        )
        for m in METHODS
    }
    lines.append(
        f"| Server-side TCP connections (distinct client addresses) | "
        f"{fmt(connections['accounts'], 0)} | {fmt(connections['single'], 0)} | – |"
    )
    too_many = sum(int(run["server"]["rate_limited"]) for run in figures.runs)
    raw = "; ".join(
        f"round {run['round']} {run['method']}: {run['seconds']:.1f} s, CPU "
        f"{run['cpu_seconds']:.1f} s, peak {run['peak_kib'] / 1024:.1f} MiB"
        for run in figures.runs
    )
    lines += [
        f"| 429 answers, all runs | {too_many} | – | – |",
        "",
        "- Accounts: `run_per_account(accounts, work, ledger=<fresh file>, "
        f"concurrency={args.parallel_accounts})`, `work` = `client.backfill(report, start, end, "
        'out=<out>/<name>, chunk="1d", submit_concurrency=C, download_concurrency=C, '
        f"tick=TickPolicy(base={TICK_BASE}, minimum={TICK_MINIMUM}))`; every client with "
        "`RateLimitPolicy(hourly_limit=10**9, daily_report_export=None, daily_click_export=None, "
        "max_concurrent_requests=C, safety_margin=0)`; all accounts' ledger calls go through "
        "one SQLite connection.",
        "- Single: one client, the same options, all chunks.",
        "- What the accounts side adds: per account, a client opened and closed, a plan (one "
        "ledger query selects the account's own entries), the catalog check of a report it never "
        "submitted (one `GET /Reports`, and a ledger query of the account's own entries of that "
        "report), a manifest, and its own tracker for its 10 jobs (the same listings per chunk, "
        "more single `GetJob` status calls); the connections are one pool shared by every "
        "account's client (`run_per_account`'s `Connections`), so it opens as many as there are "
        "calls in flight; and "
        f"{args.parallel_accounts} accounts x C downloads in "
        f"flight at once instead of C, each with its writer and hasher threads, which is what "
        "the memory grows with (`--parallel-accounts` and `--concurrency` bound it).",
        "- CPU time is `getrusage(RUSAGE_SELF)` user + system of the child from the start of the "
        "run to its end (imports excluded); peak memory is the child's `VmHWM` after a reset to "
        "its resident size once imported (`/proc/self/clear_refs`); every run was checked: one "
        "file per chunk, every chunk done, no 429.",
        f"- All runs: {raw}.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.many_accounts", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--accounts", type=int, default=1000, help="accounts (default 1000)")
    add("--chunks-per-account", type=int, default=10, help="one-day chunks each (default 10)")
    add("--parallel-accounts", type=int, default=100, help="accounts at a time (default 100)")
    add("--concurrency", type=int, default=8, help="per client (default 8)")
    add("--repeats", type=int, default=2, help="rounds (default 2)")
    add("--results", type=Path, default=RESULTS_FILE, help="Markdown file")
    add("--no-write", action="store_true", help="print, do not update RESULTS")
    add("--child", choices=METHODS, help=argparse.SUPPRESS)
    add("--out", type=Path, help=argparse.SUPPRESS)
    add("--ledger", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    numbers = (args.accounts, args.chunks_per_account, args.parallel_accounts, args.concurrency)
    if min(*numbers, args.repeats) < 1:
        parser.error("every count must be at least 1")
    if args.child and (args.out is None or args.ledger is None):
        parser.error("--child needs --out and --ledger")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    command = command_line("benchmarks.many_accounts", argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    figures = benchmark(args)
    section = render_section(args, figures, command)
    publish(section, SECTION_TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
