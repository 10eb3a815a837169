"""The session: one aiohttp `ClientSession` per client, authentication, the retry driver, the
shared rate limiter, usage counters and the redirect policy. It knows nothing about jobs or files.

- `Authorization` (HTTP Basic, SID and token, docs/api-facts.md §6) is attached per request, and
  only when the URL is on the API origin: the Download's 302 to a signed URL on another origin is
  followed without it (docs/api-facts.md §2 "Download"). Redirects are never followed automatically.
  It never goes over plain http to a host other than loopback: the config refuses such a base URL,
  and a session refuses one that reached it anyway (a config built without validation).
- Connection errors, timeouts, 5xx and 429 are retried with capped exponential backoff and full
  jitter, bounded by attempts and by total time; a sane `Retry-After` or reset header wins
  (`core.policies.RetryPolicy`). A 429 on ReportExport/ClickExport is not blindly retried: a long
  one is a spent quota and raises `QuotaExhausted` at once (`core.quota.classify_export_429`).
- Every JSON body is checked for `Status: ERROR` (`core.responses`), also with HTTP 200.
- A daily quota is charged when its call is sent and refunded when the server did not count it
  (never connected, 401/403, 429, a gateway's 502/503/504; `core.quota.counted_by_server`).
- The session keeps the account's health: since when every call has failed (`failing_since`),
  which the orchestrator uses to stop a run once an outage lasts longer than
  `RetryPolicy.outage_limit`. A TLS failure is never retried.
- Proxies: the standard variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) or the config's
  `proxy` (`core.proxies`), read here, not by aiohttp: aiohttp's `trust_env` would also read
  `~/.netrc`. An https request goes through the proxy's CONNECT tunnel, so `Authorization`
  never reaches it; a plain-http request that carries credentials (loopback only) never goes
  through a proxy. `SSL_CERT_FILE`/`SSL_CERT_DIR`, when set, are the certificates trusted (a
  company proxy that inspects TLS has its own authority).
- aiohttp's exceptions are translated here and nowhere else, always `raise ... from exc`.
- The token never reaches a log record, a repr or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import anyio

from ._version import __version__
from .clock import Clock, SystemClock
from .config import ClientConfig, plain_http_refusal
from .core.fingerprint import account_key
from .core.personas import persona_for
from .core.proxies import proxy_settings, route_for
from .core.quota import classify_export_429, counted_by_server
from .core.ratelimit_headers import parse_rate_limit_headers
from .core.requests import (
    JSON_ACCEPT,
    Endpoint,
    RequestSpec,
    is_api_origin,
    join_url,
    may_carry_credentials,
)
from .core.responses import is_transient
from .errors import (
    AccountUnavailable,
    ConfigurationError,
    ConnectError,
    RateLimited,
    ReportExportError,
    RequestTimeout,
    TransportError,
    redact_url,
)
from .ratelimit import RateLimiter
from .server_clock import ServerClock

__all__ = ["Answer", "Session", "Usage", "UsageSnapshot"]

log = logging.getLogger("reportexport_async.session")

T = TypeVar("T")
_MAX_JSON_BODY = 64 * 1024 * 1024  # a job listing of many pages is still far below this


#: A `core.responses.interpret_*` function: (status, headers, body, *, method, url, now).
Interpreter = Callable[..., T | ReportExportError]


@dataclass(frozen=True)
class UsageSnapshot:
    """Counters at one moment. `calls` counts HTTP requests to the API by endpoint, retries
    included (each one spends the hourly bucket); `signed_downloads` counts requests to signed
    URLs on other origins, which spend nothing."""

    calls: Mapping[str, int]
    retries: int
    rate_limited: int
    transport_errors: int
    bytes_downloaded: int
    signed_downloads: int

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass
class Usage:
    """Live counters; `snapshot()` gives a frozen copy."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    transport_errors: int = 0
    bytes_downloaded: int = 0
    signed_downloads: int = 0

    def snapshot(self) -> UsageSnapshot:
        return UsageSnapshot(
            calls=dict(self.calls),
            retries=self.retries,
            rate_limited=self.rate_limited,
            transport_errors=self.transport_errors,
            bytes_downloaded=self.bytes_downloaded,
            signed_downloads=self.signed_downloads,
        )


