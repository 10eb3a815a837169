"""One retry policy for the session's calls and its downloads (`transport.retrying.Retrier`).

Against the sandbox with injected faults, over loopback, a JSON call and a download of the same
client are retried by the same policy: the same number of attempts, the same pauses, the same
error at the end, the same bounded wait on a 429. The loop's rules (what is retried, the time
budget, the outage, a spent daily quota) are then checked one by one on scripted attempts, with
the real quota account, limiter and outage watch on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportexport_async import (
    ExportRequest,
    JobStatus,
    PollPolicy,
    RateLimiter,
    RateLimitPolicy,
    ReportExportClient,
    RetryPolicy,
)
from reportexport_async.core.personas import persona_for
from reportexport_async.core.requests import Endpoint
from reportexport_async.errors import (
    AccountUnavailable,
    ConnectError,
    DownloadIntegrityError,
    NotFound,
    QuotaExhausted,
    RateLimited,
    ReportExportError,
    ServerError,
    SignedURLRefused,
    TransportError,
)
from reportexport_async.sandbox import Sandbox
from reportexport_async.sandbox.testing import SandboxTime
from reportexport_async.transport.outage import OutageWatch
from reportexport_async.transport.quota_account import QuotaAccount
from reportexport_async.transport.retrying import Retrier
from reportexport_async.transport.server_clock import ServerClock

from .conftest import SANDBOX_START
from .transport_parts import Steps, client_on, manual_sandbox

POLICY = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=4.0, total_budget=30.0)
REPORT = ExportRequest(report_id="mp_action_listing_fast", start="2026-01-01", end="2026-01-03")


@asynccontextmanager
async def retried(**sandbox: Any) -> AsyncIterator[tuple[Sandbox, ReportExportClient, SandboxTime]]:
    async with (
        manual_sandbox(job_duration=(10, 10), rows_per_day=5, **sandbox) as box,
        client_on(box, retry=POLICY, poll=PollPolicy(initial=5, maximum=60)) as (client, clock),
    ):
        yield box, client, clock


async def completed_job(box: Sandbox, client: ReportExportClient) -> str:
    ticket = await client.export(REPORT)
    job = await client.wait(ticket.job_id)
    assert job.status is JobStatus.COMPLETED
    return ticket.job_id


async def test_a_call_and_a_download_fail_after_the_same_attempts_and_pauses(
    tmp_path: Path,
) -> None:
    async with retried() as (box, client, clock):
        job_id = await completed_job(box, client)
        box.configure(faults={"http_5xx": 1.0})
        outcomes: dict[str, tuple[type[BaseException], list[float], int, int]] = {}
        for name, endpoint, operation in (
            ("call", "GetJob", lambda: client.get_job(job_id)),
            ("download", "Download", lambda: client.download(job_id, tmp_path / "r.csv")),
        ):
            clock.slept.clear()
            before = box.stats()["calls"][endpoint]
            retries = client.usage.retries
            with pytest.raises(ServerError) as failed:
                await operation()
            outcomes[name] = (
                type(failed.value),
                list(clock.slept),
                box.stats()["calls"][endpoint] - before,
                client.usage.retries - retries,
            )
    # Three attempts each, two pauses of the same backoff (full jitter at 0.5: 0.5 s, then 1 s).
    assert outcomes["call"] == (ServerError, [0.5, 1.0], 3, 2)
    assert outcomes["download"] == outcomes["call"]
    assert not (tmp_path / "r.csv").exists()
    assert not (tmp_path / "r.csv.part").exists()


class Calming(SandboxTime):
    """The sandbox's time; the first pause also ends the injected faults (a burst of 429 still
    answers its remaining 429s)."""

    async def sleep(self, seconds: float) -> None:
        self.sandbox.configure(faults={})
        await super().sleep(seconds)


async def test_a_call_and_a_download_both_wait_out_a_burst_of_429(tmp_path: Path) -> None:
    """A burst of 429 with a sane Retry-After: waited for by holding the hourly bucket (every
    task of the account waits), in both paths alike."""
    async with retried(burst_length=2, burst_retry_after=7.0) as (box, client, _):
        job_id = await completed_job(box, client)
        calming = Calming(box)
        client.clock.machine = calming  # the account's clock: the limiter's waits included
        seen: list[tuple[int, int, bool]] = []
        for operation in (
            lambda: client.get_job(job_id),
            lambda: client.download(job_id, tmp_path / "r.csv"),
        ):
            box.configure(faults={"burst_429": 1.0})
            limited, retries = box.stats()["rate_limited"], client.usage.retries
            calming.slept.clear()
            await operation()
            waited = sum(calming.slept) >= 7.0
            seen.append(
                (box.stats()["rate_limited"] - limited, client.usage.retries - retries, waited)
            )
    assert seen == [(2, 2, True), (2, 2, True)]
    assert (tmp_path / "r.csv").stat().st_size > 0


async def test_a_cut_download_is_retried_by_the_same_policy(tmp_path: Path) -> None:
    async with retried(faults={"truncate_body": 1.0}) as (box, client, clock):
        job_id = await completed_job(box, client)
        clock.slept.clear()
        before = box.stats()["calls"]["Download"]
        with pytest.raises(TransportError, match="not completed"):  # a body cut short
            await client.download(job_id, tmp_path / "r.csv")
        assert box.stats()["calls"]["Download"] - before == POLICY.max_attempts
        assert clock.slept == [0.5, 1.0]
        assert not (tmp_path / "r.csv").exists()


# -- the loop's rules, on scripted attempts ---------------------------------------------------


def retrier(
    policy: RetryPolicy = POLICY, limits: RateLimitPolicy | None = None
) -> tuple[Retrier, Steps, RateLimiter, list[int]]:
    steps = Steps()
    clock = ServerClock(steps)
    limiter = RateLimiter(limits or RateLimitPolicy(), clock=clock)
    limiter.bind("https://api.example/Mediapartners/IR1")
    counted: list[int] = []
    loop = Retrier(
        policy,
        clock=clock,
        machine=steps,
        quota=QuotaAccount(limiter, clock, persona_for("Mediapartners")),
        outage=OutageWatch(policy, steps),
        random_source=lambda: 0.5,
        on_retry=lambda: counted.append(1),
    )
    return loop, steps, limiter, counted


def script(*outcomes: ReportExportError | str) -> Any:
    """An attempt that fails with each error in turn, then returns the string."""
    pending = list(outcomes)
    made: list[int] = []

    async def attempt() -> str:
        made.append(1)
        outcome = pending.pop(0)
        if isinstance(outcome, ReportExportError):
            raise outcome
        return outcome

    attempt.made = made  # type: ignore[attr-defined]
    return attempt


def server_error() -> ServerError:
    return ServerError(503, method="GET", url="https://api.example/x")


def nothing(error: ReportExportError, attempt: int, delay: float) -> None:
    pass


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (server_error(), True),
        (ConnectError("refused", method="GET", url="https://api.example/x"), True),
        (ConnectError("bad certificate", method="GET", url="https://x", tls=True), False),
        (DownloadIntegrityError("truncated", expected=10, actual=5, job_id="j1"), True),
        (SignedURLRefused(403, method="GET", url="https://files.example/x"), True),
        (NotFound(404, method="GET", url="https://api.example/x"), False),
    ],
    ids=["5xx", "no-connection", "tls", "short-body", "signed-url", "not-found"],
)
async def test_what_is_retried(error: ReportExportError, retried: bool) -> None:
    loop, _, _, _ = retrier()
    attempt = script(error, "done")
    if retried:
        assert await loop.run(attempt, Endpoint.GET_JOB, nothing) == "done"
    else:
        with pytest.raises(type(error)):
            await loop.run(attempt, Endpoint.GET_JOB, nothing)
    assert len(attempt.made) == (2 if retried else 1)


async def test_the_time_budget_bounds_a_call_but_not_a_download() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=8.0, max_backoff=8.0, total_budget=5.0)
    loop, steps, _, _ = retrier(policy)

    def slow(*outcomes: ReportExportError | str) -> Any:
        """Each attempt takes 3 s: after one, a pause of 4 s would pass the budget of 5 s."""
        inner = script(*outcomes)

        async def attempt() -> str:
            steps.at += timedelta(seconds=3)
            return await inner()  # type: ignore[no-any-return]

        attempt.made = inner.made  # type: ignore[attr-defined]
        return attempt

    call = slow(server_error(), "done")
    with pytest.raises(ServerError):
        await loop.run(call, Endpoint.GET_JOB, nothing)
    assert len(call.made) == 1
    download = slow(server_error(), server_error(), "done")
    assert await loop.run(download, Endpoint.DOWNLOAD, nothing, timed=False) == "done"
    assert len(download.made) == 3


async def test_attempts_and_the_log_line_per_retry() -> None:
    loop, steps, _, counted = retrier()
    said: list[tuple[str, int, float]] = []
    with pytest.raises(ServerError):
        await loop.run(
            script(server_error(), server_error(), server_error(), "late"),
            Endpoint.GET_JOB,
            lambda error, attempt, delay: said.append((type(error).__name__, attempt, delay)),
        )
    assert said == [("ServerError", 1, 0.5), ("ServerError", 2, 1.0)]
    assert steps.slept == [0.5, 1.0]
    assert len(counted) == 2
    many = script(*[server_error()] * 4, "done")
    assert await loop.run(many, Endpoint.DOWNLOAD, nothing, max_attempts=5) == "done"


async def test_a_sane_429_holds_the_bucket_for_every_task_without_a_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=4.0)
    loop, steps, limiter, counted = retrier(policy)

    def limited() -> RateLimited:
        return RateLimited(429, method="GET", url="https://api.example/x", retry_after=20.0)

    attempt = script(limited(), limited(), server_error(), "done")
    assert await loop.run(attempt, Endpoint.GET_JOB, nothing) == "done"
    window = limiter.hourly
    assert window is not None
    assert window.remaining == 0  # held: every task of the account waits for the window
    assert window.resets_at == SANDBOX_START + timedelta(seconds=20)
    assert steps.slept == [2.0]  # only the failure's backoff (its attempt number is 3)
    assert len(counted) == 3
    with pytest.raises(RateLimited):  # more such answers than attempts: the caller hears
        await loop.run(script(*[limited() for _ in range(6)], "never"), Endpoint.GET_JOB, nothing)


async def test_a_429_that_spends_the_day_raises_at_once_and_is_remembered() -> None:
    loop, steps, limiter, _ = retrier()
    midnight = datetime.combine(SANDBOX_START.date(), time(), SANDBOX_START.tzinfo)
    until_midnight = (midnight + timedelta(days=1) - SANDBOX_START).total_seconds()
    refused = RateLimited(
        429, method="GET", url="https://api.example/x", retry_after=until_midnight
    )
    attempt = script(refused, "never")
    with pytest.raises(QuotaExhausted) as spent:
        await loop.run(attempt, Endpoint.REPORT_EXPORT, nothing)
    assert spent.value.__cause__ is refused
    assert len(attempt.made) == 1
    assert steps.slept == []
    daily = await limiter.daily("ReportExport")
    assert daily is not None
    assert daily.remaining == 0


async def test_an_outage_stops_the_retries_with_account_unavailable() -> None:
    policy = RetryPolicy(max_attempts=50, total_budget=10_000, outage_limit=60.0)
    loop, steps, _, _ = retrier(policy)

    async def down() -> str:
        loop.outage.unanswered()  # what the session tells its watch
        steps.at += timedelta(seconds=20)
        raise ConnectError("refused", method="GET", url="https://api.example/x")

    with pytest.raises(AccountUnavailable) as stopped:
        await loop.run(down, Endpoint.GET_JOB, nothing)
    assert stopped.value.problem == "outage"
    assert loop.outage.failures_in_a_row >= 5
    assert isinstance(stopped.value.cause, ConnectError)
