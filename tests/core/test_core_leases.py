"""The claim and lease rules (`core.leases`), as a table: pure, no ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from reportexport_async.core.leases import (
    Claim,
    decide_claim,
    lease_end,
    lease_running,
    taken_from,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
TTL = timedelta(seconds=120)


@dataclass(frozen=True)
class Entry:
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    job_id: str | None = None


@pytest.mark.parametrize(
    ("entry", "running"),
    [
        (Entry(), False),  # nobody holds it
        (Entry("me", NOW, NOW + TTL), False),  # mine
        (Entry("other", NOW, NOW + TTL), True),
        (Entry("other", NOW - TTL, NOW), False),  # ran out this instant
        (Entry("other", NOW - TTL, NOW + timedelta(microseconds=1)), True),
        (Entry("other", NOW - TTL + timedelta(seconds=1)), True),  # before leases: claimed_at + ttl
        (Entry("other", NOW - TTL), False),
        (Entry("other"), False),  # a holder with no time at all: free
    ],
)
def test_a_lease_runs_until_its_end_for_everyone_but_its_holder(
    entry: Entry, running: bool
) -> None:
    assert lease_running(entry, "me", NOW, TTL) is running


def test_the_end_of_a_lease() -> None:
    assert lease_end(Entry("o", NOW, NOW + TTL * 3), TTL) == NOW + TTL * 3
    assert lease_end(Entry("o", NOW), TTL) == NOW + TTL
    assert lease_end(Entry(), TTL) is None


@pytest.mark.parametrize(
    ("entry", "held", "decision"),
    [
        (None, False, Claim.NEW),
        (Entry("other", NOW, NOW + TTL), True, Claim.HELD),
        (Entry("other", NOW, NOW + TTL, "job-1"), True, Claim.HELD),
        (Entry("other", NOW, NOW, "job-1"), False, Claim.FOLLOW),  # never a second submit
        (Entry(None, None, None, "job-1"), False, Claim.FOLLOW),
        (Entry("other", NOW, NOW), False, Claim.RESUBMIT),  # an intent without a job
        (Entry("me", NOW, NOW + TTL), False, Claim.RESUBMIT),
    ],
)
def test_what_a_claim_does(entry: Entry | None, held: bool, decision: Claim) -> None:
    assert decide_claim(entry, held) is decision


def test_a_take_over_names_the_worker_it_was_taken_from() -> None:
    assert taken_from(Entry("other"), "me") == "other"
    assert taken_from(Entry("me"), "me") is None
    assert taken_from(Entry(), "me") is None