@dataclass(frozen=True)
class Answer:
    """An API answer whose body was read: `body` is parsed JSON, the text of a non-JSON body, or
    None for an empty one."""

    status: int
    headers: Mapping[str, str]
    body: object | None


def _translate(exc: BaseException, method: str, url: str) -> TransportError:
    """aiohttp's exceptions, in the one place they are translated."""
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return ConnectError(f"TLS failure: {exc}", method=method, url=url, tls=True)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused the tunnel (407 without its credentials, 403, 502): nothing reached
        # the API.
        return ConnectError(
            f"the proxy refused the connection (HTTP {exc.status} {exc.message})",
            method=method,
            url=url,
        )
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        # No connection was made: the request was never sent.
        return ConnectError(f"cannot connect: {exc}", method=method, url=url)
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return RequestTimeout(f"timed out ({type(exc).__name__})", method=method, url=url)
    return TransportError(f"{type(exc).__name__}: {exc}", method=method, url=url)


_tls_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def _tls_context() -> ssl.SSLContext:
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


def _parse_body(raw: bytes, content_type: str) -> object | None:
    if not raw.strip():
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            parsed: object = json.loads(text)
        except ValueError:
            return text
        return parsed
    return text


def _server_clock(clock: Clock | None, limiter: RateLimiter | None) -> ServerClock:
    """The account's server clock: its limiter's (one per account), else one on `clock`."""
    if limiter is not None and isinstance(limiter.clock, ServerClock):
        return limiter.clock
    if isinstance(clock, ServerClock):
        return clock
    return ServerClock(clock or (limiter.clock if limiter is not None else SystemClock()))


