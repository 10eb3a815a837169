"""Helpers for tests that run client code against an in-process sandbox.

`SandboxTime` is a clock for the client side whose time *is* the sandbox's: reading it reads the
sandbox clock, and sleeping on it moves the sandbox clock forward instead of waiting. With a
`ManualClock` sandbox, a test of polling, backoff or quota resets then runs in milliseconds and the
same way every time. (Several tasks sleeping at once each move time forward, so simulated time runs
ahead of what a real run would see; it never runs behind.)

It satisfies the client's clock protocol (`now()`, `async sleep()`) structurally, so the sandbox
still imports nothing from the client side.
"""

from __future__ import annotations

from datetime import datetime

import anyio
import anyio.lowlevel

from .server import Sandbox

__all__ = ["SandboxTime"]


class SandboxTime:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.slept: list[float] = []  # every sleep asked for, for assertions

    def now(self) -> datetime:
        return self.sandbox.now()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.sandbox.advance(seconds)
        await self.sandbox.wait_idle()
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"SandboxTime(now={self.now().isoformat()})"
