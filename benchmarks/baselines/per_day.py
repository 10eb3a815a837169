"""Baseline (b), `per_day`: one job per day of data, as several connectors do. Submits go four at
a time in date order (a cursor); each job is polled every 5 s and streamed to disk. A 429 from
the daily ReportExport quota stops the submits: what is in flight is finished, and the connector
continues from its cursor at its next run, after the quota's reset. The harness lets that day
pass at once with `POST /_sandbox/advance` (the wait is in the simulated time reported)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Any

from .common import Api, Chunk, QuotaRefused, every, finish_to_file, plan

POLL_SECONDS = 5.0
SUBMITTERS = 4


async def one_day(api: Api, cursor: deque[Chunk], out: Path) -> tuple[int, list[float]]:
    """Submit from the cursor until it is empty or the quota refuses; finish every job. Returns
    the bytes written and, per refusal, the real monotonic time of the reset it announced."""
    refused: list[float] = []
    jobs: list[asyncio.Task[int]] = []

    async def submitter() -> None:
        while cursor and not refused:
            chunk = cursor.popleft()
            try:
                job_url = await api.submit(chunk)
            except QuotaRefused as exc:
                cursor.appendleft(chunk)  # the cursor stays on it
                refused.append(time.monotonic() + exc.retry_after / api.scale)
                return
            pauses = every(POLL_SECONDS)
            jobs.append(asyncio.create_task(finish_to_file(api, job_url, chunk, out, pauses)))

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    return sum(await asyncio.gather(*jobs)), refused


async def run(api: Api, spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    chunks = plan(spec, 1)
    cursor = deque(chunks)
    received = 0
    quota_days = 0
    while cursor:
        quota_days += 1
        written, refused = await one_day(api, cursor, out)
        received += written
        if cursor:
            if not refused:
                raise RuntimeError("submits stopped without a quota refusal")
            # The next scheduled run, just after the reset the 429s announced.
            await api.advance(max(0.0, max(refused) - time.monotonic()) * api.scale + 1)
    return {"chunks": len(chunks), "bytes": received, "quota_days": quota_days}