class Session:
    """HTTP for one account. Use as an async context manager; share `limiter` between sessions
    of the same account."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        random_source: Callable[[], float] | None = None,
    ) -> None:
        if not may_carry_credentials(config.base_url):
            # ClientConfig refuses this already; a config made by `model_construct` skips it.
            try:
                host = urlsplit(config.base_url).hostname or "its host"
            except ValueError:
                host = "its host"
            raise ConfigurationError("base_url", plain_http_refusal(host))
        self.config = config
        #: The server's clock, observed on every answer: one per account, shared with its
        #: limiter (its quota day is the server's). The machine's clock only times waits.
        self.clock: ServerClock = _server_clock(clock, limiter)
        if limiter is not None and limiter.clock is not self.clock:
            limiter.clock = self.clock
        self.limiter = limiter or RateLimiter(config.rate_limit, clock=self.clock)
        self.limiter.bind(account_key(config.base_url, config.account_type, config.account_sid))
        self.usage = Usage()
        self._random = random_source or random.random
        self._persona = persona_for(config.account_type)
        credentials = f"{config.account_sid}:{config.auth_token.get_secret_value()}"
        # Kept encoded and only ever put into a request header (docs/api-facts.md §6).
        self._authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        configured = None if config.proxy is None else config.proxy.get_secret_value()
        self._proxies = proxy_settings(configured, os.environ)
        self._http: aiohttp.ClientSession | None = None
        self._origins: dict[str, bool] = {}  # `_trusted`, per scheme://netloc
        #: Since when every call has failed (no answer, or 5xx), and how many in a row; reset by
        #: any other answer.
        self.failing_since: datetime | None = None
        self.failures_in_a_row = 0

    def __repr__(self) -> str:
        return (
            f"Session(base_url={self.config.base_url!r}, account_sid={self.config.account_sid!r}, "
            f"account_type={self._persona.account_type.value!r})"
        )

    async def __aenter__(self) -> Session:
        timeouts = self.config.timeouts
        tls: ssl.SSLContext | bool = True  # aiohttp's default context
        if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
            # Read when the session opens (aiohttp's default was made at its import); loading
            # certificates is blocking file I/O.
            tls = await anyio.to_thread.run_sync(_tls_context)
        connector = aiohttp.TCPConnector(
            limit=self.limiter.policy.max_concurrent_requests * 2, ttl_dns_cache=300, ssl=tls
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            headers={
                "Accept": "application/json",
                "User-Agent": f"reportexport_async/{__version__}",
            },
            timeout=aiohttp.ClientTimeout(
                total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.read
            ),
            # aiohttp reads neither the proxy variables (this session does) nor .netrc:
            # credentials go only where we put them.
            trust_env=False,
        )
        # aiohttp sends an idempotent request (every GET, ReportExport included) a second time,
        # unseen, when a reused connection is cut before its answer. The first one may have
        # reached the server and been counted; if the unseen second one then cannot connect,
        # the call looks never sent and its quota unit would be refunded. Every retry here is
        # this session's own, made with the limits and the ledger knowing.
        self._http._retry_connection = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            with anyio.CancelScope(shield=True):  # closed even by a cancelled caller
                await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the session is not open: use `async with` first")
        return self._http

    def url(self, path_or_uri: str) -> str:
        """Join a path or a URI from an answer to the base URL."""
        return join_url(self.config.base_url, path_or_uri)

    def _via_proxy(
        self, url: str, headers: dict[str, str]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The request's headers and aiohttp's proxy arguments (none: go direct). The proxy's
        credentials go on the CONNECT of an https request, or on a plain-http request itself,
        which the proxy reads whole (it never carries `Authorization`)."""
        absolute = self.url(url)
        route = route_for(absolute, self._proxies, carries_credentials="Authorization" in headers)
        if route is None:
            return headers, {}
        extra: dict[str, Any] = {"proxy": route.url}
        if route.authorization is not None:
            if urlsplit(absolute).scheme.lower() == "https":
                extra["proxy_headers"] = {"Proxy-Authorization": route.authorization}
            else:
                headers = {**headers, "Proxy-Authorization": route.authorization}
        return headers, extra

    def _headers(self, url: str, endpoint: Endpoint | None = None) -> dict[str, str]:
        """`Authorization` and the operation's `Accept` on the API origin; elsewhere (a signed
        URL) no credentials and any type."""
        absolute = self.url(url)  # a relative reference counts where it will be sent
        if self._trusted(absolute):
            accept = endpoint.accept if endpoint is not None else JSON_ACCEPT
            return {"Authorization": self._authorization, "Accept": accept}
        return {"Accept": "*/*"}

    def _trusted(self, absolute: str) -> bool:
        """`absolute` is on the API origin and may carry credentials. Both depend only on its
        scheme and authority (what `urlsplit` calls netloc), so the answer is kept per
        `scheme://netloc`: a few origins, asked for on every request."""
        scheme, separator, rest = absolute.partition("://")
        ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
        origin = f"{scheme}{separator}{rest[: min(ends, default=len(rest))]}"
        known = self._origins.get(origin) if separator else None
        if known is None:
            known = is_api_origin(absolute, self.config.base_url) and may_carry_credentials(
                absolute
            )
            if separator and len(self._origins) < 64:
                self._origins[origin] = known
        return known

    # -- JSON calls -----------------------------------------------------------------------------

    async def call(self, spec: RequestSpec, interpret: Interpreter[T]) -> T:
        """Make one API call with retries and return what `interpret` makes of the answer."""
        return await self.call_url(
            spec.method, self.url(spec.path), spec.endpoint, interpret, params=spec.params
        )

    async def call_url(
        self,
        method: str,
        url: str,
        endpoint: Endpoint,
        interpret: Interpreter[T],
        *,
        params: tuple[tuple[str, str], ...] = (),
    ) -> T:
        if endpoint.daily_quota is not None and self.clock.ask_before_spending:
            # A call that spends the daily quota is counted on the server's day: asked first
            # when no recent answer says which day that is (one call that spends nothing).
            await self.clock.fresh_now()
        policy = self.config.retry
        machine = self.clock.machine  # durations: not moved by a correction of the offset
        started = machine.now()
        attempt = 0
        limited = 0
        while True:
            attempt += 1
            error: ReportExportError
            hint: float | None = None
            try:
                answer = await self._send(method, url, endpoint, params)
            except TransportError as exc:
                error = exc
                if isinstance(exc, ConnectError) and exc.tls:
                    raise  # a certificate or handshake problem: no retry can cure it
            else:
                now = self.clock.now()
                result = interpret(
                    answer.status, answer.headers, answer.body, method=method, url=url, now=now
                )
                if not isinstance(result, ReportExportError):
                    return result
                error = result
                if isinstance(error, RateLimited):
                    await self._export_429(endpoint, error, now)
                    hint = error.retry_after
                    if hint is not None and policy.sane_hint(hint):
                        # Over the hourly bucket: the limiter now holds every task of the
                        # account until the window reopens. Waiting for it is not a failure,
                        # so it spends no retry budget; only the count of such answers is bounded.
                        limited += 1
                        if limited > policy.max_attempts:
                            raise error
                        self.usage.retries += 1
                        await self.limiter.hold(hint)
                        continue
                if not is_transient(error):
                    raise error
            delay = policy.delay_with_hint(attempt, hint, self._random())
            self.check_outage(error, delay)
            elapsed = (machine.now() - started).total_seconds()
            if not policy.may_retry(attempt, elapsed, delay):
                raise error
            self.usage.retries += 1
            log.info(
                "%s %s failed (%s); retry %d in %.2fs",
                method,
                redact_url(url),
                type(error).__name__,
                attempt,
                delay,
            )
            await self.clock.sleep(delay)

    async def _export_429(self, endpoint: Endpoint, error: RateLimited, now: datetime) -> None:
        """A 429 on ReportExport/ClickExport: retry a short burst, never sleep through a spent
        quota (docs/api-facts.md §5: the daily quota will not recover within minutes)."""
        name = endpoint.daily_quota
        if name is None:
            return
        verdict = classify_export_429(name, error.retry_after, now, self.limiter.timezone)
        if verdict.quota in (None, "hourly") or verdict.resets_at is None:
            return  # a burst or the hourly bucket: waited for like any other 429
        raise await self.limiter.exhausted(name, resets_at=verdict.resets_at) from error

    async def _send(
        self, method: str, url: str, endpoint: Endpoint, params: tuple[tuple[str, str], ...]
    ) -> Answer:
        """One HTTP request through the limiter; the body is read whole (JSON answers only)."""
        with anyio.CancelScope() as guard:
            # The slot first, then the limits: nothing waits between being counted and being sent.
            async with self.limiter.in_flight():
                charge = await self.limiter.acquire(endpoint)
                # Once sent, a call that costs the daily quota (a submit) is not abandoned by a
                # cancellation (Ctrl-C, a reader gone): its answer, a job id, is what the ledger
                # must record, or the next run spends the quota again. Its timeouts bound it.
                guard.shield = endpoint.daily_quota is not None
                self.usage.calls[endpoint.value] += 1
                headers, proxy = self._via_proxy(url, self._headers(url, endpoint))
                sent = time.monotonic()
                try:
                    async with self.http.request(
                        method,
                        url,
                        params=params,
                        headers=headers,
                        allow_redirects=False,
                        data=b"" if method == "PUT" else None,
                        **proxy,
                    ) as response:
                        raw = await self.read_capped(response, _MAX_JSON_BODY)
                        headers = dict(response.headers)
                        status = response.status
                        content_type = response.content_type
                except (TimeoutError, aiohttp.ClientError) as exc:
                    self.usage.transport_errors += 1
                    error = _translate(exc, method, url)
                    self._health(None)
                    if isinstance(error, ConnectError):
                        await self.limiter.refund(charge)  # never sent: nothing counted
                    raise error from exc
            self._health(status)
            if not counted_by_server(status):
                await self.limiter.refund(charge)
            await self._observe(status, headers, endpoint)
            if log.isEnabledFor(logging.DEBUG):  # the redaction costs when nobody reads
                elapsed = (time.monotonic() - sent) * 1000
                log.debug("%s %s -> %d (%.0f ms)", method, redact_url(url), status, elapsed)
            return Answer(status, headers, _parse_body(raw, content_type))
        raise AssertionError("unreachable: nothing cancels the guard itself")  # pragma: no cover

    def _health(self, status: int | None) -> None:
        """Track since when every call has failed: no answer at all, or a 5xx."""
        if status is None or status >= 500:
            self.failures_in_a_row += 1
            if self.failing_since is None:
                self.failing_since = self.clock.machine.now()
        else:
            self.failing_since = None
            self.failures_in_a_row = 0

    def failing_for(self) -> float:
        """Seconds (client clock) since every call began to fail; 0 while calls succeed."""
        if self.failing_since is None:
            return 0.0
        return max(0.0, (self.clock.machine.now() - self.failing_since).total_seconds())

    def check_outage(self, error: ReportExportError, pause: float = 0.0) -> None:
        """Raise `AccountUnavailable` when the retry policy calls the failures so far an outage
        (`RetryPolicy.is_outage`), counting `pause` more seconds."""
        failing = self.failing_for()
        if self.failing_since is not None and self.config.retry.is_outage(
            failing, self.failures_in_a_row, pause
        ):
            raise AccountUnavailable("outage", error, failing_for=failing) from error

    @staticmethod
    async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
        """The whole body, up to `cap` bytes (more is an error, not a truncation). aiohttp's
        `read(n)` returns only what is buffered, so the body is read to its end here."""
        if response.content_length is not None and response.content_length > cap:
            raise TransportError(
                f"answer of {response.content_length} bytes is larger than {cap}",
                method=response.method,
                url=str(response.url),
            )
        body = bytearray()
        async for piece in response.content.iter_chunked(1 << 16):
            body += piece
            if len(body) > cap:
                raise TransportError(
                    f"answer larger than {cap} bytes", method=response.method, url=str(response.url)
                )
        return bytes(body)

    async def _observe(
        self, status: int, headers: Mapping[str, str], endpoint: Endpoint | None
    ) -> None:
        if status == 429:
            self.usage.rate_limited += 1
        self.clock.observe(headers)
        now = self.clock.now()
        info = parse_rate_limit_headers(headers, now, names=self._persona.rate_limit_headers)
        quota = endpoint.daily_quota if endpoint is not None else None
        if status == 429 and quota is not None:
            tz = self.limiter.timezone
            if classify_export_429(quota, info.wait_hint(now), now, tz).quota == quota:
                # The daily quota refused (its reset is the day's end): its headers say nothing
                # about the hourly bucket, which would otherwise stay shut for every endpoint
                # until midnight.
                return
        await self.limiter.observe(info)

    # -- streamed answers (downloads) ---------------------------------------------------------

    async def iter_body(
        self, response: aiohttp.ClientResponse, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """The body of a streamed answer in pieces of at most `chunk_size` bytes, as it arrives;
        a cut connection or a body shorter than its Content-Length raises `TransportError`."""
        try:
            while data := await response.content.read(chunk_size):
                self.usage.bytes_downloaded += len(data)
                yield data
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.usage.transport_errors += 1
            raise _translate(exc, "GET", str(response.url)) from exc

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        endpoint: Endpoint | None,
        *,
        params: tuple[tuple[str, str], ...] = (),
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One GET whose body the caller streams. On the API origin it goes through the limiter
        and carries `Authorization`; elsewhere (a signed URL) it carries neither. No retries here:
        the download driver decides."""
        api = is_api_origin(url, self.config.base_url)
        timeouts = self.config.timeouts
        timeout = aiohttp.ClientTimeout(
            total=timeouts.download_total, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        async with self.limiter.in_flight() if api else contextlib.nullcontext():
            if api:  # as in `_send`: counted only once nothing is left to wait for
                await self.limiter.acquire(endpoint or Endpoint.DOWNLOAD)
                self.usage.calls[(endpoint or Endpoint.DOWNLOAD).value] += 1
            else:
                self.usage.signed_downloads += 1
            headers, proxy = self._via_proxy(url, self._headers(url, endpoint or Endpoint.DOWNLOAD))
            sent = time.monotonic()
            try:
                async with self.http.get(
                    url,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                    timeout=timeout,
                    **proxy,
                ) as response:
                    if log.isEnabledFor(logging.DEBUG):  # the redaction costs when nobody reads
                        elapsed = (time.monotonic() - sent) * 1000
                        log.debug(
                            "GET %s -> %d (%.0f ms to the headers)",
                            redact_url(url),
                            response.status,
                            elapsed,
                        )
                    if api:
                        self._health(response.status)
                        await self._observe(response.status, dict(response.headers), endpoint)
                    yield response
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.usage.transport_errors += 1
                if api:
                    self._health(None)
                raise _translate(exc, "GET", url) from exc
