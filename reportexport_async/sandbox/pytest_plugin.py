"""A pytest plugin that gives tests a running sandbox (registered through the `pytest11` entry
point, so installing the package is enough).

The sandbox runs on its own event loop in a background thread, so the fixtures work from
synchronous tests, from pytest-asyncio or anyio tests, and whatever loop the code under test uses.

    def test_my_pipeline(impact_sandbox):
        run_my_code(base_url=impact_sandbox.base_url,
                    account_sid=impact_sandbox.account_sid,
                    auth_token=impact_sandbox.auth_token)
        assert impact_sandbox.stats()["calls"]["ReportExport"] == 1

    def test_with_faults(impact_sandbox_factory):
        sandbox = impact_sandbox_factory(faults={"http_5xx": 0.3}, time_scale=600)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

import pytest

from .clock import SandboxClock
from .config import SandboxAccount, SandboxConfig
from .server import Sandbox

T = TypeVar("T")


class SandboxThread:
    """A sandbox served from a background thread; every method is safe to call from any thread."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: SandboxClock | None = None,
        **overrides: Any,
    ) -> None:
        self.sandbox = Sandbox(config, clock=clock, **overrides)
        self._loop = asyncio.new_event_loop()
        self._ready: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="impact-sandbox", daemon=True)

    def __enter__(self) -> SandboxThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._ready.result(timeout=30)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with self.sandbox:
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                raise

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the sandbox's loop and return its result."""

        async def wrapper() -> T:
            return function()

        return self.run(wrapper())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    @property
    def base_url(self) -> str:
        return self.sandbox.base_url

    @property
    def signed_base_url(self) -> str:
        return self.sandbox.signed_base_url

    @property
    def account_sid(self) -> str:
        return self.sandbox.account_sid

    @property
    def auth_token(self) -> str:
        return self.sandbox.auth_token

    def account_url(self, persona: str = "Advertisers") -> str:
        return f"{self.base_url}/{persona}/{self.account_sid}"

    def stats(self) -> dict[str, Any]:
        return self.call(self.sandbox.stats)

    def add_account(self, **settings: Any) -> SandboxAccount:
        return self.call(lambda: self.sandbox.add_account(**settings))

    def use_quota(self, account_sid: str | None = None, kind: str = "ReportExport") -> None:
        self.call(lambda: self.sandbox.use_quota(account_sid, kind))

    def now(self) -> datetime:
        return self.call(self.sandbox.now)

    def advance(self, seconds: float) -> None:
        self.call(lambda: self.sandbox.advance(seconds))

    def reset(self) -> None:
        self.call(self.sandbox.reset)

    def configure(self, **changes: Any) -> None:
        self.call(lambda: self.sandbox.configure(**changes))

    def wait_idle(self) -> None:
        self.run(self.sandbox.wait_idle())

    def cancel_job(self, job_id: str) -> None:
        self.call(lambda: self.sandbox.cancel_job(job_id))

    def expire_job(self, job_id: str) -> None:
        self.call(lambda: self.sandbox.expire_job(job_id))


@pytest.fixture
def impact_sandbox_factory() -> Iterator[Callable[..., SandboxThread]]:
    """Start sandboxes with chosen settings (`SandboxConfig` fields, and `clock=`); all of them
    stop when the test ends."""
    started: list[SandboxThread] = []

    def factory(config: SandboxConfig | None = None, **options: Any) -> SandboxThread:
        sandbox = SandboxThread(config, **options)
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in reversed(started):
        sandbox.stop()


@pytest.fixture
def impact_sandbox(impact_sandbox_factory: Callable[..., SandboxThread]) -> SandboxThread:
    """A sandbox with default settings and quick jobs (0.5 to 2 sandbox seconds)."""
    return impact_sandbox_factory(job_duration=(0.5, 2.0))
