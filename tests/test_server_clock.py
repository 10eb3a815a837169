"""`ServerClock`: the server's time from the `Date` of its answers, the machine's clock measuring
only the time since the last one; `fresh_now` asks the server once when no answer is recent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import pytest

from reportexport_async.transport.server_clock import FRESH_SECONDS, ServerClock

MACHINE = datetime(2026, 6, 15, 12, 0, 0, 400_000, tzinfo=UTC)


class Machine:
    """A machine clock that moves only when told (or slept on)."""

    def __init__(self, now: datetime = MACHINE) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def dated(moment: datetime) -> dict[str, str]:
    return {"Date": format_datetime(moment.astimezone(UTC), usegmt=True)}


def test_before_any_answer_it_is_the_machines_clock_and_not_observed() -> None:
    clock = ServerClock(Machine())
    assert clock.now() == MACHINE
    assert not clock.observed
    assert clock.age() is None
    clock.observe({})  # an answer without a Date teaches nothing
    assert not clock.observed


@pytest.mark.parametrize("skew", [0.0, 3 * 3600.0, -3 * 3600.0, 86_400.0])
def test_the_server_time_follows_its_answers_whatever_the_machine_says(skew: float) -> None:
    machine = Machine()
    clock = ServerClock(machine)
    server = MACHINE + timedelta(seconds=skew)
    clock.observe(dated(server))
    assert abs((clock.now() - server).total_seconds()) < 1
    machine.current += timedelta(minutes=10)  # the machine only measures the time since
    assert abs((clock.now() - server - timedelta(minutes=10)).total_seconds()) < 1
    assert clock.age() == 600


def test_an_answer_that_agrees_leaves_the_offset_and_one_that_does_not_moves_it() -> None:
    machine = Machine()
    clock = ServerClock(machine)
    clock.observe(dated(MACHINE))  # the same second: the machine's clock agrees, offset 0
    assert clock.offset == 0
    machine.current += timedelta(seconds=5)
    clock.observe(dated(machine.current))  # rounded down to its second: still agrees
    assert clock.offset == 0
    clock.observe(dated(machine.current + timedelta(days=1)))  # the server moved a day
    assert clock.offset == pytest.approx(86_400, abs=1)


async def test_fresh_now_asks_once_when_no_answer_is_recent() -> None:
    machine = Machine()
    clock = ServerClock(machine)
    server = MACHINE + timedelta(hours=3)
    asked = 0

    async def probe() -> None:
        nonlocal asked
        asked += 1
        await anyio.sleep(0.01)  # an answer takes a while: the other tasks wait for it
        clock.observe(dated(server + (machine.current - MACHINE)))

    clock.set_probe(probe)
    seen: list[datetime] = []

    async def one() -> None:
        seen.append(await clock.fresh_now())

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(one)
    assert asked == 1
    assert all(abs((moment - server).total_seconds()) < 1 for moment in seen)
    await clock.fresh_now()  # recent enough: no call
    assert asked == 1
    machine.current += timedelta(seconds=FRESH_SECONDS + 1)
    await clock.fresh_now()
    assert asked == 2
