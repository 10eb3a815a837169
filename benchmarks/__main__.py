"""`python -m benchmarks`: every benchmark in one command, each beside its baseline in
the same run, then a summary of the machine, the commands and every target.

    .venv/bin/python -m benchmarks                      # the full set (takes a long while)
    .venv/bin/python -m benchmarks --quick              # small sizes: a smoke run
    .venv/bin/python -m benchmarks --only strategies --only postbacks

Each benchmark runs as its own process (`python -m benchmarks.<module>`), so that its memory and
CPU figures are not disturbed by the others; each rewrites its own `## ...` section of
`RESULTS.md`. This command then adds `## One command: python -m benchmarks` at the top
and writes `RESULTS.json` beside it: per benchmark its command, time, exit status and table (each
figure with the library's value, the baselines', the ratio, the target and whether it was met).
`--quick` writes to a temporary folder unless `--results` says where, so a smoke run never
replaces the measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from .results import RESULTS_FILE, update_results

SECTION_TITLE = "## One command: python -m benchmarks"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    title: str  # the RESULTS.md section it writes
    what: str
    quick: tuple[str, ...]


BENCHMARKS = (
    Benchmark(
        "throughput",
        "benchmarks.sandbox_throughput",
        "## Sandbox throughput",
        "the sandbox serving 1 GB and answering status polls, beside bare aiohttp servers",
        ("--size-mb", "50", "--seconds", "1", "--repeats", "1"),
    ),
    Benchmark(
        "download",
        "benchmarks.client_download",
        "## Client download",
        "the client downloading 1 GB beside a bare aiohttp loop (speed, peak memory, CPU)",
        ("--size-mb", "50", "--repeats", "1"),
    ),
    Benchmark(
        "postbacks",
        "benchmarks.postbacks",
        "## Postbacks against polling",
        "the 100-job backfill with postbacks and with polling only",
        ("--jobs", "20", "--repeats", "1"),
    ),
    Benchmark(
        "backfill_10k",
        "benchmarks.backfill_10k",
        "## Backfill of 10,000 chunks",
        "10,000 instant chunks, limits off, beside a minimal aiohttp script",
        ("--chunks", "300", "--repeats", "1"),
    ),
    Benchmark(
        "many_accounts",
        "benchmarks.many_accounts",
        "## Many accounts in one process",
        "1,000 accounts x 10 instant chunks in one process, beside one account x 10,000 chunks",
        ("--accounts", "20", "--repeats", "1"),
    ),
    Benchmark(
        "strategies",
        "benchmarks.strategies",
        "## Strategies: the library against the alternatives",
        "the 90-day, 3-report backfill and its second run, beside the naive, per_day and "
        "resubmit baselines",
        ("--days", "14", "--rounds", "1", "--scale", "600"),
    ),
    Benchmark(
        "sync_days",
        "benchmarks.sync_days",
        "## Daily sync: 30 days against re-exporting and never refreshing",
        "30 simulated days of daily syncs of 2 reports, beside re-exporting the last days with "
        "new submits and a daily backfill that never refreshes",
        ("--days", "5"),
    ),
    Benchmark(
        "workers",
        "benchmarks.workers",
        "## Several workers and the ledger's cost",
        "1, 2, 4, 8 worker processes on 400 chunks with a PostgreSQL ledger; the ledger's cost "
        "per chunk, PostgreSQL against SQLite",
        ("--workers", "1,2", "--chunks", "200", "--repeats", "1"),
    ),
    Benchmark(
        "destinations",
        "benchmarks.destinations",
        "## Typed destinations: DuckDB beside the files",
        "10,000 chunks into DuckDB beside the files only (CPU per chunk, peak memory); a 1 GB "
        "result loaded into DuckDB and Parquet with bounded memory",
        ("--chunks", "300", "--size-mb", "50"),
    ),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "load_average": round(os.getloadavg()[0], 2),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    return info


def section_of(text: str, title: str) -> str:
    lines = text.splitlines()
    if title not in lines:
        return ""
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).strip()


def table_of(section: str) -> list[dict[str, str]]:
    """The first Markdown table of a section, as one dict per row (header -> cell)."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    if len(rows) < 2:
        return []
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header = cells[0]
    return [dict(zip(header, row, strict=False)) for row in cells[2:]]


