"""Claims and leases, decided once for every ledger: who records the intent to submit a chunk,
who follows its job, and when a worker takes over a chunk another one held.

A claim is a lease: the worker that holds a chunk renews `lease_until` while it works, and a
chunk whose lease ran out (its worker died, or lost its database) is free. A free chunk with a job
is followed by the recorded job id, never submitted again; a free chunk without one (its worker
died between its intent and its job id) is submitted again, and the service's de-duplication
returns the same job (docs/api-facts.md §1d).

Pure: the stores read a row, ask here with the time as a parameter, and write what the answer
says. Whether a holder's process still lives is the stores' question (it reads the machine).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["Claim", "Held", "decide_claim", "lease_end", "lease_running", "taken_from"]


class Held(Protocol):
    """What the rules read of a ledger entry."""

    @property
    def claimed_by(self) -> str | None: ...
    @property
    def claimed_at(self) -> datetime | None: ...
    @property
    def lease_until(self) -> datetime | None: ...
    @property
    def job_id(self) -> str | None: ...


class Claim(enum.Enum):
    """What a worker asking for a chunk does."""

    NEW = "new"  # nothing recorded: record the intent, then submit
    HELD = "held"  # another live worker holds it: leave it (watch it)
    FOLLOW = "follow"  # a job is known and the lease is free: lease it, follow the job, no submit
    RESUBMIT = "resubmit"  # an intent without a job, its lease free: take it over and submit


def lease_end(entry: Held, ttl: timedelta) -> datetime | None:
    """When `entry`'s lease runs out: `lease_until`, or `ttl` after a claim recorded before
    leases existed (None: nobody holds it)."""
    if entry.lease_until is not None:
        return entry.lease_until
    return None if entry.claimed_at is None else entry.claimed_at + ttl


def lease_running(entry: Held, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Whether a worker other than `owner` holds `entry` by a lease that has not run out."""
    if entry.claimed_by in (None, owner):
        return False
    until = lease_end(entry, ttl)
    return until is not None and now < until


def decide_claim(entry: Held | None, held_elsewhere: bool) -> Claim:
    """What a claim of `entry` does; `held_elsewhere`: another live worker holds its lease
    (`lease_running`, and its process not known dead)."""
    if entry is None:
        return Claim.NEW
    if held_elsewhere:
        return Claim.HELD
    return Claim.FOLLOW if entry.job_id is not None else Claim.RESUBMIT


def taken_from(entry: Held, owner: str) -> str | None:
    """The worker whose lease `owner` takes over by taking `entry` (None: nobody else's), for
    the history."""
    return None if entry.claimed_by in (None, owner) else entry.claimed_by
