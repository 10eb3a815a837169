"""reportexport_async: an asyncio client and command line for impact.com's ReportExport and Jobs
APIs, with a built-in sandbox (`reportexport_async.sandbox`).

    from reportexport_async import ClientConfig, ExportRequest, ReportExportClient
"""

from ._version import __version__
from .client import ReportExportClient
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
from .ratelimit import MemoryQuotaStore, QuotaStore, RateLimiter
from .session import UsageSnapshot

__all__ = [
    "APIError",
    "AccountType",
    "AccountUnavailable",
    "ClickExportRequest",
    "ClientConfig",
    "Clock",
    "ConfigurationError",
    "ConnectError",
    "DownloadIntegrityError",
    "DownloadResult",
    "ExportRequest",
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
