"""The pure core: everything that interprets the impact.com API, with no I/O.

The lowest layer of the package, which the session, the job calls and the orchestrator build
on: the core builds requests and interprets responses (including HTTP 200 with ``Status:
ERROR``, rate-limit headers and relative URIs), and holds the retry and poll schedules and the
quota arithmetic. It must not import aiohttp, anyio, sqlite3, socket, time or asyncio, nor read
the clock, the network or the disk: ``now`` and random numbers are always parameters (ways 1
and 6 of docs/guide.md). The repository's ``tests/core/test_core_purity.py`` enforces it.

Modules:

- :mod:`.personas`: the three account types and what differs between them
  (docs/api-facts.md §0-§5).
- :mod:`.models`: Job, JobStatus, ExportRequest, ClickExportRequest, ExportTicket, JobPage.
- :mod:`.requests`: (method, path, params) for every call; URL joining and origin checks.
- :mod:`.responses`: (status, headers, body) -> value or exception.
- :mod:`.ratelimit_headers`: rate-limit headers at a given ``now``.
- :mod:`.policies`: RetryPolicy, PollPolicy, RateLimitPolicy, Timeouts (all defaults).
- :mod:`.quota`: daily quotas and the hourly window.
- :mod:`.lifecycle`: the life of one export as a table of (state, event, now) -> (next state,
  actions), with the guide's rules inside; every flow's driver runs it. Its events and actions
  are in :mod:`.lifecycle_words`.
"""

from .models import (
    ClickExportRequest,
    ExportRequest,
    ExportTicket,
    Job,
    JobPage,
    JobStatus,
    Report,
)
from .personas import AccountType, Persona, persona_for
from .policies import PollPolicy, RateLimitPolicy, RetryPolicy, Timeouts
from .quota import DailyQuota, HourlyWindow
from .ratelimit_headers import RateLimitInfo, parse_rate_limit_headers
from .requests import Endpoint, RequestSpec

__all__ = [
    "AccountType",
    "ClickExportRequest",
    "DailyQuota",
    "Endpoint",
    "ExportRequest",
    "ExportTicket",
    "HourlyWindow",
    "Job",
    "JobPage",
    "JobStatus",
    "Persona",
    "PollPolicy",
    "RateLimitInfo",
    "RateLimitPolicy",
    "Report",
    "RequestSpec",
    "RetryPolicy",
    "Timeouts",
    "parse_rate_limit_headers",
    "persona_for",
]
