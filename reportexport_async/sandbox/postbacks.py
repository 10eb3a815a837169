"""Job-completion postbacks (docs/api-facts.md §4): due in sandbox time once a job reaches
COMPLETED or
FAILED (plus `postback_delay`), sent as GET with query parameters or POST with a JSON body, and
retried with a doubling back-off on anything but 2xx (the real schedule is not published).

A postback for a job whose result is still being written waits ("parked") until the file is on
disk, so a postback never announces a download that would still answer 202.
"""

from __future__ import annotations

import heapq
import math
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
import anyio
from yarl import URL

from .shared import Due

if TYPE_CHECKING:
    from .faults import Faults
    from .jobs import SandboxJob
    from .shared import Shared


class Postbacks:
    def __init__(self, shared: Shared, faults: Faults) -> None:
        self._shared = shared
        self._faults = faults
        self._wake = anyio.Event()
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._shared.spawn(self._scheduler())

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """Look at the schedule again (the clock moved, or the settings changed)."""
        self._wake.set()

    def schedule(self, job: SandboxJob, final_at: datetime) -> None:
        """The job's postback, due `postback_delay` after it reaches its final state."""
        config = self._shared.config
        if not config.postback_url:
            return
        rng = random.Random(f"{config.seed}:{job.id}:{job.generation}:postback")
        due = final_at + timedelta(seconds=rng.uniform(*config.postback_delay))
        state = self._shared.state
        state.sequence += 1
        heapq.heappush(state.due, Due(due, state.sequence, job.id, job.generation, 1))
        self._wake.set()

    def unpark(self, job: SandboxJob) -> None:
        """Postbacks that waited for the job's result file are due now."""
        state = self._shared.state
        for entry in state.parked.pop(job.id, []):
            heapq.heappush(state.due, entry)
        self._wake.set()

    async def _scheduler(self) -> None:
        """Deliver postbacks when they fall due in sandbox time."""
        shared = self._shared
        while True:
            now = shared.clock.now()
            state = shared.state
            while state.due and state.due[0].due <= now:
                self._fire(heapq.heappop(state.due), now)
            wait = math.inf
            if state.due:
                wait = shared.clock.real_seconds((state.due[0].due - now).total_seconds())
            with anyio.move_on_after(min(wait, 60.0)):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = anyio.Event()

    def _fire(self, entry: Due, now: datetime) -> None:
        state = self._shared.state
        job = state.jobs.get(entry.job_id)
        if job is None or job.generation != entry.generation or job.cancelled_at is not None:
            return
        status = job.view(now).status
        if status == "RUNNING" and job.timeline.final_status == "COMPLETED":
            state.parked.setdefault(job.id, []).append(entry)  # the result is still being written
            return
        if entry.attempt == 1 and self._faults.draw("lost_postback"):
            state.postbacks["lost"] += 1
            return
        self._shared.spawn(self._deliver(entry, job.id, status))

    async def _deliver(self, entry: Due, job_id: str, status: str) -> None:
        shared = self._shared
        url = shared.config.postback_url
        if not url or self._http is None:
            return
        state = shared.state
        state.postbacks["attempts"] += 1
        payload = {"JobId": job_id, "Status": status}
        started = anyio.current_time()
        try:
            if shared.config.postback_method == "GET":
                request = self._http.get(URL(url).update_query(payload))
            else:
                request = self._http.post(url, json=payload)
            async with request as response:
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if state is not shared.state:
            return  # reset meanwhile
        if ok:
            state.postbacks["delivered"] += 1
            state.postback_latency.append(anyio.current_time() - started)
            return
        state.postbacks["failed_attempts"] += 1
        if entry.attempt >= shared.config.postback_max_attempts:
            state.postbacks["gave_up"] += 1
            return
        # Non-2xx answers are retried (§4); the schedule is not published, so back off doubling.
        state.sequence += 1
        retry_at = shared.clock.now() + timedelta(seconds=2**entry.attempt)
        heapq.heappush(
            state.due,
            Due(retry_at, state.sequence, entry.job_id, entry.generation, entry.attempt + 1),
        )
        self._wake.set()
