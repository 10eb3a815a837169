"""The sandbox server: an aiohttp.web application that behaves like impact.com's ReportExport,
ClickExport, Reports and Jobs APIs for the three account types, plus a second listener that plays
the cloud storage behind the Download's signed URLs.

Written from impact.com's published OpenAPI documents and docs/api-facts.md (cited as §N; the
sources are named there), and independent of the
client side of this package: it imports nothing from it, so a misunderstanding shared by both
cannot hide.

This module holds the `Sandbox` itself: its settings, its lifecycle and its public methods. The
work is done in rooms, one module each:

- `routing`: the API application, authentication, the pipeline of every call, the error envelope;
- `limits`: the hourly bucket, the daily quotas, bursts of 429 and the rate-limit headers;
- `exports`: ReportExport and ClickExport (they queue jobs); `reports`: Reports and MetaData;
- `jobs`: the job timeline and the Jobs endpoints (get, list, download, replay);
- `files`: result files on disk, `Mode=Stream`, and the signed-URL origin;
- `postbacks`: job-completion postbacks and their retries;
- `faults`: the faults injected on request;
- `control`: the `/_sandbox/...` endpoints, `stats()` and `reset()`;
- `shared`: what every room reads (settings, clock, state, randomness, background tasks).

Start it in process::

    async with Sandbox(rows_per_day=50) as sandbox:
        print(sandbox.base_url, sandbox.account_sid, sandbox.auth_token)

or inside a task group, which reports the started sandbox::

    sandbox = await task_group.start(Sandbox().serve)
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from aiohttp import web

from .catalog import Persona
from .clock import SandboxClock, ScaledClock
from .config import SandboxAccount, SandboxConfig
from .control import Control
from .exports import Exports
from .faults import Faults
from .files import Files
from .jobs import Jobs
from .limits import Limits
from .postbacks import Postbacks
from .reports import Reports
from .routing import ENDPOINTS, ROOT, Router
from .shared import Shared

__all__ = ["ENDPOINTS", "Sandbox", "SandboxError"]


class SandboxError(ValueError):
    """A sandbox setting that cannot work (for example an unwritable storage folder)."""


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
        config = base.replace(**overrides) if overrides else base
        shared = Shared(config, clock or ScaledClock(scale=config.time_scale))
        self._shared = shared
        self._faults = Faults(shared)
        self._limits = Limits(shared, self._faults)
        self._postbacks = Postbacks(shared, self._faults)
        self._files = Files(shared, self._faults, self._postbacks)
        self._jobs = Jobs(shared, self._faults, self._files, self._postbacks)
        self._exports = Exports(shared, self._limits, self._jobs)
        self._reports = Reports(shared)
        self._control = Control(shared, self._limits, self)
        self._router = Router(shared, self._limits, self._faults)
        self._runners: list[web.AppRunner] = []
        self._own_storage = False
        self.base_url = ""

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r}, account_sid={self.account_sid!r})"

    # -- public surface ---------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        return self._shared.config

    @property
    def clock(self) -> SandboxClock:
        return self._shared.clock

    @property
    def signed_base_url(self) -> str:
        return self._files.signed_base_url

    @property
    def account_sid(self) -> str:
        return self.config.account_sid

    @property
    def auth_token(self) -> str:
        return self.config.auth_token

    @property
    def storage(self) -> Path:
        if self._shared.storage is None:
            raise RuntimeError("the sandbox is not running")
        return self._shared.storage

    @property
    def accounts(self) -> tuple[SandboxAccount, ...]:
        """Every account served, the main one first, with their limits resolved."""
        config = self.config
        sids = (config.account_sid, *(a.account_sid for a in config.accounts))
        return tuple(account for sid in sids if (account := config.account(sid)) is not None)

    def add_account(self, account: SandboxAccount | None = None, **settings: Any) -> SandboxAccount:
        """Serve one more account (`SandboxAccount` fields as keywords, or a value); returns it
        with its limits resolved."""
        account = account or SandboxAccount(**settings)
        self.configure(accounts=(*self.config.accounts, account))
        resolved = self.config.account(account.account_sid)
        assert resolved is not None
        return resolved

    def use_quota(self, account_sid: str | None = None, kind: str = "ReportExport") -> None:
        """Spend the rest of an account's daily `kind` quota (ReportExport or ClickExport), as
        another tool using the account today would have: its next export call gets a 429."""
        sid = account_sid or self.account_sid
        if self.config.account(sid) is None:
            raise SandboxError(f"no account {sid!r} in this sandbox")
        if kind not in ("ReportExport", "ClickExport"):
            raise SandboxError(f"kind must be ReportExport or ClickExport, got {kind!r}")
        self._limits.use_quota(sid, kind, self.clock.now())

    def account_url(self, persona: Persona = "Advertisers") -> str:
        """The API root of the sandbox account for one account type."""
        return f"{self.base_url}/{persona}/{self.account_sid}"

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward (a day change on demand: `advance(86400)`)."""
        self.clock.advance(seconds)
        self._postbacks.wake()

    def configure(self, **changes: Any) -> None:
        """Change settings of a running sandbox (faults, limits, postbacks, durations...)."""
        fixed = {"host", "port", "signed_port", "account_sid", "auth_token", "storage"}
        if fixed & changes.keys():
            raise SandboxError(f"cannot change {sorted(fixed & changes.keys())} while running")
        self._shared.config = self.config.replace(**changes)
        self._postbacks.wake()

    def set_faults(self, faults: Mapping[str, float]) -> None:
        self.configure(faults=dict(faults))

    async def wait_idle(self) -> None:
        """Wait until every result file that is being written is on disk (a test helper: jobs
        whose time has come are COMPLETED only once their file exists)."""
        await self._files.wait_idle()

    def cancel_job(self, job_id: str) -> None:
        """Put a job into CANCELLED, as only an impact.com administrator can (§2, Cancel)."""
        job = self._shared.state.jobs[job_id]
        job.cancelled_at = self.clock.now()

    def expire_job(self, job_id: str) -> None:
        """Make a completed job's result unavailable, as after the 90 days the docs mention
        (docs/api-facts.md §2): its Download answers 404 until the job is replayed."""
        self._shared.state.jobs[job_id].expired = True

    def reset(self) -> None:
        """Forget every job, counter and quota use; keep the settings and the clock."""
        self._control.reset()

    def stats(self) -> dict[str, Any]:
        """Server-side counts: the truth that tests and benchmarks use."""
        return self._control.stats()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        self._shared.storage = self._prepare_storage()
        try:
            self._shared.running = True
            api_port = await self._listen(self._api_app(), self.config.port)
            signed_port = await self._listen(self._files.signed_app(), self.config.signed_port)
            self.base_url = f"http://{self._url_host()}:{api_port}"
            self._files.signed_base_url = f"http://{self._url_host()}:{signed_port}"
            await self._postbacks.open()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Cancelled or not (Ctrl-C, a reader gone), the sandbox stops whole: its servers, its
        # postback session and its temporary storage.
        with anyio.CancelScope(shield=True):
            await self._close()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Sandbox] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; for `TaskGroup.start`, which receives the started sandbox."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    def _api_app(self) -> web.Application:
        exports, jobs, reports = self._exports, self._jobs, self._reports
        return self._router.app(
            [
                (
                    "GET",
                    f"{ROOT}/ReportExport/{{report_id}}",
                    exports.report_export,
                    "ReportExport",
                ),
                (
                    "GET",
                    "/{persona:Advertisers}/{sid}/Programs/{program_id}/ClickExport",
                    exports.click_export,
                    "ClickExport:brand",
                ),
                (
                    "GET",
                    "/{persona:Mediapartners}/{sid}/ClickExport",
                    exports.click_export,
                    "ClickExport:partner",
                ),
                ("GET", f"{ROOT}/Reports", reports.reports, "Reports"),
                ("GET", f"{ROOT}/Reports/{{report_id}}/MetaData", reports.metadata, "MetaData"),
                ("GET", f"{ROOT}/Jobs", jobs.list_jobs, "ListJobs"),
                ("GET", f"{ROOT}/Jobs/{{job_id}}", jobs.get_job, "GetJob"),
                ("GET", f"{ROOT}/Jobs/{{job_id}}/Download", jobs.download, "Download"),
                ("PUT", f"{ROOT}/Jobs/{{job_id}}/Replay", jobs.replay, "Replay"),
                *self._control.routes(),
            ]
        )

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self._postbacks.close()
        await self._shared.stop_tasks()
        storage = self._shared.storage
        if self._own_storage and storage is not None:
            shutil.rmtree(storage, ignore_errors=True)

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
                "choose another storage folder"
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
