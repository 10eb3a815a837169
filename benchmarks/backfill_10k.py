"""Backfill of 10,000 chunks: `backfill()` beside a minimal hand-written aiohttp script
doing the same submit, status and download calls, in one run against one sandbox.

    .venv/bin/python -m benchmarks.backfill_10k                         # 10,000 chunks, 2 rounds
    .venv/bin/python -m benchmarks.backfill_10k --chunks 1000 --repeats 1   # quicker

The sandbox (its own process, `python -m reportexport_async.sandbox --port 0 ...`) has instant
jobs (`--job-duration 0`), no hourly or daily limits and `--rows-per-day 5`. The range is
`--chunks` one-day chunks of `mp_action_listing_fast` (a `Mediapartners` account) ending two
weeks before today, so every day is settled. Two methods, each run in a fresh process of its own
(`--child METHOD`) so that its CPU time (`getrusage(RUSAGE_SELF)`, user + system, all threads,
imports excluded) is its own:

- `library`: `backfill(client, ledger, [ExportSpec(report)], start, end, out_dir=..., chunk="1d")`
  with a fresh ledger file and output folder, limits off on the client side too (huge hourly
  limit, no daily quotas, no safety margin), `max_concurrent_requests`, `submit_concurrency` and
  `download_concurrency` all `--concurrency`, and a short tick (`TickPolicy(base=0.05,
  minimum=0.01)`);
- `baseline`: `--concurrency` workers sharing the chunks; per chunk: GET ReportExport, GET
  /Jobs/{Id} until COMPLETED (no sleep before the first poll, then 0.05 s), GET Download (302),
  GET the signed URL without credentials, write the body to `<out>/<start>_<end>.csv`. No ledger,
  no hashing, no fsync, no retries.

The sandbox is reset (`POST /_sandbox/reset`) before each run; its counts (`GET /_sandbox/stats`)
after each run are that method's calls. The order of the methods alternates from round to round;
figures are medians. Targets: library wall time at most 1.0 x the baseline's, and at most
3.5 ms of client CPU per chunk. The
figures go into `## Backfill of 10,000 chunks` of `benchmarks/RESULTS.md`.

`--profile FILE` runs one extra, unmeasured library child under cProfile (event-loop thread only)
and prints the top functions by cumulative and by own time. `--py-spy FILE` runs one under
`py-spy record` (every thread; `pip install py-spy`) and prints where its samples went by part of
the code (`benchmarks.profile_summary`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:  # pragma: no cover - the client is imported by the children only
    from reportexport_async import ClientConfig

from .procstats import cpu_times
from .profile_summary import summarize
from .results import RESULTS_FILE, command_line, fmt, median, publish, ratio, section_head
from .sandbox_throughput import instant_sandbox_argv, start_server

SECTION_TITLE = "## Backfill of 10,000 chunks"
RATIO_TARGET = 1.0  # library wall time / baseline wall time
CPU_TARGET_MS = 3.5  # library client CPU per chunk
PERSONA = "Mediapartners"
REPORT = "mp_action_listing_fast"
ROWS_PER_DAY = 5
TICK_BASE = 0.05
TICK_MINIMUM = 0.01
POLL_SLEEP = 0.05  # the baseline's pause between two polls of one job (`--poll-sleep`)
METHODS = ("library", "baseline")
PY_SPY_RATE = 250  # samples a second
ENDPOINT_KEYS = ("ReportExport", "GetJob", "ListJobs", "Download", "SignedDownload")


# -- the children: one method in a fresh process --------------------------------------------------


def _spent(cpu_started: float, system_started: float) -> dict[str, float]:
    cpu, system = cpu_times()
    return {"cpu_seconds": cpu - cpu_started, "system_seconds": system - system_started}


def chunk_days(spec: dict[str, Any]) -> tuple[date, date]:
    return date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])


def unlimited_config(spec: dict[str, Any]) -> ClientConfig:
    """The sandbox account of `spec` with every client-side limit off (`--concurrency` calls
    at a time): the benchmarks measure speed, not the quota."""
    from reportexport_async import ClientConfig
    from reportexport_async.core.policies import RateLimitPolicy

    policy = RateLimitPolicy(
        hourly_limit=10**9,
        daily_report_export=None,
        daily_click_export=None,
        max_concurrent_requests=int(spec["concurrency"]),
        safety_margin=0,
    )
    return ClientConfig(
        account_sid=spec["account_sid"],
        auth_token=spec["auth_token"],
        account_type=PERSONA,
        base_url=spec["base_url"],
        rate_limit=policy,
    )


async def run_library(spec: dict[str, Any], out: Path, ledger_path: Path) -> dict[str, Any]:
    from reportexport_async import Client
    from reportexport_async.core.tracking import TickPolicy

    concurrency = int(spec["concurrency"])
    config = unlimited_config(spec)
    start, end = chunk_days(spec)
    cpu_started, system_started = cpu_times()
    started = time.perf_counter()
    async with Client(config, ledger=ledger_path) as client:
        result = await client.backfill(
            REPORT, start, end, out=out, chunk="1d", download_concurrency=concurrency,
            submit_concurrency=concurrency, tick=TickPolicy(base=TICK_BASE, minimum=TICK_MINIMUM),
        )  # fmt: skip
        usage = client.usage
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        **_spent(cpu_started, system_started),
        "counts": result.counts,
        "client_calls": dict(result.calls),
        "client_429": usage.rate_limited,
        "retries": usage.retries,
    }


async def baseline_chunk(
    session: aiohttp.ClientSession,
    base: str,
    root: str,
    headers: dict[str, str],
    day: date,
    out: Path,
    poll_sleep: float,
) -> int:
    """One chunk, the way a user would write it: submit, poll, follow the 302, write."""
    params = {"START_DATE": day.isoformat(), "END_DATE": day.isoformat(), "ResultFormat": "CSV"}
    async with session.get(
        f"{root}/ReportExport/{REPORT}", params=params, headers=headers
    ) as response:
        response.raise_for_status()
        ticket = await response.json()
    job_url = base + ticket["QueuedUri"]
    while True:
        async with session.get(job_url, headers=headers) as response:
            response.raise_for_status()
            job = await response.json()
        if job["Status"] == "COMPLETED":
            break
        if job["Status"] in ("FAILED", "CANCELLED"):
            raise RuntimeError(f"job {job['Id']} ended {job['Status']}")
        await asyncio.sleep(poll_sleep)
    async with session.get(
        base + job["ResultUri"], headers=headers, allow_redirects=False
    ) as response:
        if response.status != 302:
            raise RuntimeError(f"Download: HTTP {response.status}")
        location = response.headers["Location"]
    async with session.get(location) as response:  # the signed URL: no credentials
        response.raise_for_status()
        body = await response.read()
    (out / f"{day.isoformat()}_{day.isoformat()}.csv").write_bytes(body)
    return len(body)


async def run_baseline(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    base = str(spec["base_url"])
    root = f"{base}/{PERSONA}/{spec['account_sid']}"
    headers = {"Authorization": aiohttp.encode_basic_auth(spec["account_sid"], spec["auth_token"])}
    start, end = chunk_days(spec)
    poll_sleep = float(spec["poll_sleep"])
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    cpu_started, system_started = cpu_times()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    received = 0
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal received
            while days:
                day = days.pop()
                received += await baseline_chunk(session, base, root, headers, day, out, poll_sleep)

        await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        **_spent(cpu_started, system_started),
        "bytes": received,
    }


def profile_library(spec: dict[str, Any], out: Path, ledger_path: Path, dump: Path) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(run_library(spec, out, ledger_path))
    finally:
        profiler.disable()
    profiler.dump_stats(dump)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(45)
    return text.getvalue()


def child_main(args: argparse.Namespace) -> int:
    spec = json.loads(sys.stdin.readline())  # the token comes on stdin, not on the command line
    out: Path = args.out
    if args.child == "library":
        if args.profile:
            report = profile_library(spec, out, args.ledger, args.profile)
            print(report, file=sys.stderr)
            print(json.dumps({"method": "profile"}), flush=True)
            return 0
        figures = asyncio.run(run_library(spec, out, args.ledger))
    else:
        figures = asyncio.run(run_baseline(spec, out))
    figures["method"] = args.child
    print(json.dumps(figures), flush=True)
    return 0


# -- the parent: sandbox, rounds, checks ----------------------------------------------------------


@dataclass
class Figures:
    chunks: int = 0
    start: date = date.min
    end: date = date.min
    runs: list[dict[str, Any]] = field(default_factory=list)
    profile: str = ""
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])

    def values(self, method: str, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs if run["method"] == method]


def sandbox_argv(storage: Path) -> list[str]:
    return instant_sandbox_argv(storage, "--rows-per-day", str(ROWS_PER_DAY))


async def control(base: str, method: str, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{base}/_sandbox/{path}") as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"{method} /_sandbox/{path}: HTTP {response.status}")
        return dict(await response.json())


def run_child(
    method: str,
    spec: dict[str, Any],
    out: Path,
    ledger: Path,
    profile: Path | None = None,
    prefix: Sequence[str] = (),
) -> dict[str, Any]:
    argv = [*prefix, sys.executable, "-m", "benchmarks.backfill_10k", "--child", method]
    argv += ["--out", str(out)]
    argv += ["--ledger", str(ledger)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    done = subprocess.run(
        argv,
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    # The last JSON line (a profiler may print after it).
    line = [text for text in done.stdout.splitlines() if text.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    if profile is not None:
        result["profile"] = done.stderr
    return result


def check_run(run: dict[str, Any], out: Path, chunks: int) -> None:
    """Every chunk has its file; the library says every chunk is done; no 429 anywhere."""
    files = [p for p in out.rglob("*.csv") if p.is_file()]
    run["files"] = len(files)
    run["bytes_on_disk"] = sum(p.stat().st_size for p in files)
    problems = []
    if len(files) != chunks:
        problems.append(f"{len(files)} files, expected {chunks}")
    if run["method"] == "library" and run["counts"].get("done") != chunks:
        problems.append(f"outcomes {run['counts']}")
    if run["server"]["rate_limited"] or run.get("client_429"):
        problems.append(f"429 answers: {run['server']['rate_limited']}")
    if problems:
        raise RuntimeError(f"{run['method']}: " + "; ".join(problems))


def order_of(repetition: int) -> tuple[str, ...]:
    return METHODS if repetition % 2 == 0 else METHODS[::-1]


def benchmark(args: argparse.Namespace) -> Figures:
    figures = Figures(chunks=args.chunks)
    figures.end = datetime.now(UTC).date() - timedelta(days=14)
    figures.start = figures.end - timedelta(days=args.chunks - 1)
    with tempfile.TemporaryDirectory(prefix="backfill-10k-") as folder:
        scratch = Path(folder)
        storage = scratch / "sandbox"
        storage.mkdir()
        with start_server(sandbox_argv(storage), "sandbox") as server:
            info = server.info
            base = str(info["base_url"])
            spec = {
                "base_url": base,
                "account_sid": info["account_sid"],
                "auth_token": info["auth_token"],
                "start": figures.start.isoformat(),
                "end": figures.end.isoformat(),
                "concurrency": args.concurrency,
                "poll_sleep": args.poll_sleep,
            }
            for repetition in range(args.repeats):
                for method in order_of(repetition):
                    asyncio.run(control(base, "POST", "reset"))
                    out = scratch / f"out-{method}-{repetition}"
                    ledger = scratch / f"ledger-{method}-{repetition}.sqlite"
                    run = run_child(method, spec, out, ledger)
                    run["round"] = repetition + 1
                    run["server"] = asyncio.run(control(base, "GET", "stats"))
                    check_run(run, out, args.chunks)
                    shutil.rmtree(out, ignore_errors=True)
                    for leftover in scratch.glob(ledger.name + "*"):
                        leftover.unlink()
                    figures.runs.append(run)
                    calls = run["server"]["calls"]
                    print(
                        f"  round {repetition + 1} {method:8} {run['seconds']:7.2f} s  "
                        f"CPU {run['cpu_seconds']:6.2f} s (kernel {run['system_seconds']:5.2f})  "
                        + " ".join(f"{k} {calls.get(k, 0)}" for k in ENDPOINT_KEYS),
                        flush=True,
                    )
            if args.profile is not None:
                asyncio.run(control(base, "POST", "reset"))
                out = scratch / "out-profile"
                run = run_child(
                    "library", spec, out, scratch / "ledger-profile.sqlite", args.profile
                )
                figures.profile = run["profile"]
                print(figures.profile, flush=True)
            if args.py_spy is not None:
                asyncio.run(control(base, "POST", "reset"))
                beside = Path(sys.executable).with_name("py-spy")
                spy = [
                    str(beside) if beside.exists() else "py-spy",
                    "record",
                    "--threads",
                    "--format",
                    "raw",
                ]
                spy += ["--rate", str(PY_SPY_RATE), "-o", str(args.py_spy), "--"]
                run_child(
                    "library", spec, scratch / "out-spy", scratch / "ledger-spy.sqlite",
                    prefix=spy,
                )  # fmt: skip
                raw = args.py_spy.read_text()
                figures.profile = summarize(raw, args.chunks, PY_SPY_RATE)
                print(figures.profile, flush=True)
    return figures


# -- the report ---------------------------------------------------------------------------------


def _per_chunk_calls(figures: Figures, method: str, key: str) -> float:
    runs = [run for run in figures.runs if run["method"] == method]
    return median([run["server"]["calls"].get(key, 0) / figures.chunks for run in runs])


def render_section(args: argparse.Namespace, figures: Figures, command: str) -> str:
    wall = {m: median(figures.values(m, "seconds")) for m in METHODS}
    cpu = {m: median(figures.values(m, "cpu_seconds")) for m in METHODS}
    kernel = {m: median(figures.values(m, "system_seconds")) for m in METHODS}
    wall_x = ratio(wall["library"], wall["baseline"])
    met = "yes" if wall_x <= RATIO_TARGET else "**no**"
    n = figures.chunks
    lines = [
        *section_head(SECTION_TITLE, command, figures.load_average),
        f"One sandbox (instant jobs, no limits, {ROWS_PER_DAY} rows a day), {n:,} one-day chunks "
        f"of `{REPORT}` ({figures.start} to {figures.end}), concurrency {args.concurrency} on "
        f"both sides. Medians of {args.repeats} rounds, the order of the methods alternating, "
        "each run in a fresh process after `POST /_sandbox/reset`; ratio = library / baseline.",
        "",
        "| Figure | Library | Baseline | Ratio | Target | Met? |",
        "|---|---:|---:|---:|---:|---|",
        f"| Wall time, {n:,} chunks (s) | {fmt(wall['library'], 1)} | "
        f"{fmt(wall['baseline'], 1)} | {fmt(wall_x, 2)} | ≤ {RATIO_TARGET} × baseline | {met} |",
        f"| Chunks per second | {fmt(n / wall['library'], 0)} | {fmt(n / wall['baseline'], 0)} "
        f"| {fmt(ratio(wall['baseline'], wall['library']), 2)} | – | – |",
        f"| Client CPU time (s) | {fmt(cpu['library'], 1)} | {fmt(cpu['baseline'], 1)} | "
        f"{fmt(ratio(cpu['library'], cpu['baseline']), 2)} | – | – |",
        f"| Client CPU time per chunk (ms) | {fmt(cpu['library'] / n * 1000, 2)} | "
        f"{fmt(cpu['baseline'] / n * 1000, 2)} | "
        f"{fmt(ratio(cpu['library'], cpu['baseline']), 2)} | ≤ {CPU_TARGET_MS} (library) | "
        f"{'yes' if cpu['library'] / n * 1000 <= CPU_TARGET_MS else '**no**'} |",
        f"| of which in the kernel (system calls), per chunk (ms) | "
        f"{fmt(kernel['library'] / n * 1000, 2)} | {fmt(kernel['baseline'] / n * 1000, 2)} | "
        f"{fmt(ratio(kernel['library'], kernel['baseline']), 2)} | – | – |",
    ]
    for key in ENDPOINT_KEYS:
        library, baseline = (_per_chunk_calls(figures, m, key) for m in METHODS)
        lines.append(
            f"| Server-side `{key}` calls per chunk | {fmt(library, 3)} | {fmt(baseline, 3)} "
            "| – | – | – |"
        )
    too_many = {
        m: sum(int(run["server"]["rate_limited"]) for run in figures.runs if run["method"] == m)
        for m in METHODS
    }
    met_429 = "yes" if not any(too_many.values()) else "**no**"
    lines.append(
        f"| 429 answers, all runs | {too_many['library']} | {too_many['baseline']} | – | 0 | "
        f"{met_429} |"
    )
    raw = "; ".join(
        f"round {run['round']} {run['method']}: {run['seconds']:.1f} s, CPU "
        f"{run['cpu_seconds']:.1f} s (kernel {run['system_seconds']:.1f} s), calls "
        + ", ".join(f"{k} {run['server']['calls'].get(k, 0)}" for k in ENDPOINT_KEYS)
        for run in figures.runs
    )
    lines += [
        "",
        "- Library: `Client(config, ledger=<fresh file>).backfill(report, start, end, "
        'out=<fresh folder>, chunk="1d", submit_concurrency=C, download_concurrency=C, '
        f"tick=TickPolicy(base={TICK_BASE}, minimum={TICK_MINIMUM}))` with "
        "`RateLimitPolicy(hourly_limit=10**9, daily_report_export=None, daily_click_export=None, "
        "max_concurrent_requests=C, safety_margin=0)`, default downloads (302 to the signed URL). "
        "It plans (a fingerprint and a ledger look-up per chunk), claims and records every submit "
        "in the ledger, refreshes every job in flight with `GET /Jobs?CreatedAfter=...` listings, "
        "and streams each result to `.part` while hashing (sha256), then fsyncs and renames, and "
        "records the download in the ledger; it writes a manifest at the end.",
        "- Baseline: C workers over the chunks; per chunk GET ReportExport, GET /Jobs/{Id} until "
        f"COMPLETED ({args.poll_sleep} s between polls, none before the first), GET Download "
        "(302), GET the signed URL without credentials, `write_bytes` of the body. No ledger, "
        "no hash, no fsync, no retries.",
        "- Times cover opening the client (or session) to the end of the run; CPU time is "
        "`getrusage(RUSAGE_SELF)` user + system of the child over the same window (all its "
        "threads; imports excluded). Every run was checked: one file per chunk, every library "
        "chunk `done`, no 429 (`GET /_sandbox/stats`, counted per run after a reset).",
        "- What limits each side. Baseline: each worker sleeps at least once per chunk (the "
        "first poll usually finds the job still writing its result, hence ~2 `GetJob` per "
        f"chunk), so C workers make at most C / ({args.poll_sleep} s + 5 round trips) chunks a "
        "second; its CPU is aiohttp's. Library: no per-job sleep (one listing per tick covers "
        "every job in flight: from the page the last listing found them on, reading only the "
        "jobs in flight), but per chunk four ledger writes (claim, job id, lease, download; the "
        "writes made together share one commit in the ledger's thread), a sha256 and an fsync "
        "of the file in one hop to a shared pool of disk threads, and a share of one fsync of the "
        "folder. Both share 2 CPUs with the sandbox, which is busy too. Where the library's "
        "time goes: `--py-spy FILE` (and the profile in RESULTS.md).",
        f"- All runs: {raw}.",
    ]
    lines.append("")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backfill_10k", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="one-day chunks (10000)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--concurrency", type=int, default=8, help="on both sides (default 8)")
    parser.add_argument(
        "--poll-sleep",
        type=float,
        default=POLL_SLEEP,
        help=f"the baseline's pause between polls of a job (default {POLL_SLEEP})",
    )
    parser.add_argument("--profile", type=Path, help="also profile one library run into FILE")
    parser.add_argument(
        "--py-spy", type=Path, help="also record one library run with py-spy into FILE"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS")
    # Internal: one measured run in its own process.
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ledger", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunks < 1 or args.repeats < 1 or args.concurrency < 1 or args.poll_sleep < 0:
        parser.error("--chunks, --repeats, --concurrency and --poll-sleep must be positive")
    if args.child and (args.out is None or args.ledger is None):
        parser.error("--child needs --out and --ledger")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    command = command_line("benchmarks.backfill_10k", argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    figures = benchmark(args)
    section = render_section(args, figures, command)
    publish(section, SECTION_TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
