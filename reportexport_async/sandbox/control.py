"""The control API (`/_sandbox/...`, no authentication, never counted) and what it exposes:
`stats()`, the server-side truth that tests and benchmarks use, and `reset()`.

    GET  /_sandbox/stats                 POST /_sandbox/reset
    POST /_sandbox/advance?seconds=N     POST /_sandbox/configure   (a JSON object of settings)
    POST /_sandbox/jobs/{id}/cancel      POST /_sandbox/jobs/{id}/expire
    POST /_sandbox/accounts              (a JSON array of accounts to serve besides the main one)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .config import SandboxAccount
from .routing import ENDPOINTS, Handler
from .shared import State

if TYPE_CHECKING:
    from .limits import Limits
    from .server import Sandbox
    from .shared import Shared


class Control:
    def __init__(self, shared: Shared, limits: Limits, sandbox: Sandbox) -> None:
        self._shared = shared
        self._limits = limits
        self._sandbox = sandbox

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("GET", "/_sandbox/stats", self._stats, "_sandbox:stats"),
            ("POST", "/_sandbox/reset", self._reset, "_sandbox:reset"),
            ("POST", "/_sandbox/advance", self._advance, "_sandbox:advance"),
            ("POST", "/_sandbox/configure", self._configure, "_sandbox:configure"),
            ("POST", "/_sandbox/jobs/{job_id}/cancel", self._cancel, "_sandbox:cancel"),
            ("POST", "/_sandbox/jobs/{job_id}/expire", self._expire, "_sandbox:expire"),
            ("POST", "/_sandbox/accounts", self._accounts, "_sandbox:accounts"),
        ]

    def reset(self) -> None:
        """Forget every job, counter and quota use; keep the settings and the clock."""
        shared = self._shared
        old = shared.state
        shared.state = State()
        shared.resets += 1
        for job in old.jobs.values():
            if job.file is not None:
                job.file.path.unlink(missing_ok=True)
            job.generation += 1  # materialisations still running discard their result

    def stats(self) -> dict[str, Any]:
        shared = self._shared
        state = shared.state
        config = shared.config
        limits = self._limits
        now = shared.clock.now()
        today = limits.day(now)
        statuses: Counter[str] = Counter(job.view(now).status for job in state.jobs.values())
        latencies = sorted(state.postback_latency)
        hour = limits.hour_start(now)

        def account_stats(sid: str) -> dict[str, Any]:
            use = state.of(sid)
            account = config.account(sid)
            assert account is not None
            return {
                # The calls naming the account, by endpoint (those it made: signed downloads
                # name none).
                "calls": {name: use.calls[name] for name in ENDPOINTS if use.calls[name]},
                "jobs_created": use.jobs_created,
                "rate_limited": use.rate_limited,
                "unauthorized": use.unauthorized,
                "ReportExport": use.quota.get((today, "ReportExport"), 0),
                "ClickExport": use.quota.get((today, "ClickExport"), 0),
                "ReportExport_limit": account.daily_export_limit,
                "ClickExport_limit": account.daily_click_limit,
                "hourly_limit": account.hourly_limit,
                "hourly_used": use.hourly.get(hour, 0),
                "max_hourly_used": use.max_hourly_used,
            }

        main = state.of(config.account_sid)
        return {
            "calls": {name: state.calls.get(name, 0) for name in ENDPOINTS},
            "total_calls": sum(state.calls.values()),
            # TCP connections the calls came over (distinct client addresses), signed
            # downloads included: a client that keeps its connections alive opens few.
            "connections": len(state.peers),
            "rate_limited": state.rate_limited,
            "rate_limited_by": dict(state.rate_limited_by),
            "jobs_created": state.jobs_created,
            "replays": state.replays,
            "unauthorized": state.unauthorized,
            "refused": dict(state.refused),
            "dialect": config.dialect,
            "status_codes": dict(state.status_codes),
            "faults_injected": dict(state.faults),
            "jobs_by_status": dict(statuses),
            "quota": {
                "day": today.isoformat(),
                "ReportExport": main.quota.get((today, "ReportExport"), 0),
                "ClickExport": main.quota.get((today, "ClickExport"), 0),
                "ReportExport_limit": config.daily_export_limit,
                "ClickExport_limit": config.daily_click_limit,
                "resets_at": limits.next_day_start(now).isoformat(),
            },
            "hourly": {
                "limit": config.hourly_limit,
                "used": main.hourly.get(hour, 0),
                "max_used": main.max_hourly_used,
            },
            # Every account's own counts, the main one included (by SID).
            "accounts": {
                sid: account_stats(sid)
                for sid in (config.account_sid, *(a.account_sid for a in config.accounts))
            },
            "signed_requests_with_authorization": state.signed_with_authorization,
            "signed_urls_expired": state.signed_expired,
            "postbacks": {
                "attempts": state.postbacks.get("attempts", 0),
                "delivered": state.postbacks.get("delivered", 0),
                "failed_attempts": state.postbacks.get("failed_attempts", 0),
                "lost": state.postbacks.get("lost", 0),
                "gave_up": state.postbacks.get("gave_up", 0),
                "median_real_delay_seconds": latencies[len(latencies) // 2] if latencies else None,
            },
            "internal_failure": None if shared.failure is None else repr(shared.failure),
            "now": now.isoformat(),
            "time_scale": shared.clock.scale,
        }

    # -- the endpoints ----------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _advance(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "nan"))
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError
        except ValueError:
            return web.json_response(
                {"error": "seconds: a non-negative number is required"}, status=400
            )
        self._sandbox.advance(seconds)
        return web.json_response({"now": self._shared.clock.now().isoformat()})

    async def _configure(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            for name in ("job_duration", "postback_delay"):
                if name in changes:
                    changes[name] = tuple(changes[name])
            self._sandbox.configure(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"faults": self._shared.config.faults})

    async def _accounts(self, request: web.Request) -> web.Response:
        """Serve more accounts: a JSON array of `SandboxAccount` fields (`account_sid`,
        `auth_token`, and optionally `hourly_limit`, `daily_export_limit`, `daily_click_limit`)."""
        try:
            items = await request.json()
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("expected a JSON array of objects")
            added = tuple(SandboxAccount(**item) for item in items)
            self._sandbox.configure(accounts=(*self._shared.config.accounts, *added))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"accounts": 1 + len(self._shared.config.accounts)})

    async def _expire(self, request: web.Request) -> web.Response:
        try:
            self._sandbox.expire_job(request.match_info["job_id"])
        except KeyError:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response({"expired": request.match_info["job_id"]})

    async def _cancel(self, request: web.Request) -> web.Response:
        try:
            self._sandbox.cancel_job(request.match_info["job_id"])
        except KeyError:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response({"cancelled": request.match_info["job_id"]})
