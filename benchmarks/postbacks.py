"""Postbacks against polling: the same 100-job backfill, once with the sandbox
delivering job-completion postbacks to a `PostbackReceiver` (polling only as a 10-minute safety
net), once with polling only; both in scaled time (sandbox and client clocks run together).

    .venv/bin/python -m benchmarks.postbacks [--jobs 100] [--scale 120] [--repeats 3]

Figures: API calls per job by endpoint (server-side counts), 429s, sandbox minutes to the last
file, real seconds, and the time from a postback's arrival to the download it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from reportexport_async import Client
from reportexport_async.sandbox import Sandbox
from reportexport_async.transport.postbacks import PostbackReceiver

from .results import API, update_results


async def one_run(jobs: int, scale: float, postbacks: bool, folder: Path) -> dict[str, Any]:
    receiver = PostbackReceiver(token="benchmark-token-0123456789")
    async with (
        receiver,
        Sandbox(
            time_scale=scale,
            job_duration=(30, 1200),  # 30 s to 20 min, as in the strategies benchmark
            rows_per_day=20,
            postback_url=receiver.url if postbacks else None,
        ) as sandbox,
        Client.for_sandbox(sandbox, ledger=folder / "ledger.sqlite") as client,
    ):
        start = date(2025, 1, 1)
        started_real = time.perf_counter()
        started_sandbox = sandbox.now()
        result = await client.backfill(
            "mp_action_listing_fast", start, start + timedelta(days=jobs - 1),
            out=folder / "out", chunk="1d", postbacks=receiver if postbacks else None,
        )  # fmt: skip
        real = time.perf_counter() - started_real
        simulated = (sandbox.now() - started_sandbox).total_seconds()
        stats = sandbox.stats()
    assert result.complete, result.counts
    latency = sorted(result.postback_latency)
    return {
        "calls": {name: stats["calls"][name] for name in API},
        "api_calls_per_job": sum(stats["calls"][name] for name in API) / jobs,
        "rate_limited": stats["rate_limited"],
        "real_seconds": real,
        "sandbox_minutes": simulated / 60,
        "postbacks_delivered": stats["postbacks"]["delivered"],
        "latency_median_ms": 1000 * latency[len(latency) // 2] if latency else None,
        "latency_p95_ms": 1000 * latency[int(len(latency) * 0.95)] if latency else None,
        "downloads_from_postbacks": len(latency),
    }


async def main_async(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"postbacks": [], "polling": []}
    for repeat in range(args.repeats):
        order = ["postbacks", "polling"] if repeat % 2 == 0 else ["polling", "postbacks"]
        for mode in order:
            with tempfile.TemporaryDirectory() as folder:
                run = await one_run(args.jobs, args.scale, mode == "postbacks", Path(folder))
            runs[mode].append(run)
            print(
                f"  {mode:9} {run['api_calls_per_job']:.3f} calls/job, "
                f"{run['sandbox_minutes']:.1f} sandbox min, {run['real_seconds']:.1f} s, "
                f"latency median {run['latency_median_ms']} ms",
                flush=True,
            )

    def median(mode: str, key: str) -> float | None:
        values = [run[key] for run in runs[mode] if run[key] is not None]
        return statistics.median(values) if values else None

    def fmt(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    def both(key: str) -> tuple[float | None, float | None]:
        return median("postbacks", key), median("polling", key)

    pb_calls, _ = both("api_calls_per_job")
    met = "yes" if pb_calls is not None and pb_calls <= 2.05 else "**no**"
    rows = [
        ("API calls per job (server-side)", *both("api_calls_per_job"), "≤ 2.05", met),
        ("429s received", *both("rate_limited"), "0", ""),
        ("Sandbox minutes to the last file", *both("sandbox_minutes"), "–", ""),
        ("Real seconds", *both("real_seconds"), "–", ""),
        ("Postback to download start, median (ms)", both("latency_median_ms")[0], None, "–", ""),
        ("Postback to download start, p95 (ms)", both("latency_p95_ms")[0], None, "–", ""),
    ]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs "
        f"(`uname -m` {platform.machine()}), Python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.2f} at the start.",
        "",
        "```sh",
        " ".join([".venv/bin/python -m benchmarks.postbacks", *sys.argv[1:]]),
        "```",
        "",
        f"{args.jobs} one-day chunks of `mp_action_listing_fast`, jobs of 30 s to 20 min, sandbox "
        f"and client clocks both at {args.scale:g} sandbox seconds per real second; medians of "
        f"{args.repeats} runs per mode, modes alternated.",
        "",
        "| Figure | Postbacks | Polling only | Target | Met? |",
        "|---|---:|---:|---|---|",
    ]
    for name, with_pb, polling, target, met in rows:
        lines.append(f"| {name} | {fmt(with_pb)} | {fmt(polling)} | {target} | {met} |")
    for mode in ("postbacks", "polling"):
        calls = {k: statistics.median(r["calls"][k] for r in runs[mode]) for k in API}
        lines.append("")
        lines.append(f"- {mode}: calls by endpoint (medians) {calls}.")
    lines.append(
        "- API calls are the impact.com endpoints (ReportExport, GetJob, ListJobs, Download, "
        "Replay); the signed-URL fetches go to cloud storage and spend nothing."
    )
    lines.append(
        "- With postbacks, a job costs its submit and its download; polling is only the safety "
        "net, one listing call per 10 sandbox minutes for all jobs in flight. Polling only ticks "
        "every 10 sandbox seconds (one listing call for all jobs in flight), so its extra calls "
        "grow with the time jobs take, not with their number."
    )
    update_results(Path(args.results), "## Postbacks against polling", "\n".join(lines))
    print(f"updated {args.results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--scale", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
