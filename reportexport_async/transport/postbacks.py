"""A receiver for impact.com's job-completion postbacks: it wakes the jobs it names, and trusts
nothing else in them.

impact.com configures postbacks in its web interface, signs nothing, may deliver them up to 15
minutes late and retries on non-2xx (docs/api-facts.md §4). So:

- the path carries a secret token, `/postback/<token>`; every other path answers 404. The token is
  random unless given (`token=`, `--postback-token` or `IMPACT_POSTBACK_TOKEN`), so a URL set up
  once at impact.com keeps working across runs;
- GET with query parameters and POST with a JSON or form body are accepted; the job id and status
  fields are configurable (default `JobId` and `Status`: the template is the user's to write);
- the answer is 200 at once, also for jobs nobody is waiting for (so the service stops retrying);
  bodies are capped;
- a postback is a wake-up, never a fact: the tracker answers it by trying the download, which
  answers 202 if the job is not complete. A forged or early postback costs one call and changes
  nothing;
- any number of listeners (`subscribe`) get every postback: several backfills can share one
  receiver, each listening while it runs, and a listener that raises is logged and stops nothing.

    async with PostbackReceiver(port=8765) as receiver:
        print("paste this URL at impact.com:", receiver.url)
        result = await backfill(..., postbacks=receiver)
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import anyio
import anyio.abc
from aiohttp import web

from ..errors import ConfigurationError

__all__ = ["Listener", "Postback", "PostbackReceiver", "parse_listen"]

log = logging.getLogger("reportexport_async.transport.postbacks")

DEFAULT_MAX_BODY = 16 * 1024
TOKEN_ENV = "IMPACT_POSTBACK_TOKEN"


@dataclass(frozen=True)
class Postback:
    """One accepted postback: what it claims, and when it arrived (monotonic seconds)."""

    job_id: str
    status: str | None
    arrived: float


#: A function called with each accepted postback; it must not block (it runs in the request).
Listener = Callable[[Postback], None]


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT` (host 127.0.0.1) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigurationError(
            "postback_listen", f"expected HOST:PORT with a port from 0 to 65535, got {text!r}"
        )
    return host, int(port_text)


class PostbackReceiver:
    """An aiohttp.web server for postbacks. Every listener given to `subscribe` is called with
    each accepted one (a backfill subscribes while it runs); `public_url` is what impact.com
    should call, when the receiver sits behind a proxy or a tunnel.

    `on_postback` (the argument and the attribute) is deprecated: a single slot, kept as one
    more listener; use `subscribe`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        job_id_field: str = "JobId",
        status_field: str = "Status",
        max_body: int = DEFAULT_MAX_BODY,
        public_url: str | None = None,
        on_postback: Listener | None = None,
    ) -> None:
        token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
        if len(token) < 16 or not all(c.isalnum() or c in "-_" for c in token):
            raise ConfigurationError(
                "postback_token", "use at least 16 letters, digits, '-' or '_' (it is a secret)"
            )
        self.host = host
        self.port = port
        self._token = token
        self.job_id_field = job_id_field
        self.status_field = status_field
        self.max_body = max_body
        self.public_url = public_url
        self._listeners: dict[object, Listener] = {}  # in the order they subscribed
        self._slot: tuple[Listener, Callable[[], None]] | None = None  # the deprecated one
        if on_postback is not None:
            _deprecated_slot(stacklevel=3)
            self._set_slot(on_postback)
        self.counts: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def __repr__(self) -> str:  # the token stays out of reprs
        return f"PostbackReceiver(host={self.host!r}, port={self.bound_port or self.port})"

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every accepted postback from now on; returns the function that
        stops it (calling it again does nothing). Any number of listeners: each postback goes to
        every one, in the order they subscribed; one that raises is logged and counted
        (`counts["listener_failed"]`), and the others and the answer to the sender go on."""
        key = object()  # a subscription, not the function: the same one may subscribe twice
        self._listeners[key] = listener

        def unsubscribe() -> None:
            self._listeners.pop(key, None)

        return unsubscribe

    @property
    def on_postback(self) -> Listener | None:
        """Deprecated: use `subscribe`. Setting it replaces only the listener it set before."""
        return None if self._slot is None else self._slot[0]

    @on_postback.setter
    def on_postback(self, listener: Listener | None) -> None:
        _deprecated_slot(stacklevel=3)
        self._set_slot(listener)

    def _set_slot(self, listener: Listener | None) -> None:
        if self._slot is not None:
            self._slot[1]()
        self._slot = None if listener is None else (listener, self.subscribe(listener))

    @property
    def url(self) -> str:
        """The URL to paste in impact.com's Event Notifications (it holds the secret token)."""
        if self.public_url:
            return f"{self.public_url.rstrip('/')}/postback/{self._token}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.bound_port or self.port}/postback/{self._token}"

    async def __aenter__(self) -> PostbackReceiver:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("GET", "/postback/{token}", self._handle)
        app.router.add_route("POST", "/postback/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigurationError(
                "postback_listen", f"cannot listen on {self.host}:{self.port} ({exc.strerror})"
            ) from exc
        self.bound_port = int(self._runner.addresses[0][1])
        log.info("postback receiver listening on %s:%d", self.host, self.bound_port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve(
        self,
        *,
        task_status: anyio.abc.TaskStatus[PostbackReceiver] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled; for `TaskGroup.start`, which receives the bound receiver."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.match_info["token"].encode(), self._token.encode()):
            self.counts["wrong_token"] += 1
            raise web.HTTPNotFound()
        fields: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            try:
                raw = await request.read()  # capped by client_max_size: 413 beyond it
            except web.HTTPRequestEntityTooLarge:
                self.counts["too_large"] += 1
                raise
            fields.update(_body_fields(raw, request.content_type))
        job_id = _field(fields, self.job_id_field)
        if not job_id or len(job_id) > 200:
            self.counts["no_job_id"] += 1
            return web.Response(text="ok")  # 2xx: nothing to retry
        self.counts["accepted"] += 1
        postback = Postback(job_id, _field(fields, self.status_field), time.monotonic())
        self._deliver(postback)
        return web.Response(text="ok")

    def _deliver(self, postback: Postback) -> None:
        for listener in tuple(self._listeners.values()):  # a listener may (un)subscribe others
            try:
                listener(postback)
            except Exception:
                self.counts["listener_failed"] += 1
                log.exception(
                    "a postback listener failed (job %r); the others go on", postback.job_id
                )


def _deprecated_slot(*, stacklevel: int) -> None:
    warnings.warn(
        "PostbackReceiver.on_postback is deprecated: use receiver.subscribe(listener), which "
        "returns the function that unsubscribes it",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _field(fields: dict[str, str], name: str) -> str | None:
    if name in fields:
        return str(fields[name]).strip() or None
    lowered = name.lower()
    for key, value in fields.items():
        if key.lower() == lowered:
            return str(value).strip() or None
    return None


def _body_fields(raw: bytes, content_type: str) -> dict[str, str]:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        if isinstance(parsed, dict):
            return {str(k): str(v) for k, v in parsed.items() if not isinstance(v, dict | list)}
        return {}
    return dict(parse_qsl(text, keep_blank_values=True))
