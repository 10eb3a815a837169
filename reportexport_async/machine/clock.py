"""Time for the client side, injected everywhere it is needed (way 6 of docs/guide.md).

- `SystemClock`: the wall clock and real sleeps.
- `ScaledClock`: time that runs `scale` times faster than real time, for runs against a sandbox in
  simulated time (`Sandbox(time_scale=...)`): a poll interval of 60 seconds then takes 60/scale
  real seconds, and `now()` follows the sandbox's own clock when both start from the same moment.

The pure core never reads a clock; the session, the client and the orchestrator take one of these.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio

__all__ = ["Clock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class ScaledClock:
    """Time that starts at `start` and runs `scale` times faster than real time."""

    def __init__(self, start: datetime | None = None, scale: float = 1.0) -> None:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = scale
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.scale)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds) / self.scale)

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale})"
