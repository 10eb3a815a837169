"""Narrow header cases through the real session: `Retry-After` as seconds and as an HTTP date,
reset headers as seconds and as an epoch, for the brand/agency and partner header dialects
(docs/api-facts.md §5).

A scripted loopback server answers instead of the sandbox, so each header can be set exactly.
(aioresponses, the usual tool for such cases, cannot mock aiohttp 3.14: its fake responses miss
the `stream_writer` argument that `ClientResponse` now requires.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from reportexport_async import ClientConfig, RateLimiter, ReportExportClient, RetryPolicy
from reportexport_async.errors import ConfigurationError
from reportexport_async.transport.session import Session

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
JOB = {"Id": "j1", "Status": "RUNNING", "RecordsProcessed": "250", "Replayable": "true"}


class FakeClock:
    """Time that moves only when someone sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.current = NOW
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=max(0.0, seconds))


@dataclass
class Scripted:
    """A loopback server that answers each request with the next scripted answer."""

    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def add(self, status: int, headers: dict[str, str] | None = None, body: Any = None) -> None:
        self.answers.append((status, headers or {}, body))

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, dict(request.headers)))
        status, headers, body = self.answers.pop(0)
        # The script's clock is NOW: its absolute times (an HTTP-date `Retry-After`, an epoch
        # reset) are read on the server's clock, which its `Date` tells.
        headers = {"Date": format_datetime(NOW, usegmt=True), **headers}
        if isinstance(body, bytes):
            return web.Response(status=status, headers=headers, body=body)
        text = "" if body is None else json.dumps(body)
        return web.Response(
            status=status, headers=headers, text=text, content_type="application/json"
        )


async def start(server: Scripted) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def api() -> AsyncIterator[Scripted]:
    server = Scripted()
    runner = await start(server)
    yield server
    await runner.cleanup()


def client_for(api: Scripted, account_type: str, clock: FakeClock) -> ReportExportClient:
    config = ClientConfig(
        account_sid="IRtest",
        auth_token="s3cret",
        account_type=account_type,
        base_url=api.url,
        retry=RetryPolicy(total_budget=10),
    )
    return ReportExportClient(config, limiter=RateLimiter(clock=clock), clock=clock)


@pytest.mark.parametrize(
    ("account_type", "headers", "wait"),
    [
        ("Mediapartners", {"Retry-After": "7"}, 7),
        ("Mediapartners", {"Retry-After": format_datetime(NOW + timedelta(seconds=30), True)}, 30),
        ("Advertisers", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "120"}, 120),
        (
            "Agencies",
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 90)},
            90,
        ),
        ("Mediapartners", {"X-RateLimit-Remaining-hour": "0", "RateLimit-Reset": "45"}, 45),
    ],
    ids=["retry-after-seconds", "retry-after-date", "reset-seconds", "reset-epoch", "partner"],
)
async def test_429_waits_as_long_as_the_headers_say(
    api: Scripted, account_type: str, headers: dict[str, str], wait: float
) -> None:
    clock = FakeClock()
    api.add(429, headers, {"Status": "ERROR", "Message": "slow down"})
    api.add(200, {}, JOB)
    async with client_for(api, account_type, clock) as client:
        job = await client.get_job("j1")
        usage = client.usage
    assert job.records_processed == 250
    assert job.replayable is True
    assert clock.slept == [pytest.approx(wait, abs=1)]
    assert usage.rate_limited == 1
    assert usage.calls["GetJob"] == 2


async def test_insane_hint_is_ignored_for_backoff(api: Scripted) -> None:
    clock = FakeClock()
    api.add(429, {"Retry-After": "garbage"})
    api.add(200, {}, JOB)
    async with client_for(api, "Mediapartners", clock) as client:
        await client.get_job("j1")
    # No usable hint: exponential backoff with jitter, within the first step's cap.
    assert len(clock.slept) == 1
    assert 0 <= clock.slept[0] <= RetryPolicy().initial_backoff


async def test_remaining_header_makes_the_next_call_wait(api: Scripted) -> None:
    clock = FakeClock()
    spent = {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600"}
    api.add(200, spent, JOB)
    api.add(200, {}, JOB)
    async with client_for(api, "Advertisers", clock) as client:
        await client.get_job("j1")
        assert clock.slept == []
        await client.get_job("j1")
    assert clock.slept == [pytest.approx(600, abs=1)]


async def test_authorization_goes_to_the_api_origin_only(api: Scripted, tmp_path: Path) -> None:
    storage = Scripted()
    runner = await start(storage)
    try:
        clock = FakeClock()
        api.add(302, {"Location": f"{storage.url}/bucket/j1.csv?X-Sig=abc"})
        storage.add(200, {"Content-Length": "8"}, b"a,b\n1,2\n")
        async with client_for(api, "Agencies", clock) as client:
            result = await client.download("j1", tmp_path / "r.csv")
    finally:
        await runner.cleanup()
    assert result.path.read_bytes() == b"a,b\n1,2\n"
    assert api.seen[0][0] == "/Agencies/IRtest/Jobs/j1/Download"
    assert api.seen[0][1]["Authorization"].startswith("Basic ")
    assert storage.seen[0][0] == "/bucket/j1.csv"
    assert "Authorization" not in storage.seen[0][1]


def forged_config(base_url: str) -> ClientConfig:
    """A config that skipped validation (`model_construct`), as a careless caller could make."""
    good = ClientConfig(account_sid="IRtest", auth_token="s3cret-forged", account_type="partner")
    return ClientConfig.model_construct(**{**dict(good), "base_url": base_url})


@pytest.mark.parametrize("base_url", ["http://192.0.2.2:18765", "http://example.com"])
def test_a_session_refuses_plain_http_to_another_host_even_from_a_forged_config(
    base_url: str,
) -> None:
    forged = forged_config(base_url)
    assert forged.base_url == base_url  # the config's own check was skipped
    for make in (Session, ReportExportClient):
        with pytest.raises(ConfigurationError) as info:
            make(forged)
        assert info.value.setting == "base_url"
        assert "plain http://" in str(info.value)
        assert "s3cret-forged" not in str(info.value)


async def test_authorization_is_never_attached_to_plain_http_off_loopback(api: Scripted) -> None:
    """Defense in depth behind the check at construction: were the base URL swapped afterwards,
    the header is still left off any plain-http URL that is not loopback."""
    clock = FakeClock()
    session = client_for(api, "Mediapartners", clock).session
    assert "Authorization" in session._headers(f"{api.url}/Mediapartners/IRtest/Jobs")
    session.config = forged_config("http://192.0.2.2:18765")
    headers = session._headers("http://192.0.2.2:18765/Mediapartners/IRtest/Jobs")
    assert "Authorization" not in headers
    assert "Authorization" not in session._headers("/Mediapartners/IRtest/Jobs")
    session.config = forged_config("https://192.0.2.2:18765")
    assert "Authorization" in session._headers("https://192.0.2.2:18765/Mediapartners/IRtest/Jobs")
