"""What the transport's tests share (the retry loop, the quota account, the outage watch): a
client on the sandbox's manual clock, a clock that moves only when slept on, a closed port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from reportexport_async import ClientConfig, RateLimiter, ReportExportClient
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.testing import SandboxTime
from reportexport_async.transport.ratelimit import QuotaStore

from .conftest import SANDBOX_START


class Steps:
    """The machine's clock in a test: it moves when slept on (or when a test moves `at`)."""

    def __init__(self) -> None:
        self.at = SANDBOX_START
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)


def closed_port() -> int:
    """A loopback port nothing listens on (a host that refuses connections)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def client_on(
    box: Sandbox, *, store: QuotaStore | None = None, **config: Any
) -> AsyncIterator[tuple[ReportExportClient, SandboxTime]]:
    """A Mediapartners client of `box` on the sandbox's clock (its pauses move the sandbox's
    time), jitter fixed at 0.5; `config` overrides `ClientConfig` fields."""
    clock = SandboxTime(box)
    settings: dict[str, Any] = {
        "account_sid": box.account_sid,
        "auth_token": box.auth_token,
        "account_type": "Mediapartners",
        "base_url": box.base_url,
        **config,
    }
    limiter = RateLimiter(clock=clock, store=store)
    async with ReportExportClient(
        ClientConfig(**settings), limiter=limiter, clock=clock, random_source=lambda: 0.5
    ) as client:
        yield client, clock


def manual_sandbox(**options: Any) -> Sandbox:
    """A sandbox on a manual clock at `SANDBOX_START`."""
    return Sandbox(clock=ManualClock(SANDBOX_START), **options)
