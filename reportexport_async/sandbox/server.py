"""The sandbox server: an aiohttp.web application that behaves like impact.com's ReportExport,
ClickExport, Reports and Jobs APIs for the three account types, plus a second listener that plays
the cloud storage behind the Download's signed URLs.

Written from `shared/api-spec/` and `shared/API-FACTS.md` (cited as §N), and independent of the
client side of this package: it imports nothing from it, so a misunderstanding shared by both
cannot hide.

Start it in process::

    async with Sandbox(rows_per_day=50) as sandbox:
        print(sandbox.base_url, sandbox.account_sid, sandbox.auth_token)

or inside a task group, which reports the started sandbox::

    sandbox = await task_group.start(Sandbox().serve)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import hmac
import math
import random
import secrets
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import aiohttp
import anyio
import anyio.abc
from aiohttp import web
from yarl import URL

from .catalog import (
    CATALOGS,
    CLICK_EXPORT_COLUMNS,
    PERSONA_SPECS,
    PERSONAS,
    Column,
    Persona,
    PersonaSpec,
    Report,
    report_filters,
)
from .clock import SandboxClock, ScaledClock
from .config import SandboxConfig
from .data import DataKey, date_range, rows_for_day, write_result
from .jobs import SandboxJob, Timeline, plan_timeline

__all__ = ["Sandbox", "SandboxError"]

ENDPOINTS = (
    "ReportExport",
    "ClickExport",
    "GetJob",
    "ListJobs",
    "Download",
    "SignedDownload",
    "Replay",
    "Reports",
    "MetaData",
)
# Answers that carry a JSON body the fault `status_error_200` may replace.
_JSON_ENDPOINTS = frozenset(
    {"ReportExport", "ClickExport", "GetJob", "ListJobs", "Replay", "Reports", "MetaData"}
)
_PERSONA_PATTERN = "{persona:" + "|".join(PERSONAS) + "}"
_RESULT_FORMATS = ("CSV", "JSON", "XML")
_CONTENT_TYPES = {"CSV": "text/csv", "JSON": "application/json", "XML": "application/xml"}
_NOT_FILTERS = frozenset({"ResultFormat", "IrVersion"})
_CLICK_EXPORT_FIRST_DAY = date(2024, 4, 10)  # "Only dates after April 9, 2024" (§3)
_FILE_CHUNK = 256 * 1024


class SandboxError(ValueError):
    """A sandbox setting that cannot work (for example an unwritable storage folder)."""


class _InvalidInput(Exception):
    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_name = field_name


@dataclass(order=True)
class _Due:
    """A postback delivery due at `due` (sandbox time)."""

    due: datetime
    order: int
    job_id: str = field(compare=False)
    generation: int = field(compare=False)
    attempt: int = field(compare=False)


@dataclass
class _State:
    """Everything `POST /_sandbox/reset` clears."""

    jobs: dict[str, SandboxJob] = field(default_factory=dict)
    by_account: dict[tuple[str, str], list[SandboxJob]] = field(default_factory=dict)
    dedup: dict[tuple[object, ...], str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    status_codes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    quota: dict[tuple[date, str], int] = field(default_factory=dict)
    hourly: dict[datetime, int] = field(default_factory=dict)
    max_hourly_used: int = 0
    rate_limited: int = 0
    rate_limited_by: Counter[str] = field(default_factory=Counter)
    jobs_created: int = 0
    replays: int = 0
    unauthorized: int = 0
    signed_with_authorization: int = 0
    signed_expired: int = 0
    postbacks: Counter[str] = field(default_factory=Counter)
    postback_latency: list[float] = field(default_factory=list)
    burst_left: int = 0
    sequence: int = 0
    due: list[_Due] = field(default_factory=list)
    parked: dict[str, list[_Due]] = field(default_factory=dict)


class Sandbox:
    """A local fake of the impact.com ReportExport and Jobs APIs on loopback.

    Keyword arguments override fields of `config` (see `SandboxConfig`). `clock` defaults to a
    `ScaledClock` running at `config.time_scale` sandbox seconds per real second.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: SandboxClock | None = None,
        **overrides: Any,
    ) -> None:
        base = config or SandboxConfig()
        self.config = base.replace(**overrides) if overrides else base
        self.clock: SandboxClock = clock or ScaledClock(scale=self.config.time_scale)
        self._state = _State()
        self._rng = random.Random(self.config.seed)
        self._signing_key = secrets.token_bytes(32)
        self._wake = anyio.Event()
        self._writing = 0  # result files being written
        self._written = anyio.Event()
        # Background work (result writing, postback delivery, the scheduler). Not an anyio task
        # group: `async with Sandbox()` must be exitable from another task than the one that
        # entered it (pytest-asyncio runs a fixture's setup and teardown in different tasks), so
        # the sandbox keeps its tasks itself and cancels and awaits all of them on exit.
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        self._failure: BaseException | None = None  # a background task's crash (a sandbox bug)
        self._runners: list[web.AppRunner] = []
        self._http: aiohttp.ClientSession | None = None
        self._storage: Path | None = None
        self._own_storage = False
        self.base_url = ""
        self.signed_base_url = ""

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r}, account_sid={self.account_sid!r})"

    # -- public surface ---------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        return self.config.account_sid

    @property
    def auth_token(self) -> str:
        return self.config.auth_token

    @property
    def storage(self) -> Path:
        if self._storage is None:
            raise RuntimeError("the sandbox is not running")
        return self._storage

    def account_url(self, persona: Persona = "Advertisers") -> str:
        """The API root of the sandbox account for one account type."""
        return f"{self.base_url}/{persona}/{self.account_sid}"

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward (a day change on demand: `advance(86400)`)."""
        self.clock.advance(seconds)
        self._wake.set()

    def configure(self, **changes: Any) -> None:
        """Change settings of a running sandbox (faults, limits, postbacks, durations...)."""
        fixed = {"host", "port", "signed_port", "account_sid", "auth_token", "storage"}
        if fixed & changes.keys():
            raise SandboxError(f"cannot change {sorted(fixed & changes.keys())} while running")
        self.config = self.config.replace(**changes)
        self._wake.set()

    def set_faults(self, faults: Mapping[str, float]) -> None:
        self.configure(faults=dict(faults))

    async def wait_idle(self) -> None:
        """Wait until every result file that is being written is on disk (a test helper: jobs
        whose time has come are COMPLETED only once their file exists)."""
        while self._writing:
            await self._written.wait()

    def cancel_job(self, job_id: str) -> None:
        """Put a job into CANCELLED, as only an impact.com administrator can (§2, Cancel)."""
        job = self._state.jobs[job_id]
        job.cancelled_at = self.clock.now()

    def expire_job(self, job_id: str) -> None:
        """Make a completed job's result unavailable, as after the 90 days the docs mention
        (API-FACTS §2): its Download answers 404 until the job is replayed."""
        self._state.jobs[job_id].expired = True

    def reset(self) -> None:
        """Forget every job, counter and quota use; keep the settings and the clock."""
        old = self._state
        self._state = _State()
        for job in old.jobs.values():
            if job.file is not None:
                job.file.path.unlink(missing_ok=True)
            job.generation += 1  # materialisations still running discard their result

    def stats(self) -> dict[str, Any]:
        """Server-side counts: the truth that tests and benchmarks use."""
        state = self._state
        now = self.clock.now()
        today = self._day(now)
        statuses: Counter[str] = Counter(job.view(now).status for job in state.jobs.values())
        latencies = sorted(state.postback_latency)
        return {
            "calls": {name: state.calls.get(name, 0) for name in ENDPOINTS},
            "total_calls": sum(state.calls.values()),
            "rate_limited": state.rate_limited,
            "rate_limited_by": dict(state.rate_limited_by),
            "jobs_created": state.jobs_created,
            "replays": state.replays,
            "unauthorized": state.unauthorized,
            "status_codes": dict(state.status_codes),
            "faults_injected": dict(state.faults),
            "jobs_by_status": dict(statuses),
            "quota": {
                "day": today.isoformat(),
                "ReportExport": state.quota.get((today, "ReportExport"), 0),
                "ClickExport": state.quota.get((today, "ClickExport"), 0),
                "ReportExport_limit": self.config.daily_export_limit,
                "ClickExport_limit": self.config.daily_click_limit,
                "resets_at": self._next_day_start(now).isoformat(),
            },
            "hourly": {
                "limit": self.config.hourly_limit,
                "used": state.hourly.get(self._hour_start(now), 0),
                "max_used": state.max_hourly_used,
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
            "internal_failure": None if self._failure is None else repr(self._failure),
            "now": now.isoformat(),
            "time_scale": self.clock.scale,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        self._storage = self._prepare_storage()
        try:
            self._running = True
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            api_port = await self._listen(self._api_app(), self.config.port)
            signed_port = await self._listen(self._signed_app(), self.config.signed_port)
            self.base_url = f"http://{self._url_host()}:{api_port}"
            self.signed_base_url = f"http://{self._url_host()}:{signed_port}"
            self._spawn(self._scheduler())
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if not self._running:
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug in the sandbox must not pass silently: stop serving API calls.
            self._failure = task.exception()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Sandbox] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; for `TaskGroup.start`, which receives the started sandbox."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for result in results:
            if isinstance(result, Exception):
                raise result
        if self._own_storage and self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)

    def _prepare_storage(self) -> Path:
        if self.config.storage is None:
            self._own_storage = True
            return Path(tempfile.mkdtemp(prefix="reportexport-sandbox-"))
        path = Path(self.config.storage)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SandboxError(
                f"storage folder {str(path)!r} is not writable ({exc.strerror or exc}); "
                "choose another with --storage"
            ) from exc
        return path

    async def _listen(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.config.host, port)
        try:
            await site.start()
        except OSError as exc:
            raise SandboxError(
                f"cannot listen on {self.config.host}:{port} ({exc.strerror or exc})"
            ) from exc
        address = runner.addresses[0]
        return int(address[1])

    def _url_host(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", ""):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    # -- time helpers ---------------------------------------------------------------------------

    @property
    def _tz(self) -> timezone:
        return timezone(self.config.utc_offset)

    def _day(self, now: datetime) -> date:
        return now.astimezone(self._tz).date()

    def _next_day_start(self, now: datetime) -> datetime:
        return datetime.combine(self._day(now) + timedelta(days=1), time(0), self._tz)

    @staticmethod
    def _hour_start(now: datetime) -> datetime:
        return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    # -- the API application --------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware], client_max_size=1024 * 1024)
        root = f"/{_PERSONA_PATTERN}/{{sid}}"
        add = app.router.add_route
        add("GET", f"{root}/ReportExport/{{report_id}}", self._report_export, name="ReportExport")
        add(
            "GET",
            "/{persona:Advertisers}/{sid}/Programs/{program_id}/ClickExport",
            self._click_export,
            name="ClickExport:brand",
        )
        add(
            "GET",
            "/{persona:Mediapartners}/{sid}/ClickExport",
            self._click_export,
            name="ClickExport:partner",
        )
        add("GET", f"{root}/Reports", self._reports, name="Reports")
        add("GET", f"{root}/Reports/{{report_id}}/MetaData", self._metadata, name="MetaData")
        add("GET", f"{root}/Jobs", self._list_jobs, name="ListJobs")
        add("GET", f"{root}/Jobs/{{job_id}}", self._get_job, name="GetJob")
        add("GET", f"{root}/Jobs/{{job_id}}/Download", self._download, name="Download")
        add("PUT", f"{root}/Jobs/{{job_id}}/Replay", self._replay, name="Replay")
        add("GET", "/_sandbox/stats", self._control_stats, name="_sandbox:stats")
        add("POST", "/_sandbox/reset", self._control_reset, name="_sandbox:reset")
        add("POST", "/_sandbox/advance", self._control_advance, name="_sandbox:advance")
        add("POST", "/_sandbox/configure", self._control_configure, name="_sandbox:configure")
        add("POST", "/_sandbox/jobs/{job_id}/cancel", self._control_cancel, name="_sandbox:cancel")
        add("POST", "/_sandbox/jobs/{job_id}/expire", self._control_expire, name="_sandbox:expire")
        return app

    def _spec(self, request: web.Request) -> PersonaSpec:
        return PERSONA_SPECS[cast(Persona, request.match_info["persona"])]

    def _error(
        self,
        status: int,
        message: str,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """The API's error envelope (§5): Status, Message and optional Errors."""
        body: dict[str, object] = {"Status": "ERROR", "Message": message}
        if errors:
            body["Errors"] = errors
        return web.json_response(body, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        sid, _, token = decoded.partition(":")
        return (
            hmac.compare_digest(sid.encode(), self.config.account_sid.encode())
            and hmac.compare_digest(token.encode(), self.config.auth_token.encode())
            and request.match_info.get("sid") == self.config.account_sid
        )

    def _draw(self, fault: str) -> bool:
        rate = self.config.fault(fault)
        if rate > 0 and self._rng.random() < rate:
            self._state.faults[fault] += 1
            return True
        return False

    def _rate_headers(
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
            if self.config.reset_style == "epoch"
            else str(seconds)
        )
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": reset,
        }

    def _hourly_headers(self, spec: PersonaSpec, now: datetime) -> dict[str, str]:
        limit = self.config.hourly_limit
        if limit <= 0:
            return {}
        window = self._hour_start(now)
        used = self._state.hourly.get(window, 0)
        return self._rate_headers(
            spec, now, limit=limit, remaining=limit - used, reset_at=window + timedelta(hours=1)
        )

    def _too_many(
        self, spec: PersonaSpec, reason: str, message: str, headers: dict[str, str]
    ) -> web.Response:
        self._state.rate_limited += 1
        self._state.rate_limited_by[reason] += 1
        return self._error(429, message, headers=headers)

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        name = request.match_info.route.name
        if name is None or name.startswith("_sandbox"):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400 and request.path.lstrip("/").split("/")[0] in PERSONAS:
                    # Inside an account root, unknown paths answer in the API's envelope.
                    return self._error(exc.status, exc.reason)
                raise
        if self._failure is not None:
            return self._error(500, f"sandbox internal failure: {self._failure!r}")
        endpoint = name.split(":")[0]
        state = self._state
        state.calls[endpoint] += 1
        response = await self._api_call(request, handler, endpoint)
        state.status_codes[str(response.status)] += 1
        return response

    async def _api_call(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        endpoint: str,
    ) -> web.StreamResponse:
        state = self._state
        config = self.config
        spec = self._spec(request)
        if not self._authorized(request):
            state.unauthorized += 1
            return self._error(
                401,
                "Unauthorized: check the Account SID and Auth Token",
                headers={"WWW-Authenticate": 'Basic realm="impact.com API"'},
            )
        if self._draw("slow"):
            await anyio.sleep(config.slow_seconds)
        now = self.clock.now()
        if state.burst_left > 0 or self._draw("burst_429"):
            state.burst_left = (state.burst_left or config.burst_length) - 1
            retry = config.burst_retry_after
            headers = self._rate_headers(
                spec,
                now,
                limit=max(config.hourly_limit, 1),
                remaining=0,
                reset_at=now + timedelta(seconds=retry),
                retry_after=retry,
            )
            return self._too_many(spec, "burst", "Too many requests, slow down", headers)
        limited = endpoint != "GetJob" or config.limit_status_polling
        if limited and config.hourly_limit > 0:
            window = self._hour_start(now)
            used = state.hourly.get(window, 0)
            if used >= config.hourly_limit:
                reset_at = window + timedelta(hours=1)
                headers = self._rate_headers(
                    spec,
                    now,
                    limit=config.hourly_limit,
                    remaining=0,
                    reset_at=reset_at,
                    retry_after=(reset_at - now).total_seconds(),
                )
                return self._too_many(spec, "hourly", "Hourly rate limit exceeded", headers)
            state.hourly[window] = used + 1
            state.max_hourly_used = max(state.max_hourly_used, used + 1)
        rate_headers = self._hourly_headers(spec, now)
        if self._draw("http_5xx"):
            status = self._rng.choice((500, 502, 503, 504))
            response: web.StreamResponse = self._error(status, "Internal server error")
        elif endpoint in _JSON_ENDPOINTS and self._draw("status_error_200"):
            # §1c: the API answers some errors with HTTP 200 and Status: ERROR.
            response = self._error(200, "An internal error occurred. Please try again later.")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = self._error(exc.status, exc.reason)
            if (
                isinstance(response, web.Response)
                and response.content_type == "application/json"
                and response.status < 300
                and self._draw("malformed_json")
            ):
                body = cast(bytes, response.body)
                response = web.Response(
                    body=body[: max(1, len(body) // 2)],
                    status=response.status,
                    content_type="application/json",
                )
        for key, value in rate_headers.items():
            response.headers.setdefault(key, value)
        return response

    # -- ReportExport and ClickExport -------------------------------------------------------------

    def _invalid(self, spec: PersonaSpec, problem: _InvalidInput) -> web.Response:
        if spec.unknown_report_status == 200:
            # §1c: "The Reports and ReportExport endpoints do not use 4xx status codes".
            return self._error(200, problem.message)
        if problem.field_name is None:
            return self._error(400, "Validation Failed")
        errors = [{"Field": problem.field_name, "Message": problem.message}]
        return self._error(400, "Validation Failed", errors)

    def _charge_quota(self, spec: PersonaSpec, kind: str, now: datetime) -> web.Response | None:
        """Count one call against the daily quota, or answer 429 if none is left (§5)."""
        limit = (
            self.config.daily_export_limit
            if kind == "ReportExport"
            else self.config.daily_click_limit
        )
        if limit <= 0:
            return None
        key = (self._day(now), kind)
        used = self._state.quota.get(key, 0)
        reset_at = self._next_day_start(now)
        if used >= limit:
            headers = self._rate_headers(
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
            return self._too_many(spec, f"daily_{kind}", message, headers)
        self._state.quota[key] = used + 1
        return None

    def _parse_day(self, text: str, name: str, datetimes: bool) -> date:
        try:
            if datetimes and "T" in text:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return moment.date()
            return date.fromisoformat(text)
        except ValueError:
            expected = "YYYY-MM-DDThh:mm:ssZ" if datetimes else "YYYY-MM-DD"
            raise _InvalidInput(
                f"Invalid date '{text}' for {name}; expected {expected}", name
            ) from None

    def _export_dates(
        self, spec: PersonaSpec, query: Mapping[str, str], now: datetime
    ) -> tuple[date, date, date | None, set[str]]:
        """(start, end, default-range day or None, the parameter names used for dates)."""
        names = [(spec.start_param, spec.end_param)]
        if spec.alternate_date_params:
            names.append(spec.alternate_date_params)
        for start_name, end_name in names:
            start_text, end_text = query.get(start_name), query.get(end_name)
            if start_text is None and end_text is None:
                continue
            if start_text is None or end_text is None:
                missing = start_name if start_text is None else end_name
                raise _InvalidInput(f"{missing} is required when the other date is given", missing)
            start = self._parse_day(start_text, start_name, spec.dates_are_datetimes)
            end = self._parse_day(end_text, end_name, spec.dates_are_datetimes)
            if start > end:
                raise _InvalidInput(f"{start_name} must not be after {end_name}", start_name)
            return start, end, None, {start_name, end_name}
        # DESIGN rule 5: no dates means the default range; it becomes a new job only when a new
        # calendar day has started. (The partner spec marks the dates required; the guide wins.)
        today = self._day(now)
        start = today - timedelta(days=self.config.default_range_days - 1)
        return start, today, today, set()

    @staticmethod
    def _check_filter_types(report: Report, filters: Mapping[str, str]) -> None:
        for item in report.extra_filters:
            value = filters.get(item.name)
            if value is None:
                continue
            try:
                if item.data_type == "Integer":
                    int(value)
                elif item.data_type == "Decimal":
                    float(value)
                elif item.data_type == "Boolean" and value.lower() not in ("true", "false"):
                    raise ValueError(value)
            except ValueError:
                raise _InvalidInput(
                    f"Invalid value '{value}' for {item.name}: expected {item.data_type}",
                    item.name,
                ) from None

    @staticmethod
    def _result_format(query: Mapping[str, str]) -> str:
        fmt = query.get("ResultFormat", "CSV").upper()
        if fmt not in _RESULT_FORMATS:
            raise _InvalidInput(
                "Invalid result format. Must be one of CSV, JSON or XML", "ResultFormat"
            )
        return fmt

    async def _report_export(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        persona = spec.root
        now = self.clock.now()
        refused = self._charge_quota(spec, "ReportExport", now)
        if refused is not None:
            return refused
        report_id = request.match_info["report_id"]
        report = CATALOGS[persona].get(report_id)
        if report is None or not report.api_accessible:
            if spec.unknown_report_status == 404:
                return self._error(
                    404,
                    "No report exists with the supplied Id, or the report is not API accessible.",
                )
            return self._error(200, f"Not permitted to run report {report_id}")
        query = request.query
        try:
            fmt = self._result_format(query)
            start, end, default_day, date_names = self._export_dates(spec, query, now)
            filters = {
                key: value
                for key, value in query.items()
                if key not in _NOT_FILTERS and key not in date_names
            }
            self._check_filter_types(report, filters)
        except _InvalidInput as problem:
            return self._invalid(spec, problem)
        key = DataKey(self.account_sid, persona, report_id, tuple(sorted(filters.items())))
        dedup = ("ApiReport", persona, key, start, end, fmt, default_day)
        job = self._find_or_create(
            dedup,
            persona=persona,
            job_type="ApiReport",
            program_id=filters.get("SUBAID", ""),
            key=key,
            columns=report.columns,
            start=start,
            end=end,
            fmt=fmt,
            now=now,
        )
        return web.json_response(self._ticket(spec, job))

    async def _click_export(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        persona = spec.root
        now = self.clock.now()
        refused = self._charge_quota(spec, "ClickExport", now)
        if refused is not None:
            return refused
        query = request.query
        try:
            fmt = self._result_format(query)
            day = self._click_date(query, now)
            filters: list[tuple[str, str]] = []
            if persona == "Advertisers":
                program_id = request.match_info["program_id"]
                filters.append(("ProgramId", program_id))
                list_params: tuple[str, ...] = ("AdId[]", "MediaId[]")
                unique_values = ("true", "false")
                for name in list_params:
                    for value in query.getall(name, []):
                        if not value.isdigit():
                            raise _InvalidInput(f"Invalid value '{value}' for {name}", name)
            else:
                ids = query.getall("ProgramId[]", [])
                program_id = ids[0] if ids else ""
                list_params = ("ProgramId[]", "AdId[]", "SubId[]")
                unique_values = ("TRUE", "FALSE")
            for name in list_params:
                filters.extend((name, value) for value in sorted(query.getall(name, [])))
            unique = query.get("UniqueClick")
            if unique is not None:
                if unique not in unique_values:
                    expected = " or ".join(unique_values)
                    raise _InvalidInput(f"UniqueClick must be {expected}", "UniqueClick")
                filters.append(("UniqueClick", unique.lower()))
        except _InvalidInput as problem:
            return self._invalid(spec, problem)
        key = DataKey(self.account_sid, persona, "ClickExport", tuple(sorted(filters)))
        dedup = ("ClickExport", persona, key, day, fmt)
        job = self._find_or_create(
            dedup,
            persona=persona,
            job_type="ClickExport",
            program_id=program_id,
            key=key,
            columns=CLICK_EXPORT_COLUMNS,
            start=day,
            end=day,
            fmt=fmt,
            now=now,
        )
        body = self._ticket(spec, job)
        body["ReplayUri"] = job.replay_uri  # both ClickExport specs return it (§3)
        return web.json_response(body)

    def _click_date(self, query: Mapping[str, str], now: datetime) -> date:
        text = query.get("Date")
        today = self._day(now)
        if text is None:
            return today
        day = self._parse_day(text, "Date", False)
        if day < _CLICK_EXPORT_FIRST_DAY:
            raise _InvalidInput("Only dates after April 9, 2024 are supported", "Date")
        if day > today:
            raise _InvalidInput("Date must not be in the future", "Date")
        return day

    def _ticket(self, spec: PersonaSpec, job: SandboxJob) -> dict[str, object]:
        body: dict[str, object] = {
            "Status": "QUEUED",
            "QueuedUri": job.queued_uri,
            "ResultUri": job.result_uri,
        }
        if spec.export_has_replay_uri:
            body["ReplayUri"] = job.replay_uri
        return body

    def _find_or_create(
        self,
        dedup: tuple[object, ...],
        *,
        persona: Persona,
        job_type: str,
        program_id: str,
        key: DataKey,
        columns: tuple[Column, ...],
        start: date,
        end: date,
        fmt: str,
        now: datetime,
    ) -> SandboxJob:
        # DESIGN rule 1 / §1d: identical parameters return the existing job (and still count).
        existing = self._state.dedup.get(dedup)
        if existing is not None:
            return self._state.jobs[existing]
        job = self._new_job(persona, job_type, program_id, key, columns, start, end, fmt, now)
        self._state.dedup[dedup] = job.id
        return job

    def _new_job(
        self,
        persona: Persona,
        job_type: str,
        program_id: str,
        key: DataKey,
        columns: tuple[Column, ...],
        start: date,
        end: date,
        fmt: str,
        now: datetime,
    ) -> SandboxJob:
        state = self._state
        state.sequence += 1
        digest = hashlib.sha256(f"{self.config.seed}:{state.sequence}".encode()).digest()
        job_id = str(uuid.UUID(bytes=digest[:16], version=4))
        job = SandboxJob(
            id=job_id,
            columns=columns,
            persona=persona,
            account_sid=self.account_sid,
            job_type=job_type,
            source=key.source,
            program_id=program_id,
            key=key,
            start=start,
            end=end,
            result_format=fmt,
            created=now,
            timeline=self._draw_timeline(job_id, 0, now),
            expected_records=0,
            sequence=state.sequence,
        )
        state.jobs[job.id] = job
        state.by_account.setdefault((persona, self.account_sid), []).append(job)
        state.jobs_created += 1
        self._launch(job, now)
        return job

    def _draw_timeline(self, job_id: str, generation: int, now: datetime) -> Timeline:
        """The job's whole life from `now`, drawn from a generator seeded by the job."""
        config = self.config
        return plan_timeline(
            random.Random(f"{config.seed}:{job_id}:{generation}"),
            now,
            config.job_duration,
            fail_rate=config.fault("job_fail"),
            error_rate=config.fault("job_error"),
            stuck_rate=config.fault("job_stuck"),
        )

    def _launch(self, job: SandboxJob, now: datetime) -> None:
        """Write the job's result in the background and schedule its postback."""
        config = self.config
        for attempt in job.timeline.attempts:
            fault = {"ERROR": "job_error", "FAILED": "job_fail", "STUCK": "job_stuck"}.get(
                attempt.outcome
            )
            if fault is not None:
                self._state.faults[fault] += 1
        rng = random.Random(f"{config.seed}:{job.id}:{job.generation}:postback")
        as_of = job.timeline.final_at or now
        job.expected_records = sum(count for _, count in self._day_counts(job, as_of))
        final_at = job.final_event_at()
        if final_at is None:
            return
        if job.timeline.final_status == "COMPLETED" and self._running:
            self._writing += 1  # counted now, so wait_idle() sees it before the task starts
            self._spawn(self._materialise(job, job.generation, final_at))
        self._schedule_postback(
            job, final_at + timedelta(seconds=rng.uniform(*config.postback_delay))
        )

    def _day_counts(self, job: SandboxJob, as_of: datetime) -> list[tuple[date, int]]:
        config = self.config
        return [
            (
                day,
                rows_for_day(
                    day,
                    as_of,
                    rows_per_day=config.rows_per_day,
                    settle_days=config.settle_days,
                    utc_offset=config.utc_offset,
                ),
            )
            for day in date_range(job.start, job.end)
        ]

    async def _materialise(self, job: SandboxJob, generation: int, as_of: datetime) -> None:
        """Write the result once to the storage folder; it is served from disk."""
        extension = job.result_format.lower()
        path = self.storage / f"{job.id}-{generation}.{extension}"
        try:
            result = await anyio.to_thread.run_sync(
                write_result,
                path,
                job.result_format,
                job.key,
                job.columns,
                self._day_counts(job, as_of),
            )
        except OSError as exc:
            # The sandbox's own disk failed: the job fails, as a real storage failure would, and
            # the server keeps serving.
            path.with_name(path.name + ".part").unlink(missing_ok=True)
            self._state.faults["storage_error"] += 1
            if job.generation == generation:
                job.storage_error = f"Result could not be stored: {exc.strerror or exc}"
                self._unpark(job)
            return
        finally:
            self._writing -= 1
            self._written.set()
            self._written = anyio.Event()
        if self._state.jobs.get(job.id) is not job or job.generation != generation:
            result.path.unlink(missing_ok=True)  # replayed or reset meanwhile
            return
        job.file = result
        self._unpark(job)

    def _unpark(self, job: SandboxJob) -> None:
        """Postbacks that waited for the job's result file are due now."""
        for entry in self._state.parked.pop(job.id, []):
            heapq.heappush(self._state.due, entry)
        self._wake.set()

    # -- Reports ----------------------------------------------------------------------------------

    def _report_json(self, spec: PersonaSpec, sid: str, report: Report) -> dict[str, object]:
        root = f"/{spec.root}/{sid}"
        return {
            "Name": report.name,
            "Id": report.id,
            "Category": report.category,
            "Description": report.description,
            "ApiAccessible": report.api_accessible,
            "ApiRunUri": f"{root}/Reports/{report.id}",
            "DeferredApiRunUri": f"{root}/ReportExport/{report.id}",
            # The brand spec's example says /ReportsMetadata/<id> but its path is
            # /Reports/{Id}/MetaData (§1d); the sandbox points at the path that works.
            "MetaDataUri": f"{root}/Reports/{report.id}/MetaData",
            "RunUri": f"https://app.impact.com/secure/reports/run/{report.id}",
        }

    async def _reports(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        reports = [
            self._report_json(spec, self.account_sid, report)
            for report in CATALOGS[spec.root].values()
        ]
        # Brand and partner wrap the catalog; the agency spec shows a top-level array (§1d).
        return web.json_response({"Reports": reports} if spec.list_wrapped else reports)

    async def _metadata(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        report = CATALOGS[spec.root].get(request.match_info["report_id"])
        if report is None:
            return self._error(404, "No report exists with the supplied Id")
        root = f"/{spec.root}/{self.account_sid}"
        body = {
            "Name": report.name,
            "Id": report.id,
            "Description": report.description,
            "Filters": [
                {"Name": item.name, "DataType": item.data_type, "Format": item.format}
                for item in report_filters(spec.root, report)
            ],
            "Attributes": [
                {"Name": c.name, "DataType": c.data_type, "Description": c.description}
                for c in report.columns
            ],
            "RunUri": f"{root}/Reports/{report.id}",
            "Uri": f"{root}/Reports/{report.id}/MetaData",
        }
        return web.json_response(body)

    # -- Jobs -------------------------------------------------------------------------------------

    def _job_for(self, request: web.Request) -> SandboxJob | None:
        job = self._state.jobs.get(request.match_info["job_id"])
        if job is None or job.persona != request.match_info["persona"]:
            return None
        return job

    def _job_json(self, spec: PersonaSpec, job: SandboxJob, now: datetime) -> dict[str, object]:
        return job.to_json(
            now,
            spec,
            string_values=self.config.string_values,
            utc_offset=self.config.utc_offset,
        )

    async def _get_job(self, request: web.Request) -> web.Response:
        job = self._job_for(request)
        if job is None:
            return self._error(404, "Job not found")
        return web.json_response(self._job_json(self._spec(request), job, self.clock.now()))

    def _list_bound(self, text: str, name: str, upper: bool) -> datetime:
        """`CreatedAfter`/`CreatedBefore`: a date (inclusive, in the account's timezone, as the
        agency spec says) or an ISO date-time (brand)."""
        try:
            if "T" in text:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return moment if moment.tzinfo else moment.replace(tzinfo=self._tz)
            day = date.fromisoformat(text)
        except ValueError:
            raise _InvalidInput(f"Invalid date '{text}' for {name}", name) from None
        if upper:
            return datetime.combine(day + timedelta(days=1), time(0), self._tz) - timedelta(
                microseconds=1
            )
        return datetime.combine(day, time(0), self._tz)

    @staticmethod
    def _positive_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
        text = query.get(name)
        if text is None:
            return default
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise _InvalidInput(f"{name} must be a whole number from 1 to {maximum}", name)
        return int(text)

    async def _list_jobs(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        query = request.query
        now = self.clock.now()
        try:
            after = (
                self._list_bound(query["CreatedAfter"], "CreatedAfter", upper=False)
                if "CreatedAfter" in query
                else None
            )
            before = (
                self._list_bound(query["CreatedBefore"], "CreatedBefore", upper=True)
                if "CreatedBefore" in query
                else None
            )
            page = self._positive_int(query, "Page", 1, 10**9)
            size = self._positive_int(
                query, "PageSize", self.config.jobs_page_size, self.config.max_page_size
            )
        except _InvalidInput as problem:
            errors = [{"Field": problem.field_name or "", "Message": problem.message}]
            return self._error(400, "Validation Failed", errors)
        jobs = [
            job
            for job in self._state.by_account.get((spec.root, self.account_sid), [])
            if (after is None or job.created >= after) and (before is None or job.created <= before)
        ]
        total = len(jobs)
        pages = max(1, math.ceil(total / size))
        chosen = jobs[(page - 1) * size : page * size]
        items = [self._job_json(spec, job, now) for job in chosen]
        if not spec.list_wrapped:
            # The agency answers a top-level array (§2): no room for page meta. A client keeps
            # asking for pages until one comes back shorter than PageSize.
            return web.json_response(items)

        def page_uri(number: int) -> str:
            params = {k: v for k, v in query.items() if k not in ("Page", "PageSize")}
            params.update({"Page": str(number), "PageSize": str(size)})
            return str(URL(request.path).with_query(params))

        spelling = "ruri" if spec.partner_page_spelling else "uri"
        start_index = (page - 1) * size
        body: dict[str, object] = {
            "@page": str(page),
            "@numpages": str(pages),
            "@pagesize": str(size),
            "@total": str(total),
            "@start": str(start_index),
            "@end": str(start_index + len(chosen) - 1 if chosen else start_index),
            "@uri": page_uri(page),
            f"@firstpage{spelling}": page_uri(1),
            f"@previouspage{spelling}": page_uri(page - 1) if page > 1 else "",
            "@nextpageuri": page_uri(page + 1) if page < pages else "",
            f"@lastpage{spelling}": page_uri(pages),
            "Jobs": items,
        }
        return web.json_response(body)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        spec = self._spec(request)
        job = self._job_for(request)
        if job is None:
            return self._error(404, "Job not found")
        now = self.clock.now()
        if job.expired:
            return self._error(404, "The job's result has expired")
        if job.view(now).status != "COMPLETED" or job.file is None:
            # §2: 202 with the current Job while there is no result to download.
            return web.json_response(self._job_json(spec, job, now), status=202)
        if request.query.get("Mode") == "Stream":
            return await self._serve_file(request, job, "application/octet-stream")
        lifetime = self.config.signed_url_ttl
        if self._draw("expired_signed_url"):
            lifetime = -60.0
        expires = math.floor((now + timedelta(seconds=lifetime)).timestamp())
        name = self._file_name(job)
        path = f"/signed/{job.id}/{job.generation}/{name}"
        signature = self._sign(path, expires)
        location = f"{self.signed_base_url}{path}?Expires={expires}&Signature={signature}"
        return web.Response(status=302, headers={"Location": location})

    @staticmethod
    def _file_name(job: SandboxJob) -> str:
        return f"{job.source}_{job.start:%Y%m%d}_{job.end:%Y%m%d}.{job.result_format.lower()}"

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{path}\n{expires}".encode(), "sha256").hexdigest()

    async def _serve_file(
        self, request: web.Request, job: SandboxJob, content_type: str
    ) -> web.StreamResponse:
        result = job.file
        assert result is not None
        headers = {
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{self._file_name(job)}"',
        }
        drop = self._draw("drop_connection")
        truncate = not drop and self._draw("truncate_body")
        if not (drop or truncate) or result.size == 0:
            return web.FileResponse(result.path, chunk_size=_FILE_CHUNK, headers=headers)
        # Send part of the body under the full Content-Length, then cut the connection: an abort
        # (RST) for a dropped connection, an orderly close for a truncated body.
        response = web.StreamResponse(headers=headers)
        response.content_length = result.size
        await response.prepare(request)
        cut = int(result.size * self._rng.uniform(0.1, 0.9))
        sent = 0
        with open(result.path, "rb") as handle:  # noqa: ASYNC230 - small, bounded reads
            while sent < cut:
                chunk = handle.read(min(_FILE_CHUNK, cut - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
        transport = request.transport
        if transport is not None:
            if drop:
                transport.abort()
            else:
                transport.close()
        return response

    async def _replay(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        job = self._job_for(request)
        if job is None:
            return self._error(404, "Job not found")
        now = self.clock.now()
        status = job.view(now).status
        if not job.replayable or status not in spec.replayable_states:
            # §2: 403 while the job is not in a replayable state (e.g. still running).
            return self._error(403, f"The job is not in a replayable state (Status {status})")
        self._state.replays += 1
        if spec.replay_new_id:
            # Agency: "Replaying creates a new job with a new Id; the original is not modified."
            new = self._new_job(
                job.persona,
                job.job_type,
                job.program_id,
                job.key,
                job.columns,
                job.start,
                job.end,
                job.result_format,
                now,
            )
            return web.json_response(self._job_json(spec, new, now))
        # Brand and partner: the same job is re-queued.
        job.generation += 1
        job.storage_error = None
        job.expired = False
        if job.file is not None:
            job.file.path.unlink(missing_ok=True)
            job.file = None
        job.cancelled_at = None
        job.timeline = self._draw_timeline(job.id, job.generation, now)
        self._launch(job, now)
        return web.json_response(self._job_json(spec, job, now))

    # -- postbacks --------------------------------------------------------------------------------

    def _schedule_postback(self, job: SandboxJob, due: datetime) -> None:
        if not self.config.postback_url:
            return
        self._state.sequence += 1
        heapq.heappush(self._state.due, _Due(due, self._state.sequence, job.id, job.generation, 1))
        self._wake.set()

    async def _scheduler(self) -> None:
        """Deliver postbacks when they fall due in sandbox time."""
        while True:
            now = self.clock.now()
            state = self._state
            while state.due and state.due[0].due <= now:
                self._fire(heapq.heappop(state.due), now)
            wait = math.inf
            if state.due:
                wait = self.clock.real_seconds((state.due[0].due - now).total_seconds())
            with anyio.move_on_after(min(wait, 60.0)):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = anyio.Event()

    def _fire(self, entry: _Due, now: datetime) -> None:
        state = self._state
        job = state.jobs.get(entry.job_id)
        if job is None or job.generation != entry.generation or job.cancelled_at is not None:
            return
        status = job.view(now).status
        if status == "RUNNING" and job.timeline.final_status == "COMPLETED":
            state.parked.setdefault(job.id, []).append(entry)  # the result is still being written
            return
        if entry.attempt == 1 and self._draw("lost_postback"):
            state.postbacks["lost"] += 1
            return
        self._spawn(self._deliver(entry, job.id, status))

    async def _deliver(self, entry: _Due, job_id: str, status: str) -> None:
        url = self.config.postback_url
        if not url or self._http is None:
            return
        state = self._state
        state.postbacks["attempts"] += 1
        payload = {"JobId": job_id, "Status": status}
        started = anyio.current_time()
        try:
            if self.config.postback_method == "GET":
                request = self._http.get(URL(url).update_query(payload))
            else:
                request = self._http.post(url, json=payload)
            async with request as response:
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if state is not self._state:
            return
        if ok:
            state.postbacks["delivered"] += 1
            state.postback_latency.append(anyio.current_time() - started)
            return
        state.postbacks["failed_attempts"] += 1
        if entry.attempt >= self.config.postback_max_attempts:
            state.postbacks["gave_up"] += 1
            return
        # Non-2xx answers are retried (§4); the schedule is not published, so back off doubling.
        state.sequence += 1
        retry_at = self.clock.now() + timedelta(seconds=2**entry.attempt)
        heapq.heappush(
            state.due,
            _Due(retry_at, state.sequence, entry.job_id, entry.generation, entry.attempt + 1),
        )
        self._wake.set()

    # -- the signed-URL origin ---------------------------------------------------------------------

    def _signed_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/signed/{job_id}/{generation}/{name}", self._signed_download)
        return app

    async def _signed_download(self, request: web.Request) -> web.StreamResponse:
        """Plays cloud storage: checks the signature and expiry, refuses other credentials."""
        state = self._state
        state.calls["SignedDownload"] += 1
        if self._draw("slow"):
            await anyio.sleep(self.config.slow_seconds)
        xml = "application/xml"
        if "Authorization" in request.headers:
            # Signed URLs reject a request that carries extra credentials (§2, Download).
            state.signed_with_authorization += 1
            state.status_codes["400"] += 1
            return web.Response(
                status=400,
                content_type=xml,
                text="<Error><Code>InvalidArgument</Code>"
                "<Message>Only one auth mechanism allowed</Message></Error>",
            )
        expires_text = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        if not expires_text.lstrip("-").isdigit() or not hmac.compare_digest(
            signature, self._sign(request.path, int(expires_text))
        ):
            state.status_codes["403"] += 1
            return web.Response(
                status=403,
                content_type=xml,
                text="<Error><Code>SignatureDoesNotMatch</Code></Error>",
            )
        if self.clock.now().timestamp() > int(expires_text):
            state.signed_expired += 1
            state.status_codes["403"] += 1
            return web.Response(
                status=403,
                content_type=xml,
                text="<Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>",
            )
        job = state.jobs.get(request.match_info["job_id"])
        if (
            job is None
            or job.file is None
            or str(job.generation) != request.match_info["generation"]
        ):
            state.status_codes["404"] += 1
            return web.Response(
                status=404, content_type=xml, text="<Error><Code>NoSuchKey</Code></Error>"
            )
        state.status_codes["200"] += 1
        return await self._serve_file(request, job, _CONTENT_TYPES[job.result_format])

    # -- control endpoints -----------------------------------------------------------------

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _control_advance(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "nan"))
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError
        except ValueError:
            return web.json_response(
                {"error": "seconds: a non-negative number is required"}, status=400
            )
        self.advance(seconds)
        return web.json_response({"now": self.clock.now().isoformat()})

    async def _control_configure(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            for name in ("job_duration", "postback_delay"):
                if name in changes:
                    changes[name] = tuple(changes[name])
            self.configure(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"faults": self.config.faults})

    async def _control_expire(self, request: web.Request) -> web.Response:
        try:
            self.expire_job(request.match_info["job_id"])
        except KeyError:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response({"expired": request.match_info["job_id"]})

    async def _control_cancel(self, request: web.Request) -> web.Response:
        try:
            self.cancel_job(request.match_info["job_id"])
        except KeyError:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response({"cancelled": request.match_info["job_id"]})
