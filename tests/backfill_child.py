"""A backfill in its own process, for the crash tests: `python -m tests.backfill_child JSON`.

JSON holds the sandbox's `base_url`, `account_sid`, `auth_token` and `time_scale` (this process
reads the sandbox's clock from `/_sandbox/stats` and runs its own at the same pace), the `ledger`
(a path or a `postgresql://` URL), the `out` folder, `start`/`end` (ISO days), `reports` (a list
of `[report_id, {filters}]`), `chunk`, `daily_limit` (the ReportExport quota, default 100) and,
optionally, `lease_seconds` (how long a claim lasts unrenewed), `download_concurrency` and
`clock_skew` (seconds this process's own clock is off the sandbox's: the ledger, the limiter and
the client all run on the server's clock that the sandbox's answers show, whatever it is). It runs
one `backfill` with DEBUG logging on stderr and prints one JSON line with the chunk counts and the
calls this process made.

Test-side only, the environment variable `BACKFILL_CHILD_KILL=PHASE:N` makes this process SIGKILL
itself at a chosen moment (the library is not touched; its objects are wrapped here):

- `event:N`: at the N-th progress event (the plan is event 1);
- `submit-before:N`: at the N-th ReportExport, before it is sent (a claim without a job id);
- `submit-after:N`: right after the N-th ReportExport answered, before the job id is recorded
  (the window the service's own de-duplication covers);
- `refresh:N`: at the N-th status call (listing or GET of a job: waiting);
- `download:N`: in the N-th download, with the bytes in `<file>.part` and before the rename;
- `manifest:N`: on the N-th manifest write, half-way through writing `manifest.json.part`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from reportexport_async import (
    ClientConfig,
    PollPolicy,
    RateLimiter,
    RateLimitPolicy,
    ReportExportClient,
    ScaledClock,
)
from reportexport_async.jobs import orchestrator as orchestrator_module
from reportexport_async.jobs.orchestrator import ExportSpec, ProgressEvent, backfill
from reportexport_async.ledger.store import open_ledger
from reportexport_async.machine.files import part_of
from reportexport_async.transport import downloads as downloads_module
from reportexport_async.transport.server_clock import ServerClock

KILL_ENV = "BACKFILL_CHILD_KILL"


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class Killer:
    """Counts the moments of one phase and kills this process at the N-th."""

    def __init__(self, spec: str | None) -> None:
        self.phase, _, count = (spec or "").partition(":")
        self.at = int(count) if count else 0
        self.seen = 0

    def tick(self, phase: str) -> None:
        if phase == self.phase:
            self.seen += 1
            if self.seen >= self.at:
                die()


def install(killer: Killer, client: ReportExportClient) -> None:
    """Wrap the client, the downloader and the manifest writer so `killer` can strike there."""
    export, get_job, iter_jobs = client.export, client.get_job, client.iter_jobs

    async def export_then_maybe_die(request: Any) -> Any:
        killer.tick("submit-before")
        ticket = await export(request)
        killer.tick("submit-after")
        return ticket

    async def get_job_then_maybe_die(job_id: str) -> Any:
        killer.tick("refresh")
        return await get_job(job_id)

    def iter_jobs_then_maybe_die(*args: Any, **kwargs: Any) -> Any:
        killer.tick("refresh")
        return iter_jobs(*args, **kwargs)

    client.export = export_then_maybe_die  # type: ignore[method-assign]
    client.get_job = get_job_then_maybe_die  # type: ignore[method-assign]
    client.iter_jobs = iter_jobs_then_maybe_die  # type: ignore[method-assign]

    finish = downloads_module._DiskWriter.finish

    def finish_or_die(self: Any, part: Path, dest: Path) -> None:
        if killer.phase == "download":
            self.handle.flush()  # the .part holds the bytes; the rename never happens
            killer.tick("download")
        finish(self, part, dest)

    downloads_module._DiskWriter.finish = finish_or_die  # type: ignore[method-assign]

    write_whole = downloads_module._write_whole  # small results skip the writer threads

    def write_whole_or_die(body: bytes, dest: Path) -> str:
        if killer.phase == "download":
            with open(part_of(dest), "wb") as handle:  # the .part holds the bytes; no rename
                handle.write(body)
            killer.tick("download")
        return write_whole(body, dest)

    downloads_module._write_whole = write_whole_or_die

    write_manifest = orchestrator_module.write_manifest

    def write_manifest_or_die(state: Any, *args: Any) -> Path:
        if killer.phase == "manifest":
            part = state.out / "manifest.json.part"
            state.out.mkdir(parents=True, exist_ok=True)
            with open(part, "w", encoding="utf-8") as handle:
                handle.write('{"generated_at": "half-written", "chunks": [')
                handle.flush()
                os.fsync(handle.fileno())
                killer.tick("manifest")
        return write_manifest(state, *args)

    orchestrator_module.write_manifest = write_manifest_or_die


async def main(args: dict[str, Any]) -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    killer = Killer(os.environ.get(KILL_ENV))
    scale = float(args["time_scale"])
    with urllib.request.urlopen(args["base_url"] + "/_sandbox/stats", timeout=10) as answer:
        now = datetime.fromisoformat(json.load(answer)["now"])
    machine = ScaledClock(
        start=now + timedelta(seconds=float(args.get("clock_skew", 0))), scale=scale
    )
    clock = ServerClock(machine)
    clock.ask_before_spending = True  # as a `Client` does: the first submit asks the time first
    config = ClientConfig(
        account_sid=args["account_sid"],
        auth_token=args["auth_token"],
        account_type="Mediapartners",
        base_url=args["base_url"],
        poll=PollPolicy(initial=5.0, maximum=60.0),
    )
    specs = [ExportSpec(report, dict(filters)) for report, filters in args["reports"]]

    def on_event(event: ProgressEvent) -> None:
        killer.tick("event")

    lease = args.get("lease_seconds")
    lease_time = None if lease is None else timedelta(seconds=float(lease))
    async with open_ledger(args["ledger"], clock=clock, lease=lease_time) as ledger:
        policy = RateLimitPolicy(daily_report_export=int(args.get("daily_limit", 100)))
        limiter = RateLimiter(policy, clock=clock, store=ledger.counters)
        async with ReportExportClient(config, limiter=limiter, clock=clock) as client:
            install(killer, client)
            result = await backfill(
                client,
                ledger,
                specs,
                date.fromisoformat(args["start"]),
                date.fromisoformat(args["end"]),
                out_dir=Path(args["out"]),
                chunk=args.get("chunk", "1d"),
                on_event=on_event,
                **(
                    {"download_concurrency": int(args["download_concurrency"])}
                    if "download_concurrency" in args
                    else {}
                ),
            )
    print(
        json.dumps(
            {
                "counts": result.counts,
                "calls": dict(result.calls),
                "manifest": str(result.manifest_path),
            }
        ),
        flush=True,
    )
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
