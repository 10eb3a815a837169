"""Shared fixtures. Sandbox tests talk to the sandbox over real loopback HTTP with a plain aiohttp
client (never the project's client), so a misunderstanding shared by both sides cannot hide."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reportexport_async import Client, ClientConfig, RateLimitPolicy, ReportExportClient
from reportexport_async.ledger import Ledger
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.clock import ScaledClock as SandboxScaledClock
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .postgres_server import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole test session (`tests/postgres_server.py` says
    where it comes from); tests make their own databases in it."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _user_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The command line keeps its default ledger and caches in the user's data and cache
    folders: each test gets its own, never the machine's (subprocesses inherit them)."""
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))


# A fixed sandbox start: Monday 2026-06-15, noon UTC.
SANDBOX_START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def simulated_account(
    tmp_path: Path, *, daily_limit: int | None = 100, **sandbox_options: Any
) -> AsyncIterator[tuple[Sandbox, ReportExportClient, Ledger]]:
    """A sandbox on a manual clock (a `Mediapartners` account) and a `Client` of it with its
    ledger in `tmp_path`, on the sandbox's time: simulated hours cost milliseconds, the same way
    every time (no jitter). Yields the sandbox, the client's single calls (`client.api`) and
    its ledger, for the orchestrator's engine (`jobs.orchestrator.backfill`)."""
    sandbox_options.setdefault("job_duration", (30, 300))
    sandbox_options.setdefault("rows_per_day", 4)
    async with Sandbox(clock=ManualClock(SANDBOX_START), **sandbox_options) as sandbox:
        policy = RateLimitPolicy(daily_report_export=daily_limit)
        async with Client.for_sandbox(
            sandbox, ledger=tmp_path / "ledger.sqlite", rate_limit=policy
        ) as client:
            yield sandbox, client.api, client.ledger


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def loopback_config(port: int) -> ClientConfig:
    """A client's settings for a bare test server on loopback `port` (any SID and token)."""
    return ClientConfig(
        account_sid="S", auth_token="T", account_type="Mediapartners",
        base_url=f"http://127.0.0.1:{port}",
    )  # fmt: skip


def external_account(
    factory: Callable[..., SandboxThread], monkeypatch: pytest.MonkeyPatch
) -> SandboxThread:
    """An external sandbox (`impact_sandbox_factory`) whose credentials are in the environment,
    for the command line (`behind`: its jobs finish in milliseconds)."""
    sandbox = behind(factory, job_duration=(1, 2))
    for name, value in sandbox_env(sandbox).items():
        monkeypatch.setenv(name, value)
    return sandbox


def behind(factory: Callable[..., SandboxThread], **settings: Any) -> SandboxThread:
    """A sandbox whose clock runs 3 hours behind the wall clock (the client judges time on the
    server's clock all the same) and 100 times faster."""
    clock = SandboxScaledClock(start=datetime.now(UTC) - timedelta(hours=3), scale=100)
    return factory(clock=clock, rows_per_day=5, **settings)


def sandbox_env(sandbox: SandboxThread) -> dict[str, str]:
    """The environment that points the command line at `sandbox`'s account."""
    return {
        "IMPACT_ACCOUNT_SID": sandbox.account_sid,
        "IMPACT_AUTH_TOKEN": sandbox.auth_token,
        "IMPACT_ACCOUNT_TYPE": "Mediapartners",
        "IMPACT_BASE_URL": sandbox.base_url,
    }


@asynccontextmanager
async def loopback_server(app: web.Application) -> AsyncIterator[int]:
    """`app` served on a free loopback port (yielded) until the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Api:
    """A few lines of plain aiohttp around one sandbox account root."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession, persona: str) -> None:
        self.sandbox = sandbox
        self.session = session
        self.persona = persona
        self.root = sandbox.account_url(persona)  # type: ignore[arg-type]
        self.auth = basic(sandbox.account_sid, sandbox.auth_token)

    async def call(
        self,
        path: str,
        params: Any = None,
        *,
        method: str = "GET",
        auth: dict[str, str] | None = None,
        absolute: bool = False,
    ) -> Answer:
        url = (
            path
            if absolute
            else (self.sandbox.base_url + path if path.startswith("/") else f"{self.root}/{path}")
        )
        async with self.session.request(
            method,
            url,
            params=params,
            headers=auth or self.auth,
            allow_redirects=False,
        ) as response:
            text = await response.text()
            return Answer(response.status, dict(response.headers), text)

    async def export(self, report: str, **params: str) -> Answer:
        return await self.call(f"ReportExport/{report}", params)

    async def job(self, job_id: str) -> dict[str, Any]:
        answer = await self.call(f"Jobs/{job_id}")
        assert answer.status == 200, answer.text
        return dict(answer.json)


def job_id_of(answer: Answer) -> str:
    assert answer.status == 200, answer.text
    body = answer.json
    assert body["Status"] == "QUEUED", body
    return str(body["QueuedUri"]).rsplit("/", 1)[1]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox on a manual clock: jobs take 10 sandbox seconds, 5 rows a day."""
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), rows_per_day=5
    ) as sb:
        yield sb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def brand(sandbox: Sandbox, http: aiohttp.ClientSession) -> Api:
    return Api(sandbox, http, "Advertisers")


@pytest.fixture
def partner(sandbox: Sandbox, http: aiohttp.ClientSession) -> Api:
    return Api(sandbox, http, "Mediapartners")


@pytest.fixture
def agency(sandbox: Sandbox, http: aiohttp.ClientSession) -> Api:
    return Api(sandbox, http, "Agencies")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many documentation examples ran (`test_docs_examples.py`; each page's test records
    its count, which reaches this process from pytest-xdist's workers too)."""
    ran = pages = 0
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "docs_blocks_run" and report.when == "call":
                ran += int(value)
                pages += 1
    failed = sum(
        1
        for report in terminalreporter.stats.get("failed", [])
        if "test_the_pages_examples_run_as_written" in report.nodeid
    )
    if pages or failed:
        terminalreporter.write_line(
            f"docs examples: {ran} blocks run on {pages} pages, 0 skipped"
            + (f", {failed} pages failed" if failed else "")
        )
