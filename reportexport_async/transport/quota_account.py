"""The account's quota, beside the session: what each call costs, and what the answers say.

The session sends; this object keeps the account's count straight around each request:

- `ready`: a call that spends the daily quota is counted on the server's day, so the server is
  asked first (one call that spends nothing, `ServerClock.fresh_now`) when no recent answer says
  which day that is;
- `take`: room for one call in the hourly bucket (waiting for it rather than provoking a 429),
  and the daily quota charged once nothing is left to wait for (`RateLimiter.acquire`);
- `unanswered` and `answered`: the charge refunded when the server did not count the call (never
  connected, 401/403, 429, a gateway's 502/503/504: `core.quota.counted_by_server`), or also
  charged on the answer's day when that is a later day of the account (a call held up past its
  midnight), and the hourly view corrected by the answer's `X-RateLimit-*` headers;
- `refused`: a 429 on ReportExport/ClickExport whose wait reaches the end of the account's day is
  a spent daily quota (docs/api-facts.md §5: it will not recover within minutes): remembered in
  the counters store and raised as `QuotaExhausted`, never slept through;
- `hold`: a 429 with a sane wait empties the hourly bucket until then, for every task.

The limiter counts through the store it was given (in memory, or a ledger's counters): nothing
here writes the records of exports. The account's clock is the server's: one `ServerClock` per
account, shared with its limiter (`account_clock`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

from ..core.personas import Persona, persona_for
from ..core.quota import classify_export_429, counted_by_server
from ..core.ratelimit_headers import parse_rate_limit_headers
from ..core.requests import Endpoint
from ..errors import ConnectError, RateLimited, TransportError
from ..machine.clock import Clock, SystemClock
from .config import ClientConfig
from .ratelimit import Charge, RateLimiter
from .server_clock import ServerClock

__all__ = ["QuotaAccount", "account_clock"]


def account_clock(clock: Clock | None, limiter: RateLimiter | None) -> ServerClock:
    """The account's server clock: its limiter's (one per account), else one on `clock`."""
    if limiter is not None and isinstance(limiter.clock, ServerClock):
        return limiter.clock
    if isinstance(clock, ServerClock):
        return clock
    return ServerClock(clock or (limiter.clock if limiter is not None else SystemClock()))


class QuotaAccount:
    """One account's limits as the session meets them: a charge before each call, a refund
    when the server did not count it, the answers' headers, a 429 judged."""

    def __init__(self, limiter: RateLimiter, clock: ServerClock, persona: Persona) -> None:
        self.limiter = limiter
        self.clock = clock
        self._headers = persona.rate_limit_headers

    @classmethod
    def of(
        cls, config: ClientConfig, *, limiter: RateLimiter | None, clock: Clock | None
    ) -> QuotaAccount:
        """The account of `config`: its limiter (one is made from the config when none is
        given), tied to the account and to the account's server clock."""
        server = account_clock(clock, limiter)
        if limiter is not None and limiter.clock is not server:
            limiter.clock = server
        limiter = limiter or RateLimiter(config.rate_limit, clock=server)
        limiter.bind(config.account_key)
        return cls(limiter, server, persona_for(config.account_type))

    def __repr__(self) -> str:
        return f"QuotaAccount({self.limiter!r}, account={self.limiter.account!r})"

    def slot(self) -> AbstractAsyncContextManager[None]:
        """One of the account's concurrent-call slots, for the duration of a call."""
        return self.limiter.in_flight()

    async def ready(self, endpoint: Endpoint) -> None:
        """Before the first attempt of a call: the server's day known, if the call spends it."""
        if endpoint.daily_quota is not None and self.clock.ask_before_spending:
            await self.clock.fresh_now()

    async def take(self, endpoint: Endpoint) -> Charge | None:
        """Room for one call; what was charged, for a refund."""
        return await self.limiter.acquire(endpoint)

    async def unanswered(self, error: TransportError, charge: Charge | None) -> None:
        """No answer came: a call that never connected was never counted."""
        if isinstance(error, ConnectError):
            await self.limiter.refund(charge)

    async def answered(
        self,
        endpoint: Endpoint | None,
        status: int,
        headers: Mapping[str, str],
        charge: Charge | None = None,
    ) -> None:
        """An answer came (the server's clock has observed it): refund what the server did not
        count, and correct the hourly view with its headers."""
        now = self.clock.now()
        if charge is not None:
            if counted_by_server(status):
                await self.limiter.counted_at(charge, now)  # on the answer's day, if later
            else:
                await self.limiter.refund(charge)
        info = parse_rate_limit_headers(headers, now, names=self._headers)
        quota = endpoint.daily_quota if endpoint is not None else None
        if status == 429 and quota is not None:
            zone = self.limiter.timezone
            if classify_export_429(quota, info.wait_hint(now), now, zone).quota == quota:
                # The daily quota refused (its reset is the day's end): its headers say nothing
                # about the hourly bucket, which would otherwise stay shut for every endpoint
                # until midnight.
                return
        await self.limiter.observe(info)

    async def refused(self, endpoint: Endpoint, error: RateLimited) -> None:
        """A 429 on a call that spends a daily quota: raise `QuotaExhausted` when it is that
        quota spent; return when it is a burst or the hourly bucket (waited for like any 429)."""
        name = endpoint.daily_quota
        if name is None:
            return
        now = self.clock.now()
        verdict = classify_export_429(name, error.retry_after, now, self.limiter.timezone)
        if verdict.quota in (None, "hourly") or verdict.resets_at is None:
            return
        raise await self.limiter.exhausted(name, resets_at=verdict.resets_at) from error

    async def hold(self, seconds: float) -> None:
        """The server said to wait `seconds`: every task of the account waits."""
        await self.limiter.hold(seconds)
