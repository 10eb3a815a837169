"""`python -m benchmarks.baselines NAME`: one baseline run in this fresh process. The scenario
comes as one JSON line on stdin (it carries the token); one JSON line of figures goes to stdout:
real and simulated seconds, CPU time, idle and peak RSS, 429s seen."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp

from ..child import read_spec, reply
from ..procstats import cpu_seconds, peak_rss_kib, proc_status_kib
from . import BASELINES
from .common import Api, sandbox_clock


async def measured(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        began, scale = await sandbox_clock(session, spec["base_url"])
        api = Api(session, spec, scale)
        idle_kib = proc_status_kib("VmRSS")
        cpu_started = cpu_seconds()
        started = time.perf_counter()
        figures = await BASELINES[name](api, spec)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_started
        ended, _ = await sandbox_clock(session, spec["base_url"])
    figures.update(
        method=name,
        seconds=seconds,
        cpu_seconds=cpu,
        sim_seconds=(ended - began).total_seconds(),
        idle_rss_bytes=idle_kib * 1024,
        peak_rss_bytes=peak_rss_kib() * 1024,
        client_429=api.rate_limited,
    )
    return figures


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in BASELINES:
        print(f"usage: python -m benchmarks.baselines {{{','.join(BASELINES)}}}", file=sys.stderr)
        return 2
    return reply(asyncio.run(measured(argv[0], read_spec())))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
