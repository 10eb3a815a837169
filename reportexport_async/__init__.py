"""reportexport_async: an asyncio client and command line for impact.com's ReportExport and Jobs
APIs, with a built-in sandbox (`reportexport_async.sandbox`).

    from reportexport_async import ClientConfig, ExportRequest, ReportExportClient
"""

__version__ = "0.1.0.dev0"

from .api import ReportExportClient
from .client import BackfillEvents, Client
from .clock import Clock, ScaledClock, SystemClock
from .config import ClientConfig
from .core.models import (
    ClickExportRequest,
    ExportRequest,
    ExportTicket,
    Job,
    JobStatus,
    Report,
)
from .core.personas import AccountType
from .core.policies import PollPolicy, RateLimitPolicy, RetryPolicy, Timeouts
from .downloads import DownloadResult
from .errors import (
    AccountUnavailable,
    APIError,
    ConfigurationError,
    ConnectError,
    DownloadIntegrityError,
    Forbidden,
    HTTPStatusError,
    JobFailed,
    MalformedResponse,
    NotFound,
    OutputError,
    QuotaExhausted,
    RateLimited,
    ReplayRefused,
    ReportExportError,
    RequestTimeout,
    ServerError,
    SignedURLRefused,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from .orchestrator import BackfillOptions, BackfillResult, ExportSpec, ProgressEvent
from .ratelimit import MemoryQuotaStore, QuotaStore, RateLimiter
from .session import UsageSnapshot

__all__ = [
    "APIError",
    "AccountType",
    "AccountUnavailable",
    "BackfillEvents",
    "BackfillOptions",
    "BackfillResult",
    "ClickExportRequest",
    "Client",
    "ClientConfig",
    "Clock",
    "ConfigurationError",
    "ConnectError",
    "DownloadIntegrityError",
    "DownloadResult",
    "ExportRequest",
    "ExportSpec",
    "ExportTicket",
    "Forbidden",
    "HTTPStatusError",
    "Job",
    "JobFailed",
    "JobStatus",
    "MalformedResponse",
    "MemoryQuotaStore",
    "NotFound",
    "OutputError",
    "PollPolicy",
    "ProgressEvent",
    "QuotaExhausted",
    "QuotaStore",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "ReplayRefused",
    "Report",
    "ReportExportClient",
    "ReportExportError",
    "RequestTimeout",
    "RetryPolicy",
    "ScaledClock",
    "ServerError",
    "SignedURLRefused",
    "SystemClock",
    "Timeouts",
    "TransportError",
    "Unauthorized",
    "UsageSnapshot",
    "WaitTimeout",
    "__version__",
]
