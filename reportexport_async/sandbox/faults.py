"""Faults on request: each a probability from 0 to 1 (`SandboxConfig.faults`, all 0 by default),
drawn from the sandbox's seeded generator and counted in `stats()["faults_injected"]`.

Where each one strikes:

- `http_5xx`, `status_error_200` and `malformed_json`: an API call's answer (here);
- `burst_429`: the limits room; `slow`: here, used by the routing room and the signed origin;
- `drop_connection`, `truncate_body` and `expired_signed_url`: the files room;
- `job_error`, `job_fail` and `job_stuck`: a job's timeline, drawn when it is queued (`jobs`);
- `lost_postback`: the postbacks room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import anyio
from aiohttp import web

from .routing import error

if TYPE_CHECKING:
    from .jobs import SandboxJob
    from .shared import Shared

# Answers that carry a JSON body the fault `status_error_200` may replace.
JSON_ENDPOINTS = frozenset(
    {"ReportExport", "ClickExport", "GetJob", "ListJobs", "Replay", "Reports", "MetaData"}
)
_TIMELINE_FAULTS = {"ERROR": "job_error", "FAILED": "job_fail", "STUCK": "job_stuck"}


class Faults:
    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    def draw(self, fault: str) -> bool:
        """True (and counted) when `fault` strikes this time."""
        shared = self._shared
        rate = shared.config.fault(fault)
        if rate > 0 and shared.rng.random() < rate:
            shared.state.faults[fault] += 1
            return True
        return False

    async def maybe_slow(self) -> None:
        if self.draw("slow"):
            await anyio.sleep(self._shared.config.slow_seconds)

    def instead_of_answer(self, endpoint: str) -> web.Response | None:
        """An answer that replaces the call before it does anything, or None."""
        if self.draw("http_5xx"):
            status = self._shared.rng.choice((500, 502, 503, 504))
            return error(status, "Internal server error")
        if endpoint in JSON_ENDPOINTS and self.draw("status_error_200"):
            # docs/api-facts.md §1c: the API answers some errors with HTTP 200 and Status: ERROR.
            return error(200, "An internal error occurred. Please try again later.")
        return None

    def spoil(self, response: web.StreamResponse) -> web.StreamResponse:
        """A JSON answer cut short (`malformed_json`), after the call took effect."""
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and response.status < 300
            and self.draw("malformed_json")
        ):
            body = cast(bytes, response.body)
            return web.Response(
                body=body[: max(1, len(body) // 2)],
                status=response.status,
                content_type="application/json",
            )
        return response

    def count_timeline(self, job: SandboxJob) -> None:
        """Count the faults a freshly drawn timeline holds (its attempts' outcomes)."""
        for attempt in job.timeline.attempts:
            fault = _TIMELINE_FAULTS.get(attempt.outcome)
            if fault is not None:
                self._shared.state.faults[fault] += 1
