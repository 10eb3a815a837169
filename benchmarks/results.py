"""Writing `benchmarks/RESULTS.md`: each benchmark owns one `## ...` section, replaces only it."""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"
#: The sandbox's counts that are impact.com API calls (the hourly bucket); the signed-URL fetches
#: go to cloud storage and spend nothing. `Reports` is the catalog look-up of `check_reports`.
API = ("ReportExport", "GetJob", "ListJobs", "Download", "Replay", "Reports")


def update_results(path: Path, title: str, body: str) -> None:
    """Replace (or append) the section headed `title` with `title` + `body`; keep the others."""
    section = f"{title}\n\n{body.strip()}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == title), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values (a figure that was not measured)."""
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 0) -> str:
    """A figure with thousands separators; `n/a` for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(value: float, baseline: float) -> float:
    """value / baseline; NaN when the baseline is missing, zero or NaN."""
    return value / baseline if baseline and not math.isnan(baseline) else math.nan


def command_line(module: str, argv: Sequence[str]) -> str:
    """How a benchmark was run, for its section: `.venv/bin/python -m <module> <args>`."""
    return f".venv/bin/python -m {module}" + "".join(f" {shlex.quote(a)}" for a in argv)


def publish(section: str, title: str, results: Path, *, write: bool, started: float) -> None:
    """Print a benchmark's section and how long it took; write it into `results` (replacing
    only the section headed `title`) unless `write` is off."""
    print()
    print(section)
    print(f"(took {time.perf_counter() - started:.0f} s)")
    if write:
        update_results(results, title, section.removeprefix(title))
        print(f"updated {results}")


def section_head(title: str, command: str, load_average: float) -> list[str]:
    """The first lines of a section: when, on what, under what load, and the command."""
    import aiohttp  # only the benchmarks that measure aiohttp-based code call this

    return [
        title,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs "
        f"(`uname -m` {platform.machine()}), Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}; load average {load_average:.2f} at the start "
        "(other work on the machine lowers the figures).",
        "",
        "```sh",
        command,
        "```",
        "",
    ]
