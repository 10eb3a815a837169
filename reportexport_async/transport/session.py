"""The session: one aiohttp `ClientSession` per client, authentication, the redirect policy and
the retries. It sends and retries, nothing else; it knows nothing about jobs or files. Beside it
are small objects it tells about each request (the session counts nothing of the account itself):

- `transport.quota_account.QuotaAccount`: the account's limits (a charge before each call, a refund
  when the server did not count it, the answers' rate-limit headers, a 429 judged as a spent daily
  quota);
- `transport.outage.OutageWatch`: the account's health (since when every call has failed);
- `transport.server_clock.ServerClock`: the server's time, observed on every answer;
- `transport.retrying.Retrier`: the one retry loop, for its JSON calls and for downloads.

- `Authorization` (HTTP Basic, SID and token, docs/api-facts.md §6) is attached per request, and
  only when the URL is on the API origin: the Download's 302 to a signed URL on another origin is
  followed without it (docs/api-facts.md §2 "Download"). Redirects are never followed automatically.
  It never goes over plain http to a host other than loopback: the config refuses such a base URL,
  and a session refuses one that reached it anyway (a config built without validation).
- Connection errors, timeouts, 5xx and 429 are retried with capped exponential backoff and full
  jitter, bounded by attempts and by total time; a sane `Retry-After` or reset header wins
  (`core.policies.RetryPolicy`, `transport.retrying.Retrier`). A 429 on ReportExport/ClickExport is
  not blindly retried: a long one is a spent quota and raises `QuotaExhausted` at once. A TLS
  failure is never retried.
- Every JSON body is checked for `Status: ERROR` (`core.responses`), also with HTTP 200.
- Proxies: the standard variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) or the config's
  `proxy` (`core.proxies`), read here, not by aiohttp: aiohttp's `trust_env` would also read
  `~/.netrc`. An https request goes through the proxy's CONNECT tunnel, so `Authorization`
  never reaches it; a plain-http request that carries credentials (loopback only) never goes
  through a proxy. `SSL_CERT_FILE`/`SSL_CERT_DIR`, when set, are the certificates trusted (a
  company proxy that inspects TLS has its own authority; `transport.connections`).
- The connections are the session's own connector, or borrowed from a `Connections` pool that
  the clients of many accounts share (`transport.connections`).
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
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import anyio

from .._version import __version__
from ..core.personas import persona_for
from ..core.proxies import proxy_settings, route_for
from ..core.requests import (
    JSON_ACCEPT,
    Endpoint,
    RequestSpec,
    is_api_origin,
    join_url,
    may_carry_credentials,
)
from ..errors import (
    ConfigurationError,
    ConnectError,
    ReportExportError,
    RequestTimeout,
    TransportError,
    redact_url,
)
from ..machine.clock import Clock
from .config import ClientConfig, plain_http_refusal
from .connections import Connections, open_connector
from .outage import OutageWatch
from .quota_account import QuotaAccount
from .ratelimit import Charge, RateLimiter
from .retrying import Retrier
from .server_clock import ServerClock

__all__ = ["Answer", "Session", "Usage", "UsageSnapshot"]

log = logging.getLogger("reportexport_async.transport.session")

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


class Session:
    """HTTP for one account. Use as an async context manager; share `limiter` between sessions
    of the same account, and `connections` between the sessions of many accounts."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        random_source: Callable[[], float] | None = None,
        connections: Connections | None = None,
    ) -> None:
        if not may_carry_credentials(config.base_url):
            # ClientConfig refuses this already; a config made by `model_construct` skips it.
            try:
                host = urlsplit(config.base_url).hostname or "its host"
            except ValueError:
                host = "its host"
            raise ConfigurationError("base_url", plain_http_refusal(host))
        self.config = config
        #: The account's limits around each call, over its (shared) limiter.
        self.quota = QuotaAccount.of(config, limiter=limiter, clock=clock)
        #: The server's clock, observed on every answer: one per account, shared with its
        #: limiter (its quota day is the server's). The machine's clock only times waits.
        self.clock: ServerClock = self.quota.clock
        self.limiter: RateLimiter = self.quota.limiter
        self.usage = Usage()
        self._random = random_source or random.random
        self._persona = persona_for(config.account_type)
        #: The account's health; a run asks it whether an error stops it (`account_wide`).
        self.outage = OutageWatch(config.retry, self.clock.machine)
        self.retrier = Retrier(
            config.retry,
            clock=self.clock,
            machine=self.clock.machine,
            quota=self.quota,
            outage=self.outage,
            random_source=self._random,
            on_retry=self._count_retry,
        )
        credentials = f"{config.account_sid}:{config.auth_token.get_secret_value()}"
        # Kept encoded and only ever put into a request header (docs/api-facts.md §6).
        self._authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        configured = None if config.proxy is None else config.proxy.get_secret_value()
        self._proxies = proxy_settings(configured, os.environ)
        self._connections = connections
        self._http: aiohttp.ClientSession | None = None
        self._origins: dict[str, bool] = {}  # `_trusted`, per scheme://netloc

    def __repr__(self) -> str:
        return (
            f"Session(base_url={self.config.base_url!r}, account_sid={self.config.account_sid!r}, "
            f"account_type={self._persona.account_type.value!r})"
        )

    async def __aenter__(self) -> Session:
        timeouts = self.config.timeouts
        if self._connections is not None:  # borrowed: the pool closes it, not this session
            connector, owned = self._connections.connector, False
        else:
            limit = self.limiter.policy.max_concurrent_requests * 2
            connector, owned = await open_connector(limit), True
        self._http = aiohttp.ClientSession(
            connector=connector,
            connector_owner=owned,
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
        await self.quota.ready(endpoint)

        async def attempt() -> T:
            answer = await self._send(method, url, endpoint, params)
            result = interpret(
                answer.status,
                answer.headers,
                answer.body,
                method=method,
                url=url,
                now=self.clock.now(),
            )
            if isinstance(result, ReportExportError):
                raise result
            return result

        def describe(error: ReportExportError, attempt: int, delay: float) -> None:
            log.info(
                "%s %s failed (%s); retry %d in %.2fs",
                method,
                redact_url(url),
                type(error).__name__,
                attempt,
                delay,
            )

        return await self.retrier.run(attempt, endpoint, describe)

    def _count_retry(self) -> None:
        self.usage.retries += 1

    async def _send(
        self, method: str, url: str, endpoint: Endpoint, params: tuple[tuple[str, str], ...]
    ) -> Answer:
        """One HTTP request through the limiter; the body is read whole (JSON answers only)."""
        with anyio.CancelScope() as guard:
            # The slot first, then the limits: nothing waits between being counted and being sent.
            async with self.quota.slot():
                charge = await self.quota.take(endpoint)
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
                    error = _translate(exc, method, url)
                    await self._unanswered(error, charge)
                    raise error from exc
            await self._answered(endpoint, status, headers, charge)
            if log.isEnabledFor(logging.DEBUG):  # the redaction costs when nobody reads
                elapsed = (time.monotonic() - sent) * 1000
                log.debug("%s %s -> %d (%.0f ms)", method, redact_url(url), status, elapsed)
            return Answer(status, headers, _parse_body(raw, content_type))
        raise AssertionError("unreachable: nothing cancels the guard itself")  # pragma: no cover

    async def _answered(
        self,
        endpoint: Endpoint | None,
        status: int,
        headers: Mapping[str, str],
        charge: Charge | None = None,
    ) -> None:
        """An answer of the API origin, told to the objects beside the session."""
        if status == 429:
            self.usage.rate_limited += 1
        self.outage.answered(status)
        self.clock.observe(headers)
        await self.quota.answered(endpoint, status, headers, charge)

    async def _unanswered(self, error: TransportError, charge: Charge | None = None) -> None:
        """A request of the API origin got no answer (nothing, or a cut one)."""
        self.usage.transport_errors += 1
        self.outage.unanswered()
        await self.quota.unanswered(error, charge)

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
        the caller's attempts go through `retrier`, as the JSON calls do."""
        api = is_api_origin(url, self.config.base_url)
        timeouts = self.config.timeouts
        timeout = aiohttp.ClientTimeout(
            total=timeouts.download_total, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        async with self.quota.slot() if api else contextlib.nullcontext():
            if api:  # as in `_send`: counted only once nothing is left to wait for
                await self.quota.take(endpoint or Endpoint.DOWNLOAD)
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
                        await self._answered(endpoint, response.status, dict(response.headers))
                    yield response
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = _translate(exc, "GET", url)
                if api:
                    await self._unanswered(error)
                else:
                    self.usage.transport_errors += 1
                raise error from exc
