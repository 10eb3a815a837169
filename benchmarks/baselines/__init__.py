"""Baselines for the strategies benchmark: the strategies users would otherwise pick, each written
plainly with aiohttp (never the library) and run against the same sandbox as the library.

- `naive`: the guide's steps written naively. Every chunk at once: submit, poll `GET /Jobs/{Id}`
  every 5 seconds (the fixed interval of the most used generic async-job framework), read the
  download into memory, write it.
- `per_day`: one job per day of data (per-day chunks, as several connectors do), submits four at a
  time in date order, each job polled every 5 seconds, downloads streamed to disk. When the daily
  ReportExport quota refuses a submit it stops submitting, finishes what is in flight and
  continues from its cursor at the next quota day.
- `resubmit`: a careful connector that keeps its job ids in memory: the library's chunks, each
  job polled 5 s growing to 60 s, downloads streamed to disk; it remembers nothing, so every run
  submits every chunk again.

Run one with `python -m benchmarks.baselines NAME` (the scenario as JSON on stdin; one JSON line
of figures on stdout). This package imports only aiohttp and the standard library, so that a
baseline's memory and CPU are its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import naive, per_day, resubmit
from .common import Api

__all__ = ["BASELINES", "Api"]

BASELINES: dict[str, Callable[[Api, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "naive": naive.run,
    "per_day": per_day.run,
    "resubmit": resubmit.run,
}
