"""A short text summary of a py-spy profile (`py-spy record --format raw --threads`): where the
samples of a process went, by the part of the code that was running, so that RESULTS.md can say
where one chunk's CPU time goes without a flame graph.

    .venv/bin/python -m benchmarks.profile_summary FILE [--chunks N]

Each sample (a stack; threads waiting on a lock or in `select` excluded) is given to the
innermost frame that belongs to one of `PARTS`; a sample with none of them is `other`. The
event-loop thread and the other threads (SQLite, file writes, hashing) are counted apart.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

#: (part, substrings of a frame's file): the first part whose substring the innermost matching
#: frame holds wins.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ledger (SQLite)", ("reportexport_async/ledger/", "sqlite3/")),
    (
        "download to disk (write, fsync, hash)",
        ("reportexport_async/transport/downloads.py", "reportexport_async/machine/files.py"),
    ),
    (
        "response parsing (pydantic, models)",
        (
            "pydantic",
            "reportexport_async/core/models.py",
            "reportexport_async/core/request_models.py",
        ),
    ),
    ("JSON", ("json/",)),
    ("aiohttp (HTTP client)", ("aiohttp/", "yarl/", "multidict/")),
    (
        "session and limiter",
        ("reportexport_async/transport/session.py", "reportexport_async/transport/ratelimit.py"),
    ),
    ("pure core (requests, answers)", ("reportexport_async/core/",)),
    (
        "orchestrator (plan, track, events)",
        ("reportexport_async/jobs/orchestrator/", "reportexport_async/jobs/exports.py"),
    ),
    ("other library code", ("reportexport_async/",)),
    ("anyio (tasks, thread hops)", ("anyio/",)),
    ("threads (pool machinery)", ("threading.py", "concurrent/futures/", "queue.py")),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
#: Innermost frames of a thread that waits (py-spy counts a thread blocked on a lock as active;
#: the ledger's thread waits in a C call, `SimpleQueue.get`, so its own frame is the innermost).
IDLE = (
    "Condition.wait (threading.py",
    "Selector.select (selectors.py",
    "Queue.get (",
    "_Writer._serve (reportexport_async/ledger/sqlite.py",
    "_worker (concurrent/futures/thread.py",  # a pool thread waiting for work (a C call too)
)
_FRAME_FILE = re.compile(r"\(([^()]*?):\d+\)$")


def part_of(frames: Sequence[str]) -> str:
    for frame in reversed(frames):  # innermost first
        found = _FRAME_FILE.search(frame)
        where = found.group(1) if found else frame
        for part, needles in PARTS:
            if any(needle in where for needle in needles):
                return part
    return "other"


def summarize(raw: str, chunks: int | None = None, rate: int | None = None) -> str:
    """A Markdown table: samples per part, in the event loop and in other threads."""
    loop: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    main_thread: str | None = None
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if len(frames) == 1 or any(idle in frames[-1] for idle in IDLE):
            continue  # waiting, or no Python frame to attribute the sample to
        thread = frames[0] if frames[0].startswith(("thread", "process")) else ""
        # The event loop runs in the process's main thread: the one whose stack starts at
        # `<module>` of the `-m` entry point.
        if main_thread is None and any("asyncio/runners.py" in f for f in frames):
            main_thread = thread
        target = loop if thread == main_thread else threads
        target[part_of(frames)] += int(count_text)
    total = sum(loop.values()) + sum(threads.values())
    lines = [
        "| Part | Event loop (% of samples) | Other threads (%) | Total (%) |"
        + (" ms per chunk |" if chunks and rate else ""),
        "|---|---:|---:|---:|" + ("---:|" if chunks and rate else ""),
    ]
    parts = sorted(set(loop) | set(threads), key=lambda p: -(loop[p] + threads[p]))
    for part in parts:
        both = loop[part] + threads[part]
        row = (
            f"| {part} | {100 * loop[part] / total:.1f} | {100 * threads[part] / total:.1f} | "
            f"{100 * both / total:.1f} |"
        )
        if chunks and rate:
            row += f" {1000 * both / rate / chunks:.2f} |"
        lines.append(row)
    lines.append(
        f"| all | {100 * sum(loop.values()) / total:.1f} | "
        f"{100 * sum(threads.values()) / total:.1f} | 100.0 |"
        + (f" {1000 * total / rate / chunks:.2f} |" if chunks and rate else "")
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary")
    parser.add_argument("raw", type=Path, help="py-spy record --format raw --threads output")
    parser.add_argument("--chunks", type=int, help="chunks the run did (for ms per chunk)")
    parser.add_argument("--rate", type=int, help="py-spy's samples per second")
    args = parser.parse_args(argv)
    print(summarize(args.raw.read_text(), args.chunks, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
