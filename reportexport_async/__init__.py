"""reportexport_async: an asyncio client and command line for impact.com's ReportExport and Jobs
APIs, with a built-in sandbox (`reportexport_async.sandbox`)."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
