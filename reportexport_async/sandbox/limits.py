"""Limits and quotas: the hourly bucket, the daily ReportExport and ClickExport quotas, bursts of
429, and the rate-limit headers in each persona's dialect (docs/api-facts.md §5).

The account's day (quotas, default ranges) is the calendar day at `utc_offset_minutes`; the hourly
window is the UTC hour.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from aiohttp import web

from .catalog import PersonaSpec
from .routing import error

if TYPE_CHECKING:
    from .config import SandboxAccount
    from .faults import Faults
    from .shared import Shared


class Limits:
    def __init__(self, shared: Shared, faults: Faults) -> None:
        self._shared = shared
        self._faults = faults

    # -- the account's calendar -------------------------------------------------------------

    @property
    def tz(self) -> timezone:
        return timezone(self._shared.config.utc_offset)

    def day(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def next_day_start(self, now: datetime) -> datetime:
        return datetime.combine(self.day(now) + timedelta(days=1), time(0), self.tz)

    @staticmethod
    def hour_start(now: datetime) -> datetime:
        return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    # -- headers --------------------------------------------------------------------------------

    def rate_headers(
        self,
        spec: PersonaSpec,
        now: datetime,
        *,
        limit: int,
        remaining: int,
        reset_at: datetime,
        retry_after: float | None = None,
    ) -> dict[str, str]:
        """Rate-limit headers in the persona's dialect (§5, Headers and 429)."""
        seconds = max(0, math.ceil((reset_at - now).total_seconds()))
        if spec.partner_headers:
            headers = {
                "X-RateLimit-Limit-hour": str(limit),
                "X-RateLimit-Remaining-hour": str(max(0, remaining)),
                "RateLimit-Reset": str(seconds),
            }
            if retry_after is not None:
                # Partner: Retry-After is "only present on rate limited responses".
                headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            return headers
        reset = (
            str(math.ceil(reset_at.timestamp()))
            if self._shared.config.reset_style == "epoch"
            else str(seconds)
        )
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": reset,
        }

    def _limits(self, sid: str) -> SandboxAccount:
        account = self._shared.config.account(sid)
        if account is None:  # only authorized calls get here: their SID is known
            raise KeyError(sid)
        return account

    def hourly_headers(self, spec: PersonaSpec, now: datetime, sid: str) -> dict[str, str]:
        limit = self._limits(sid).hourly_limit or 0
        if limit <= 0:
            return {}
        window = self.hour_start(now)
        used = self._shared.state.of(sid).hourly.get(window, 0)
        return self.rate_headers(
            spec, now, limit=limit, remaining=limit - used, reset_at=window + timedelta(hours=1)
        )

    def too_many(
        self, reason: str, message: str, headers: dict[str, str], sid: str
    ) -> web.Response:
        state = self._shared.state
        state.rate_limited += 1
        state.of(sid).rate_limited += 1
        state.rate_limited_by[reason] += 1
        return error(429, message, headers=headers)

    # -- the hourly bucket and bursts -------------------------------------------------------------

    def admit(
        self, spec: PersonaSpec, endpoint: str, now: datetime, sid: str
    ) -> web.Response | None:
        """Count one call in the hourly bucket, or answer 429 (a burst, or the bucket is empty).
        Status polling is exempt unless `limit_status_polling` (the guide's rule 2,
        docs/guide.md)."""
        state = self._shared.state
        config = self._shared.config
        hourly_limit = self._limits(sid).hourly_limit or 0
        use = state.of(sid)
        if state.burst_left > 0 or self._faults.draw("burst_429"):
            state.burst_left = (state.burst_left or config.burst_length) - 1
            retry = config.burst_retry_after
            headers = self.rate_headers(
                spec,
                now,
                limit=max(hourly_limit, 1),
                remaining=0,
                reset_at=now + timedelta(seconds=retry),
                retry_after=retry,
            )
            return self.too_many("burst", "Too many requests, slow down", headers, sid)
        limited = endpoint != "GetJob" or config.limit_status_polling
        if not limited or hourly_limit <= 0:
            return None
        window = self.hour_start(now)
        used = use.hourly.get(window, 0)
        if used >= hourly_limit:
            reset_at = window + timedelta(hours=1)
            headers = self.rate_headers(
                spec,
                now,
                limit=hourly_limit,
                remaining=0,
                reset_at=reset_at,
                retry_after=(reset_at - now).total_seconds(),
            )
            return self.too_many("hourly", "Hourly rate limit exceeded", headers, sid)
        use.hourly[window] = used + 1
        use.max_hourly_used = max(use.max_hourly_used, used + 1)
        return None

    # -- daily quotas -----------------------------------------------------------------------------

    def charge_quota(
        self, spec: PersonaSpec, kind: str, now: datetime, sid: str
    ) -> web.Response | None:
        """Count one call against the account's daily quota, or answer 429 if none is left
        (§5)."""
        account = self._limits(sid)
        limit = account.daily_export_limit if kind == "ReportExport" else account.daily_click_limit
        if not limit or limit <= 0:
            return None
        quota = self._shared.state.of(sid).quota
        key = (self.day(now), kind)
        used = quota.get(key, 0)
        reset_at = self.next_day_start(now)
        if used >= limit:
            headers = self.rate_headers(
                spec,
                now,
                limit=limit,
                remaining=0,
                reset_at=reset_at,
                retry_after=(reset_at - now).total_seconds(),
            )
            message = (
                f"Daily {kind} limit of {limit} requests reached; "
                f"it resets at {reset_at.isoformat()}"
            )
            return self.too_many(f"daily_{kind}", message, headers, sid)
        quota[key] = used + 1
        return None

    def use_quota(self, sid: str, kind: str, now: datetime) -> None:
        """Spend the rest of today's `kind` quota of `sid`, as another tool would have."""
        account = self._limits(sid)
        limit = account.daily_export_limit if kind == "ReportExport" else account.daily_click_limit
        self._shared.state.of(sid).quota[(self.day(now), kind)] = limit or 0
