"""The TCP connections the sessions send over: one aiohttp connector per session, or one
`Connections` pool shared by the sessions of many accounts.

A session opened alone makes its own connector and closes it with itself. The clients of one
run over many accounts (`accounts.run_per_account`, the command line's `--accounts`) share one
`Connections` instead: a connection kept alive after one account's call carries the next
account's call to the same host, so the run opens about as many connections as it has calls in
flight, not that many per account. Nothing of an account lives on a connection: the
`Authorization` header is put on each request by its session (never on the connector), and the
proxy, if any, is chosen per request too.

The TLS context is aiohttp's default unless `SSL_CERT_FILE` or `SSL_CERT_DIR` is set; then it is
made for that setting (a company proxy that inspects TLS has its own authority), once per setting
and per version of the file, and shared.
"""

from __future__ import annotations

import os
import ssl
import threading
from types import TracebackType

import aiohttp
import anyio

from ..errors import ConfigurationError

__all__ = ["Connections", "open_connector", "tls_context"]

_tls_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """As aiohttp's default, for the `SSL_CERT_FILE`/`SSL_CERT_DIR` set now. Made once per
    setting (and per version of the file) and then shared, as aiohttp shares its own: loading
    the certificates costs tens of milliseconds of CPU and about a megabyte per context, which
    one client per account (`run_per_account`) would otherwise pay for every account."""
    cert_file = os.environ.get("SSL_CERT_FILE")
    version: tuple[int, ...] | None = None
    try:
        if cert_file:
            found = os.stat(cert_file)
            version = (found.st_ino, found.st_size, found.st_mtime_ns)
    except OSError:
        version = None  # let `create_default_context` name the problem
    key = (cert_file, os.environ.get("SSL_CERT_DIR"), version)
    with _tls_lock:  # the sessions opened together wait for one load instead of each loading
        context = _tls_contexts.get(key)
        if context is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(("http/1.1",))
            _tls_contexts.clear()  # only the current setting is worth keeping
            _tls_contexts[key] = context
        return context


async def open_connector(limit: int) -> aiohttp.TCPConnector:
    """A connector of at most `limit` connections (0: no limit of its own), trusting the
    certificates set now. Reading them is blocking file I/O: done in a thread."""
    tls: ssl.SSLContext | bool = True  # aiohttp's default context
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        # Read when the connector opens (aiohttp's default was made at its import).
        tls = await anyio.to_thread.run_sync(tls_context)
    return aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, ssl=tls)


class Connections:
    """One pool of connections for the sessions of many accounts (`Client(connections=...)`).
    Use as an async context manager around the clients that share it; closing it closes every
    connection, so close it after them.

    The pool sets no limit of its own by default (`limit=0`): each account's limiter already
    bounds its requests in flight (`RateLimitPolicy.max_concurrent_requests`), and a request
    waiting here for a free connection would wait unannounced and spend its total timeout. A
    `limit` bounds the connections of the whole run instead (a host that counts them)."""

    def __init__(self, *, limit: int = 0) -> None:
        if limit < 0:
            raise ConfigurationError("limit", f"must be >= 0 (0: no limit), not {limit}")
        self.limit = limit
        self._connector: aiohttp.TCPConnector | None = None

    def __repr__(self) -> str:
        state = "open" if self._connector is not None else "closed"
        return f"Connections(limit={self.limit}, {state})"

    async def __aenter__(self) -> Connections:
        if self._connector is not None:
            raise RuntimeError("these connections are open already")
        self._connector = await open_connector(self.limit)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None:
            with anyio.CancelScope(shield=True):  # closed even by a cancelled caller
                await connector.close()

    @property
    def connector(self) -> aiohttp.TCPConnector:
        """The open connector (a session borrows it; it never closes it)."""
        if self._connector is None:
            raise RuntimeError("the connections are not open: use `async with` first")
        return self._connector
