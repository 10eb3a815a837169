"""reportexport_async: an asyncio client and command line for impact.com's ReportExport and Jobs
APIs, with a built-in sandbox (`reportexport_async.sandbox`).

    from reportexport_async import Client

    async with Client.from_env(ledger="ledger.sqlite") as client:
        result = await client.backfill("mp_action_listing_fast", start, end, out="data")

Public names (`__all__`), by group:

- the client: Client (the product: ledger, limits and clock in one object), ClientConfig,
  UsageSnapshot, and ReportExportClient (the single calls, also `client.api`)
- backfills: BackfillOptions, ExportSpec, BackfillResult, ProgressEvent, BackfillEvents
- daily sync: Dataset (for `Client.sync`; its options and result in `reportexport_async.jobs.sync`)
- requests and results: ExportRequest, ClickExportRequest, ExportTicket, DownloadResult
- jobs and reports: Job, JobStatus, Report
- settings: AccountType, PollPolicy, RateLimitPolicy, RetryPolicy, Timeouts
- errors: ReportExportError (the root of all), ConfigurationError, JobFailed, WaitTimeout
- quota and outages: QuotaExhausted, AccountUnavailable

Also importable from here, for code written before, but better imported from their modules: the
clocks (Clock, SystemClock, ScaledClock) from `reportexport_async.machine.clock`; RateLimiter,
QuotaStore and MemoryQuotaStore from `reportexport_async.transport.ratelimit`; every other exception
(APIError, TransportError, HTTPStatusError and their subclasses, ReplayRefused, ...) from
`reportexport_async.errors`. `__version__` is the package's version.

Names are loaded lazily (on first use), so `import reportexport_async.core`, the pure rules,
loads neither aiohttp nor anyio. To add a public name, add one line to `_LAZY` (and its
import under `TYPE_CHECKING`, for type checkers); `tests/test_package.py` checks they agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__ as __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` imports them
    from .client import BackfillEvents as BackfillEvents
    from .client import Client as Client
    from .core.models import ClickExportRequest as ClickExportRequest
    from .core.models import ExportRequest as ExportRequest
    from .core.models import ExportTicket as ExportTicket
    from .core.models import Job as Job
    from .core.models import JobStatus as JobStatus
    from .core.models import Report as Report
    from .core.personas import AccountType as AccountType
    from .core.policies import PollPolicy as PollPolicy
    from .core.policies import RateLimitPolicy as RateLimitPolicy
    from .core.policies import RetryPolicy as RetryPolicy
    from .core.policies import Timeouts as Timeouts
    from .errors import AccountUnavailable as AccountUnavailable
    from .errors import APIError as APIError
    from .errors import ColumnTypeError as ColumnTypeError
    from .errors import ConfigurationError as ConfigurationError
    from .errors import ConnectError as ConnectError
    from .errors import DownloadIntegrityError as DownloadIntegrityError
    from .errors import Forbidden as Forbidden
    from .errors import HTTPStatusError as HTTPStatusError
    from .errors import JobFailed as JobFailed
    from .errors import LoadError as LoadError
    from .errors import MalformedResponse as MalformedResponse
    from .errors import NotFound as NotFound
    from .errors import OutputError as OutputError
    from .errors import QuotaExhausted as QuotaExhausted
    from .errors import RateLimited as RateLimited
    from .errors import ReplayRefused as ReplayRefused
    from .errors import ReportExportError as ReportExportError
    from .errors import RequestTimeout as RequestTimeout
    from .errors import ServerError as ServerError
    from .errors import SignedURLRefused as SignedURLRefused
    from .errors import TransportError as TransportError
    from .errors import Unauthorized as Unauthorized
    from .errors import UnreadableResult as UnreadableResult
    from .errors import WaitTimeout as WaitTimeout
    from .jobs.orchestrator import BackfillOptions as BackfillOptions
    from .jobs.orchestrator import BackfillResult as BackfillResult
    from .jobs.orchestrator import ExportSpec as ExportSpec
    from .jobs.orchestrator import ProgressEvent as ProgressEvent
    from .jobs.sync import Dataset as Dataset
    from .machine.clock import Clock as Clock
    from .machine.clock import ScaledClock as ScaledClock
    from .machine.clock import SystemClock as SystemClock
    from .transport.api import ReportExportClient as ReportExportClient
    from .transport.config import ClientConfig as ClientConfig
    from .transport.downloads import DownloadResult as DownloadResult
    from .transport.ratelimit import MemoryQuotaStore as MemoryQuotaStore
    from .transport.ratelimit import QuotaStore as QuotaStore
    from .transport.ratelimit import RateLimiter as RateLimiter
    from .transport.session import UsageSnapshot as UsageSnapshot

__all__ = [
    "AccountType",
    "AccountUnavailable",
    "BackfillEvents",
    "BackfillOptions",
    "BackfillResult",
    "ClickExportRequest",
    "Client",
    "ClientConfig",
    "ConfigurationError",
    "Dataset",
    "DownloadResult",
    "ExportRequest",
    "ExportSpec",
    "ExportTicket",
    "Job",
    "JobFailed",
    "JobStatus",
    "PollPolicy",
    "ProgressEvent",
    "QuotaExhausted",
    "RateLimitPolicy",
    "Report",
    "ReportExportClient",
    "ReportExportError",
    "RetryPolicy",
    "Timeouts",
    "UsageSnapshot",
    "WaitTimeout",
]

#: Every name importable from the package -> the module (relative to it) that defines it.
_LAZY: dict[str, str] = {
    # public (__all__)
    "AccountType": ".core.personas",
    "AccountUnavailable": ".errors",
    "BackfillEvents": ".client",
    "BackfillOptions": ".jobs.orchestrator",
    "BackfillResult": ".jobs.orchestrator",
    "ClickExportRequest": ".core.models",
    "Client": ".client",
    "ClientConfig": ".transport.config",
    "ConfigurationError": ".errors",
    "Dataset": ".jobs.sync",
    "DownloadResult": ".transport.downloads",
    "ExportRequest": ".core.models",
    "ExportSpec": ".jobs.orchestrator",
    "ExportTicket": ".core.models",
    "Job": ".core.models",
    "JobFailed": ".errors",
    "JobStatus": ".core.models",
    "PollPolicy": ".core.policies",
    "ProgressEvent": ".jobs.orchestrator",
    "QuotaExhausted": ".errors",
    "RateLimitPolicy": ".core.policies",
    "Report": ".core.models",
    "ReportExportClient": ".transport.api",
    "ReportExportError": ".errors",
    "RetryPolicy": ".core.policies",
    "Timeouts": ".core.policies",
    "UsageSnapshot": ".transport.session",
    "WaitTimeout": ".errors",
    # kept importable from here; better imported from their modules
    "APIError": ".errors",
    "Clock": ".machine.clock",
    "ColumnTypeError": ".errors",
    "ConnectError": ".errors",
    "DownloadIntegrityError": ".errors",
    "Forbidden": ".errors",
    "HTTPStatusError": ".errors",
    "LoadError": ".errors",
    "MalformedResponse": ".errors",
    "MemoryQuotaStore": ".transport.ratelimit",
    "NotFound": ".errors",
    "OutputError": ".errors",
    "QuotaStore": ".transport.ratelimit",
    "RateLimited": ".errors",
    "RateLimiter": ".transport.ratelimit",
    "ReplayRefused": ".errors",
    "RequestTimeout": ".errors",
    "ScaledClock": ".machine.clock",
    "ServerError": ".errors",
    "SignedURLRefused": ".errors",
    "SystemClock": ".machine.clock",
    "TransportError": ".errors",
    "Unauthorized": ".errors",
    "UnreadableResult": ".errors",
}


def __getattr__(name: str) -> object:
    """Import a re-exported name on first use (PEP 562), then keep it as a plain attribute."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
