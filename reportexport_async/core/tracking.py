"""How often the tracker refreshes the jobs in flight (pure arithmetic).

One `GET /Jobs?CreatedAfter=...` listing call refreshes every job in flight (a page per
`page_size` jobs), so a tick costs the same for 1 job or 50. The tick is `base` seconds, stretched
when the hourly bucket could not afford that pace until it resets, keeping `reserve` calls for
downloads and submits: the tick adapts to the remaining hourly budget and to the number of jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TickPolicy", "calls_per_tick", "tick_interval"]


@dataclass(frozen=True, slots=True)
class TickPolicy:
    """`base` seconds between refreshes, growing by `growth` for each refresh in a row that saw
    no job finish, up to `cap` (jobs take minutes: a quiet tracker slows down, one that sees jobs
    finishing keeps its pace), and never shorter than the age of the youngest job in flight
    divided by `age_divisor` (up to `cap`): a job that has run for 6 minutes is not expected in
    the next 10 seconds, and looking at it every 10 s would cost a call per chunk or more when
    jobs take 20 minutes. Then stretched if the hourly budget needs it (never above `maximum`).
    The delay this adds to a job's download is at most 1/`age_divisor` of its own age."""

    base: float = 10.0
    minimum: float = 2.0
    maximum: float = 300.0
    growth: float = 1.5
    cap: float = 60.0
    age_divisor: float = 6.0
    page_size: int = 1000
    #: With postbacks on, polling is only the safety net (deliveries may take 15 minutes).
    with_postbacks: float = 600.0

    def __post_init__(self) -> None:
        if not (0 < self.minimum <= self.base <= self.maximum) or self.page_size < 1:
            raise ValueError("tick policy: 0 < minimum <= base <= maximum, page_size >= 1")
        if self.growth < 1 or self.cap < self.base:
            raise ValueError("tick policy: growth >= 1 and cap >= base")
        if not self.age_divisor > 0:
            raise ValueError("tick policy: age_divisor > 0")


def calls_per_tick(jobs: int, page_size: int) -> int:
    if jobs <= 0:
        return 0
    return max(1, math.ceil(jobs / page_size))


def tick_interval(
    jobs: int,
    *,
    remaining: int | None,
    seconds_to_reset: float | None,
    reserve: int = 0,
    policy: TickPolicy | None = None,
    postbacks: bool = False,
    quiet: int = 0,
    youngest_age: float | None = None,
) -> float:
    """Seconds until the next refresh of `jobs` jobs in flight, after `quiet` refreshes in a row
    in which no job finished, the youngest of them submitted `youngest_age` seconds ago."""
    rules = policy or TickPolicy()
    if postbacks:
        base = rules.with_postbacks
    else:
        base = min(rules.cap, rules.base * rules.growth ** min(quiet, 64))
        if youngest_age is not None and youngest_age > 0:
            base = max(base, min(rules.cap, youngest_age / rules.age_divisor))
    cost = calls_per_tick(jobs, rules.page_size)
    if cost == 0 or remaining is None or seconds_to_reset is None:
        return min(max(base, rules.minimum), max(rules.maximum, base))
    budget = remaining - reserve
    if budget < cost:
        return max(rules.minimum, min(max(seconds_to_reset, base), max(rules.maximum, base)))
    affordable = seconds_to_reset * cost / budget
    return max(rules.minimum, min(max(base, affordable), max(rules.maximum, base)))
