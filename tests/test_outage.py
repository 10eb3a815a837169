"""The account's health beside the session (`transport.outage.OutageWatch`): since when every call
has failed, when that is an outage, and which single errors stop a run at once. The rules on a
manual clock, then what a real session tells its watch: the sandbox's 5xx, a host that refuses
connections, and an answer that ends the failing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reportexport_async import ClientConfig, RateLimiter, ReportExportClient, RetryPolicy
from reportexport_async.errors import (
    AccountUnavailable,
    ConnectError,
    Forbidden,
    ReportExportError,
    ServerError,
    TransportError,
    Unauthorized,
)
from reportexport_async.transport.outage import OutageWatch

from .transport_parts import Steps, client_on, closed_port, manual_sandbox

URL = "https://api.example/x"


def failing(watch: OutageWatch, steps: Steps, times: int, every: float) -> None:
    for _ in range(times):
        watch.unanswered()
        steps.at += timedelta(seconds=every)


def test_an_outage_needs_the_limit_and_five_failures_in_a_row() -> None:
    steps = Steps()
    watch = OutageWatch(RetryPolicy(outage_limit=60.0), steps)
    error = ServerError(503, method="GET", url=URL)
    assert watch.failing_for() == 0.0
    assert watch.outage(error) is None
    failing(watch, steps, 2, every=100.0)  # long, but two failures far apart: bad luck
    assert watch.failing_for() == 200.0
    assert watch.outage(error) is None
    failing(watch, steps, 3, every=0.0)
    stop = watch.outage(error)
    assert stop is not None
    assert stop.problem == "outage"
    assert stop.failing_for == 200.0
    assert stop.__cause__ is error
    with pytest.raises(AccountUnavailable):
        watch.check(error)
    watch.answered(404)  # any answer but a 5xx ends the failing
    assert (watch.failing_since, watch.failures_in_a_row) == (None, 0)
    assert watch.outage(error) is None


def test_a_pause_about_to_be_made_counts() -> None:
    steps = Steps()
    watch = OutageWatch(RetryPolicy(outage_limit=60.0), steps)
    error = ServerError(502, method="GET", url=URL)
    watch.answered(502)  # a 5xx is a failure like no answer at all
    failing(watch, steps, 4, every=10.0)
    assert watch.failures_in_a_row == 5
    assert watch.outage(error) is None
    assert watch.outage(error, pause=30.0) is not None
    watch.check(error, pause=10.0)  # 40 + 10 s: not yet


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (Unauthorized(401, method="GET", url=URL), "credentials"),
        (Forbidden(403, method="GET", url=URL), "credentials"),
        (ConnectError("refused", method="GET", url=URL), "unreachable"),
        (ConnectError("bad certificate", method="GET", url=URL, tls=True), "tls"),
        (ServerError(500, method="GET", url=URL), None),
        (TransportError("cut", method="GET", url=URL), None),
    ],
)
def test_which_single_errors_stop_a_run_at_once(
    error: ReportExportError, problem: str | None
) -> None:
    watch = OutageWatch(RetryPolicy(), Steps())
    stop = watch.account_wide(error)
    assert (stop.problem if stop is not None else None) == problem
    if stop is not None:
        assert stop.cause is error
        assert watch.account_wide(stop) is stop  # already said: passed on as it is


async def test_a_session_tells_its_watch_about_every_answer() -> None:
    retry = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=1.0)
    async with manual_sandbox() as box, client_on(box, retry=retry) as (client, _):
        watch = client.session.outage
        box.configure(faults={"http_5xx": 1.0})
        with pytest.raises(ServerError) as failed:
            await client.reports()
        assert watch.failures_in_a_row == 3  # every attempt, retries included
        assert watch.failing_for() == 1.0  # two pauses of 0.5 s, on the sandbox's clock
        assert watch.account_wide(failed.value) is None
        box.configure(faults={})
        await client.reports()
        assert (watch.failing_since, watch.failures_in_a_row) == (None, 0)


async def test_a_host_that_refuses_connections_stops_a_run_at_once() -> None:
    steps = Steps()
    config = ClientConfig(
        account_sid="IR1",
        auth_token="secret-token",
        account_type="Mediapartners",
        base_url=f"http://127.0.0.1:{closed_port()}",
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.5, max_backoff=0.5),
    )
    async with ReportExportClient(
        config, limiter=RateLimiter(clock=steps), clock=steps, random_source=lambda: 0.5
    ) as client:
        with pytest.raises(ConnectError) as refused:
            await client.reports()
        watch = client.session.outage
        assert watch.failures_in_a_row == 2
        stop = watch.account_wide(refused.value)
        assert stop is not None
        assert stop.problem == "unreachable"
        assert "secret-token" not in str(stop)
