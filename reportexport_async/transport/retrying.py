"""The one retry loop of a session: its JSON calls and its downloads retry by the same rules.

An attempt is a coroutine that returns its result or raises a `ReportExportError`. After a
failure the loop, on the session's `RetryPolicy`:

- retries only what sending again may cure (`core.responses.is_retryable`): no connection, a
  timeout, a cut or short body, a 5xx, a 429, a garbled answer, an expired signed URL; never a TLS
  failure, a refusal or bad input;
- on a 429 that spends a daily quota, lets the quota account judge it first (a spent quota raises
  `QuotaExhausted` at once); a sane `Retry-After` or reset is then waited for by emptying the
  hourly bucket for every task of the account (`QuotaAccount.hold`): no backoff pause of its own,
  and more such answers than `max_attempts` raise the 429 (each is an attempt all the same);
- otherwise pauses with capped exponential backoff and full jitter, and stops when the attempts
  run out or the next pause would pass the total time budget (`RetryPolicy.may_retry`);
- before each pause, stops the run instead with `AccountUnavailable` when every call has failed
  for longer than the outage limit (`OutageWatch.check`).

Time is injected: durations on the machine's clock, pauses through the session's clock. A
download's attempt may stream a large result or wait for its job, so its attempts are bounded by
number and by the download timeout, not by the total budget (`timed=False`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from ..core.policies import RetryPolicy
from ..core.requests import Endpoint
from ..core.responses import is_retryable
from ..errors import RateLimited, ReportExportError
from ..machine.clock import Clock
from .outage import OutageWatch
from .quota_account import QuotaAccount

__all__ = ["Retrier"]

T = TypeVar("T")

#: Logs a retry about to be made: (the error, the attempt that failed, the pause in seconds).
Describe = Callable[[ReportExportError, int, float], None]


class Retrier:
    """Retries attempts by one `RetryPolicy`, on the account's clock, quota and health."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Clock,
        machine: Clock,
        quota: QuotaAccount,
        outage: OutageWatch,
        random_source: Callable[[], float] = random.random,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.policy = policy
        self.clock = clock  # pauses
        self.machine = machine  # durations: not moved by a correction of the server's offset
        self.quota = quota
        self.outage = outage
        self.random = random_source
        self.on_retry = on_retry  # counts each retry (the session's usage)

    def __repr__(self) -> str:
        return f"Retrier({self.policy!r})"

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        endpoint: Endpoint,
        describe: Describe,
        *,
        max_attempts: int | None = None,
        timed: bool = True,
        random_source: Callable[[], float] | None = None,
    ) -> T:
        """`attempt()` until it succeeds or the policy gives up (the last error is raised)."""
        policy = self.policy
        if max_attempts is not None and max_attempts != policy.max_attempts:
            policy = replace(policy, max_attempts=max_attempts)
        jitter = random_source or self.random
        started = self.machine.now()
        attempts = 0
        limited = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except ReportExportError as exc:
                error = exc
            if isinstance(error, RateLimited):
                await self.quota.refused(endpoint, error)
                if policy.sane_hint(error.retry_after):
                    # Over the hourly bucket: every task of the account waits in the limiter
                    # until the window reopens, with no backoff pause here.
                    limited += 1
                    if limited > policy.max_attempts:
                        raise error
                    self.on_retry()
                    await self.quota.hold(error.retry_after or 0.0)
                    continue
            if not is_retryable(error):
                raise error
            delay = policy.delay(attempts, jitter())
            self.outage.check(error, delay)
            elapsed = (self.machine.now() - started).total_seconds() if timed else 0.0
            if not policy.may_retry(attempts, elapsed, delay if timed else 0.0):
                raise error
            self.on_retry()
            describe(error, attempts, delay)
            await self.clock.sleep(delay)
