"""Sandbox time.

The sandbox runs on its own clock so that hours and days of the real service (the 15-minute ERROR
retries, the hourly rate-limit window, the day change that resets the daily quota and makes a new
default-range job) pass in seconds or on demand.

- `ScaledClock`: sandbox time flows at `scale` sandbox seconds per real second, plus any explicit
  `advance`.
- `ManualClock`: sandbox time stands still until `advance` is called (for deterministic tests).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class SandboxClock(Protocol):
    """What the sandbox needs from a clock."""

    def now(self) -> datetime:
        """The current sandbox time, timezone-aware."""
        ...

    def real_seconds(self, sandbox_seconds: float) -> float:
        """Real seconds for `sandbox_seconds` to pass (inf if time stands still)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward by `seconds` at once."""
        ...

    @property
    def scale(self) -> float:
        """Sandbox seconds per real second (0 for a clock that only moves when advanced)."""
        ...


class ScaledClock:
    """Sandbox time = start + (real elapsed) * scale + advanced."""

    def __init__(self, start: datetime | None = None, scale: float = 1.0) -> None:
        if scale <= 0 or not math.isfinite(scale):
            raise ValueError(f"time scale must be a positive number, got {scale!r}")
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._t0 = time.monotonic()
        self._scale = scale
        self._offset = 0.0

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._t0) * self._scale + self._offset
        return self._start + timedelta(seconds=elapsed)

    def real_seconds(self, sandbox_seconds: float) -> float:
        return max(0.0, sandbox_seconds) / self._scale

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds


class ManualClock:
    """Sandbox time that moves only when `advance` is called."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)

    @property
    def scale(self) -> float:
        return 0.0

    def now(self) -> datetime:
        return self._now

    def real_seconds(self, sandbox_seconds: float) -> float:
        return 0.0 if sandbox_seconds <= 0 else math.inf

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._now += timedelta(seconds=seconds)