def run_one(bench: Benchmark, args: argparse.Namespace, results: Path) -> dict[str, Any]:
    extra = list(bench.quick) if args.quick else []
    if results != RESULTS_FILE:
        extra += ["--results", str(results)]
    command = f".venv/bin/python -m {bench.module}" + "".join(f" {shlex.quote(a)}" for a in extra)
    detail_file = None
    if bench.name == "strategies":  # its every run, for RESULTS.json (left out of the command)
        detail_file = results.with_name(results.stem + ".strategies.json.tmp")
        extra += ["--json", str(detail_file)]
    print(f"\n=== {bench.name}: {command}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", bench.module, *extra], cwd=ROOT)
    seconds = time.perf_counter() - started
    text = results.read_text(encoding="utf-8") if results.exists() else ""
    section = section_of(text, bench.title) if done.returncode == 0 else ""
    outcome: dict[str, Any] = {
        "module": bench.module,
        "what": bench.what,
        "command": command,
        "seconds": round(seconds, 1),
        "returncode": done.returncode,
        "table": table_of(section),
    }
    if detail_file is not None and detail_file.exists():
        outcome["detail"] = json.loads(detail_file.read_text(encoding="utf-8"))
        detail_file.unlink()
    print(f"=== {bench.name}: exit {done.returncode} after {seconds:.0f} s", flush=True)
    return outcome


def render(
    command: str, info: dict[str, Any], outcomes: dict[str, dict[str, Any]], started: datetime
) -> str:
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info.get('cpu_model', 'an unknown CPU')}, "
        f"{info['cpus']} CPUs (`uname -m` {info['machine']}), "
        f"{info.get('memory_gb', '?')} GB of memory, {info['system']}, Python {info['python']}, "
        f"aiohttp {info['aiohttp']}; load average {info['load_average']} at the start (the "
        "machine is shared: every figure is measured beside its baseline in the same run).",
        "",
        "```sh",
        command,
        "```",
        "",
        "| Benchmark | What | Command | Time (s) | Exit |",
        "|---|---|---|---:|---:|",
    ]
    for bench in BENCHMARKS:
        if bench.name in outcomes:
            o = outcomes[bench.name]
            lines.append(
                f"| [{bench.name}](#{_anchor(bench.title)}) | {o['what']} | `{o['command']}` | "
                f"{o['seconds']:,.0f} | {o['returncode']} |"
            )
    lines += [
        "",
        "Every target, as its section reports it (values: library first, then the baselines, "
        "then the ratios library / baseline):",
        "",
        "| Benchmark | Figure | Values | Target | Met? |",
        "|---|---|---|---|---|",
    ]
    for bench in BENCHMARKS:
        for row in outcomes.get(bench.name, {}).get("table", []):
            target = row.get("Target", "–")
            if target in ("–", "", "-"):
                continue
            figure = next(iter(row.values()))
            values = "; ".join(
                f"{k} {v}" for k, v in list(row.items())[1:] if k not in ("Target", "Met?")
            )
            lines.append(
                f"| {bench.name} | {figure} | {values} | {target} | {row.get('Met?', '')} |"
            )
    lines += [
        "",
        "A **no** is explained in the notes of its section. `RESULTS.json` beside this file "
        "holds the same tables as data, with the machine, the commands and, for the strategies, "
        "every run.",
    ]
    return "\n".join(lines)


def _anchor(title: str) -> str:
    text = title.removeprefix("## ").lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def write_summary(results: Path, body: str) -> None:
    """The summary goes first: add its heading under the file's title, then fill it."""
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    if SECTION_TITLE not in text.splitlines():
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{SECTION_TITLE}\n\n(pending)\n\n{rest.lstrip(chr(10))}"
        results.write_text(text, encoding="utf-8")
    update_results(results, SECTION_TITLE, body)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="Markdown file (default benchmarks/RESULTS.md; with --quick, a temporary folder's)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = list(argv if argv is not None else sys.argv[1:])
    if args.results is not None:
        results = args.results.resolve()
    elif args.quick:
        results = Path(tempfile.mkdtemp(prefix="benchmarks-quick-")) / "RESULTS.md"
    else:
        results = RESULTS_FILE
    command = ".venv/bin/python -m benchmarks" + "".join(f" {shlex.quote(a)}" for a in given)
    started = datetime.now(UTC)
    info = machine()
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    outcomes = {bench.name: run_one(bench, args, results) for bench in chosen}
    write_summary(results, render(command, info, outcomes, started))
    json_path = results.with_suffix(".json")
    data = {
        "command": command,
        "started": started.isoformat(),
        "machine": info,
        "quick": args.quick,
        "benchmarks": outcomes,
    }
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    failed = [name for name, o in outcomes.items() if o["returncode"] != 0]
    print(f"\nwrote {results} and {json_path}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
