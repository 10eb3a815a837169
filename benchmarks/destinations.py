"""Typed destinations: a backfill of N one-day chunks into DuckDB beside the same backfill into
files only, in one run against one sandbox; and large results loaded into DuckDB and into
Parquet with bounded memory, beside the earlier unbounded settings.

    .venv/bin/python -m benchmarks.destinations                  # 10,000 chunks; 100 MB, 1 GB
    .venv/bin/python -m benchmarks.destinations --quick          # 500 chunks; 10 MB, 50 MB
    .venv/bin/python -m benchmarks.destinations --part large     # the large results only

Part 1: the sandbox of `backfill_10k` (its own process; instant jobs, no limits, 5 rows a day).
Each method runs `Client.backfill(REPORT, start, end, chunk="1d")` as `backfill_10k`'s library
child does, in a fresh process of its own: `files` (the files only) and `duckdb` (the same, with
`into="duckdb:///..."`: every chunk loaded into its table, one transaction a chunk). Figures:
wall time, client CPU per chunk (`getrusage`, all threads, imports excluded) and the process's
peak RSS, side by side.

Part 2: CSV results of each of `--sizes` MB (the action listing's columns, synthetic rows)
loaded by the DuckDB and the Parquet destination, each load in a fresh process, with the
settings every load uses (`bounded`: `duckdb_table.SETTINGS`, `parquet_files.BOUNDED`) and with
the earlier ones (`before`: DuckDB's own defaults; 8 MB blocks read ahead by Arrow's threads, a
row group per block): seconds, rows and the peak RSS growth of the load (VmHWM reset just before
it). Bounded means the growth is about the same for both sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .backfill_10k import (
    REPORT,
    TICK_BASE,
    TICK_MINIMUM,
    control,
    sandbox_argv,
    unlimited_config,
)
from .procstats import cpu_times, peak_rss_kib, proc_status_kib, reset_peak_rss
from .results import RESULTS_FILE, command_line, fmt, median, publish, ratio, section_head
from .sandbox_throughput import start_server

SECTION_TITLE = "## Typed destinations: DuckDB beside the files"
LARGE_TITLE = "## Typed destinations: large results in bounded memory"
SETTINGS = ("before", "bounded")
METHODS = ("files", "duckdb")
HEADER = "Date,ActionId,ProgramId,ActionTracker,State,Amount,Payout,Currency\n"


# -- children ---------------------------------------------------------------------------------


async def run_backfill(
    spec: dict[str, Any], out: Path, ledger: Path, into: str | None
) -> dict[str, Any]:
    from reportexport_async import Client
    from reportexport_async.core.tracking import TickPolicy

    concurrency = int(spec["concurrency"])
    config = unlimited_config(spec)
    start, end = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
    if into is not None:
        import duckdb  # noqa: F401 - imported before the clock starts, as the files' imports are
    cpu_started, _ = cpu_times()
    started = time.perf_counter()
    async with Client(config, ledger=ledger) as client:
        result = await client.backfill(
            REPORT, start, end, out=out, chunk="1d", download_concurrency=concurrency,
            submit_concurrency=concurrency, tick=TickPolicy(base=TICK_BASE, minimum=TICK_MINIMUM),
            into=into,
        )  # fmt: skip
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_times()[0] - cpu_started,
        "peak_rss_mb": peak_rss_kib() / 1024,
        "done": result.counts["done"],
    }


def make_csv(path: Path, size_mb: int) -> int:
    """A CSV result of about `size_mb` MB: its rows."""
    rng = random.Random(7)
    target = size_mb * 1024 * 1024
    rows = 0
    with open(path, "w") as out:
        out.write(HEADER)
        written = len(HEADER)
        day = date(2025, 1, 1)
        while written < target:
            lines = []
            for _ in range(10_000):
                line = (
                    f"{day.isoformat()},{20250101_00000000 + rows},{rng.choice((3629, 4120))},"
                    f"{rng.choice(('Online Sale', 'Lead'))},{rng.choice(('PENDING', 'APPROVED'))},"
                    f"{rng.randrange(100, 500000) / 100:.2f},{rng.randrange(10, 5000) / 100:.2f},"
                    f"{rng.choice(('USD', 'EUR'))}\n"
                )
                lines.append(line)
                rows += 1
            text = "".join(lines)
            out.write(text)
            written += len(text)
    return rows


def open_load(kind: str, target: Path, settings: str) -> Any:
    """The destination of `kind` at `target`, with the bounded settings or the earlier ones."""
    url = f"{kind}:////" + str(target).lstrip("/")
    if kind == "duckdb":
        from reportexport_async.destinations.duckdb_table import SETTINGS, DuckDBDestination

        return DuckDBDestination(target, url, settings=SETTINGS if settings == "bounded" else {})
    from reportexport_async.destinations.parquet_files import BOUNDED, Bounds, ParquetDestination

    before = Bounds(block=8 << 20, row_group_rows=0, threads=True)
    return ParquetDestination(target, url, bounds=BOUNDED if settings == "bounded" else before)


def run_load(kind: str, source: Path, target: Path, settings: str) -> dict[str, Any]:
    from reportexport_async.core.chunking import Chunk
    from reportexport_async.core.models import ExportRequest
    from reportexport_async.destinations import SavedChunk
    from reportexport_async.destinations.typed import LoadChunk

    into = open_load(kind, target, settings)
    into.check()
    day = date(2025, 1, 1)
    request = ExportRequest(report_id=REPORT, start=day, end=day)
    saved = SavedChunk("fp", request, Chunk(day, day), source, "sha", "J")
    rss_before = proc_status_kib("VmRSS")
    reset_peak_rss()
    cpu_started, _ = cpu_times()
    started = time.perf_counter()
    loaded = into.load(LoadChunk(saved, "main"))
    into.close()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_times()[0] - cpu_started,
        "rows": loaded.rows,
        "peak_growth_mb": (peak_rss_kib() - rss_before) / 1024,
    }


def child_main(args: argparse.Namespace) -> int:
    spec = json.loads(sys.stdin.readline())
    if args.child in METHODS:
        into = None if args.child == "files" else "duckdb:////" + str(args.target).lstrip("/")
        figures = asyncio.run(run_backfill(spec, args.out, args.ledger, into))
    else:
        kind = args.child.removeprefix("load-")
        figures = run_load(kind, Path(spec["source"]), args.target, spec["settings"])
    figures["method"] = args.child
    print(json.dumps(figures), flush=True)
    return 0


def run_child(method: str, spec: dict[str, Any], *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.destinations", "--child", method, *extra]
    done = subprocess.run(
        argv, input=json.dumps(spec) + "\n", capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed: {done.stderr.strip()[-3000:]}")
    return dict(json.loads([t for t in done.stdout.splitlines() if t.startswith("{")][-1]))


# -- parent -----------------------------------------------------------------------------------


def chunks_part(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    end = datetime.now(UTC).date() - timedelta(days=14)
    start = end - timedelta(days=args.chunks - 1)
    runs = []
    storage = scratch / "sandbox"
    storage.mkdir()
    with start_server(sandbox_argv(storage), "sandbox") as server:
        info = server.info
        base = str(info["base_url"])
        spec = {
            "base_url": base, "account_sid": info["account_sid"],
            "auth_token": info["auth_token"], "start": start.isoformat(),
            "end": end.isoformat(), "concurrency": args.concurrency,
        }  # fmt: skip
        for repetition in range(args.repeats):
            order = METHODS if repetition % 2 == 0 else METHODS[::-1]
            for method in order:
                asyncio.run(control(base, "POST", "reset"))
                out, ledger = scratch / f"out-{method}", scratch / f"ledger-{method}.sqlite"
                target = scratch / f"{method}.duckdb"
                run = run_child(method, spec, "--out", str(out), "--ledger", str(ledger),
                                "--target", str(target))  # fmt: skip
                if run["done"] != args.chunks:
                    raise RuntimeError(f"{method}: {run['done']} chunks done of {args.chunks}")
                if method == "duckdb":
                    import duckdb

                    with duckdb.connect(str(target), read_only=True) as db:
                        found = db.execute("SELECT count(DISTINCT _chunk) FROM main." + REPORT)
                        run["chunks_in_table"] = found.fetchone()[0]  # type: ignore[index]
                    if run["chunks_in_table"] != args.chunks:
                        raise RuntimeError(f"duckdb holds {run['chunks_in_table']} chunks")
                shutil.rmtree(out, ignore_errors=True)
                for leftover in [*scratch.glob(ledger.name + "*"), *scratch.glob("*.duckdb*")]:
                    leftover.unlink()
                run["round"] = repetition + 1
                runs.append(run)
                print(f"  round {repetition + 1} {method:6} {run['seconds']:7.1f} s  CPU "
                      f"{run['cpu_seconds']:6.1f} s  peak {run['peak_rss_mb']:6.1f} MB",
                      flush=True)  # fmt: skip
    return runs


def large_part(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    runs = []
    for size_mb in args.sizes:
        source = scratch / "large.csv"
        rows = make_csv(source, size_mb)
        size = source.stat().st_size

        def load(kind: str, settings: str, source: Path = source, rows: int = rows,
                 size: int = size) -> dict[str, Any]:  # fmt: skip
            target = scratch / f"large-{kind}-{settings}"
            spec = {"source": str(source), "settings": settings}
            run = run_child(f"load-{kind}", spec, "--target", str(target))
            if run["rows"] != rows:
                raise RuntimeError(f"{kind}: {run['rows']} rows loaded of {rows}")
            run.update(method=kind, settings=settings, rows=rows, size=size)
            print(f"  {size / 1024**2:6.0f} MB {kind:7} {settings:7} {run['seconds']:6.1f} s"
                  f"  peak growth {run['peak_growth_mb']:6.1f} MB", flush=True)  # fmt: skip
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(target.with_name(target.name + ".tmp"), ignore_errors=True)
            target.unlink(missing_ok=True)
            return run

        # Each load is a process of its own: running several at once changes their seconds,
        # not their peak RSS.
        loads = [(kind, settings) for kind in ("duckdb", "parquet") for settings in SETTINGS]
        with ThreadPoolExecutor(args.jobs) as pool:
            runs += pool.map(lambda pair: load(*pair), loads)
        source.unlink()
    return runs


def render(args: argparse.Namespace, command: str, chunk_runs: list[dict[str, Any]],
           load: float) -> str:  # fmt: skip
    def value(method: str, key: str) -> float:
        return median([float(r[key]) for r in chunk_runs if r["method"] == method])

    lines = section_head(SECTION_TITLE, command, load)
    lines += [
        f"Part 1: `Client.backfill` of {args.chunks:,} one-day chunks of `{REPORT}` (5 rows a "
        f"day, instant jobs, no limits, concurrency {args.concurrency}), files only against "
        f'files + `into="duckdb:///..."`; medians of {args.repeats} round(s), each method in '
        "its own process, the order alternating.",
        "",
        "| Figure | Files only | Files + DuckDB | Ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, key, scale, digits in (
        ("Wall time (s)", "seconds", 1.0, 1),
        ("Client CPU per chunk (ms)", "cpu_seconds", 1000.0 / args.chunks, 2),
        ("Peak RSS of the process (MB)", "peak_rss_mb", 1.0, 1),
    ):
        files, duck = value("files", key) * scale, value("duckdb", key) * scale
        lines.append(f"| {label} | {fmt(files, digits)} | {fmt(duck, digits)} | "
                     f"{fmt(ratio(duck, files), 2)} |")  # fmt: skip
    lines.append("")
    lines.append(f"The large results: see `{LARGE_TITLE.removeprefix('## ')}`.")
    return "\n".join(lines) + "\n"


def render_large(args: argparse.Namespace, command: str, runs: list[dict[str, Any]],
                 load: float) -> str:  # fmt: skip
    from reportexport_async.destinations.duckdb_table import MEMORY_LIMIT, SETTINGS
    from reportexport_async.destinations.parquet_files import BOUNDED

    lines = section_head(LARGE_TITLE, command, load)
    lines += [
        "CSV results (the action listing's 8 columns, synthetic rows) loaded by each typed "
        f"destination, each load in its own process ({args.jobs} at a time: their seconds are "
        "those of a shared machine); the peak RSS growth is the load's (VmHWM "
        "reset just before it), which includes judging the values (one batch of Python rows). "
        f"`bounded`: DuckDB with {dict(SETTINGS)} (spilling to `<database>.tmp/`), Parquet "
        f"with {BOUNDED}; `before`: DuckDB's own defaults, Parquet with 8 MB blocks read ahead "
        f"by Arrow's threads and a row group per block. DuckDB's stated bound: {MEMORY_LIMIT}.",
        "",
        "| File (MB) | Rows | Destination | Settings | Seconds | CPU seconds | MB/s "
        "| Peak RSS growth (MB) |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        mb = run["size"] / 1024**2
        lines.append(f"| {mb:,.0f} | {run['rows']:,} | {run['method']} | {run['settings']} | "
                     f"{fmt(run['seconds'], 1)} | {fmt(run['cpu_seconds'], 1)} | "
                     f"{fmt(mb / run['seconds'], 1)} | "
                     f"{fmt(run['peak_growth_mb'], 1)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.destinations")
    parser.add_argument("--chunks", type=int, default=10_000)
    # `--size-mb` is the earlier spelling (`python -m benchmarks --quick` passes it).
    parser.add_argument("--sizes", "--size-mb", default="100,1024", help="MB of each result")
    parser.add_argument("--quick", action="store_true", help="500 chunks; 10 and 50 MB")
    parser.add_argument("--jobs", type=int, default=1, help="large loads run at once")
    parser.add_argument("--part", choices=("both", "chunks", "large"), default="both")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--results", type=Path, default=RESULTS_FILE)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ledger", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.sizes = 500, "10,50"
    args.sizes = [int(size) for size in str(args.sizes).split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    given = list(sys.argv[1:] if argv is None else argv)
    command = command_line("benchmarks.destinations", [a for a in given if a != "--no-write"])
    started = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="destinations-") as folder:
        scratch = Path(folder)
        if args.part != "large":
            chunk_runs = chunks_part(args, scratch)
            section = render(args, command, chunk_runs, load)
            publish(section, SECTION_TITLE, args.results, write=not args.no_write, started=started)
        if args.part != "chunks":
            large_runs = large_part(args, scratch)
            section = render_large(args, command, large_runs, load)
            publish(section, LARGE_TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
