"""The ledger's records, as every layer reads them (`LedgerEntry`, `LedgerEvent`), how both
stores encode them (times as ISO-8601 UTC text, which sorts as time; one row decoder for both),
and who holds a claim (a worker's id, and whether its process still lives)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.leases import lease_running
from ..core.models import JobStatus

__all__ = [
    "CLAIM_TIMEOUT",
    "LedgerEntry",
    "LedgerEvent",
    "account_of",
    "account_pattern",
    "entry_of",
    "event_of",
    "lease_alive",
    "new_owner",
    "owner_alive",
    "redact_url",
    "stamp",
]

#: How long a claim (a lease) lasts without renewal. A running worker renews its leases every
#: third of it; a worker that dies (SIGKILL, a lost host) loses them when they run out, and
#: another takes its chunks over (`core.leases`).
CLAIM_TIMEOUT = timedelta(seconds=120)

Row = Mapping[str, Any]  # a sqlite3.Row or an asyncpg Record: both read by column name


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one export (one fingerprint)."""

    fingerprint: str
    canonical: str
    endpoint: str
    report_id: str | None
    range_start: date | None
    range_end: date | None
    result_format: str
    job_id: str | None
    status: JobStatus | None
    records: int | None
    created_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    submitted_at: datetime | None
    completed_at: datetime | None
    status_at: datetime | None
    file_path: Path | None
    file_size: int | None
    file_sha256: str | None
    downloaded_at: datetime | None
    replays: int
    last_replay_at: datetime | None
    #: Until when `claimed_by` holds the chunk (None: no lease, or a ledger before schema 5).
    lease_until: datetime | None = None

    @property
    def filters(self) -> dict[str, Any]:
        return dict(json.loads(self.canonical).get("filters", []))

    @property
    def account(self) -> str:
        """The entry's account as `core.fingerprint.account_key` names it (origin, type, SID):
        a ledger shared by several accounts keeps them apart by it."""
        return account_of(self.canonical)


@dataclass(frozen=True)
class LedgerEvent:
    fingerprint: str
    at: datetime
    kind: str  # intent, submitted, status, download, replay, replay_refused, lease, error, ...
    job_id: str | None
    detail: dict[str, Any]


def stamp(value: datetime | None) -> str | None:
    """A time as stored: ISO-8601 text in UTC."""
    return None if value is None else value.astimezone(UTC).isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


_EPOCH = datetime.min.replace(tzinfo=UTC)


def entry_of(row: Row) -> LedgerEntry:
    """An `exports` row as an entry (a file before schema 5 has no `lease_until`)."""
    status = row["status"]
    return LedgerEntry(
        fingerprint=row["fingerprint"],
        canonical=row["canonical"],
        endpoint=row["endpoint"],
        report_id=row["report_id"],
        range_start=_day(row["range_start"]),
        range_end=_day(row["range_end"]),
        result_format=row["result_format"],
        job_id=row["job_id"],
        status=None if status is None else JobStatus.parse(status),
        records=row["records"],
        created_at=_time(row["created_at"]) or _EPOCH,
        claimed_by=row["claimed_by"],
        claimed_at=_time(row["claimed_at"]),
        submitted_at=_time(row["submitted_at"]),
        completed_at=_time(row["completed_at"]),
        status_at=_time(row["status_at"]),
        file_path=None if row["file_path"] is None else Path(row["file_path"]),
        file_size=row["file_size"],
        file_sha256=row["file_sha256"],
        downloaded_at=_time(row["downloaded_at"]),
        replays=row["replays"],
        last_replay_at=_time(row["last_replay_at"]),
        # `in` on a sqlite3.Row looks at its values: the names are its keys().
        lease_until=_time(row["lease_until"]) if "lease_until" in row.keys() else None,  # noqa: SIM118
    )


def event_of(row: Row) -> LedgerEvent:
    return LedgerEvent(
        fingerprint=row["fingerprint"],
        at=_time(row["at"]) or _EPOCH,
        kind=row["kind"],
        job_id=row["job_id"],
        detail=json.loads(row["detail"]),
    )


def account_of(canonical: str) -> str:
    """The account (`core.fingerprint.account_key`) of an export's canonical JSON: what the
    ledger's `account` column holds (all three 'None' for a text that is no JSON object)."""
    try:
        body = json.loads(canonical)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    return f"{body.get('origin')}/{body.get('account_type')}/{body.get('account_sid')}"


def account_pattern(account: str) -> str:
    """A LIKE pattern (backslash escapes) for the canonical JSON of `account`'s entries: the
    canonical form sorts its keys, so it starts with the SID and the account type
    (`core.fingerprint`)."""
    origin, kind, sid = account.rsplit("/", 2)

    def literal(value: str) -> str:
        text = json.dumps(value)
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    head = f'{{"account_sid":{literal(sid)},"account_type":{literal(kind)},'
    return f'{head}%"origin":{literal(origin)},%'


def new_owner() -> str:
    """A worker's id, unique per ledger object: host, process and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool:
    """False when the claim's owner is a process of this machine that no longer exists (it was
    killed between its intent and its job id); True when it lives or cannot be checked."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def lease_alive(entry: LedgerEntry, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Whether another worker holds `entry`'s lease right now: it has not run out
    (`core.leases.lease_running`), and its holder is not a process of this machine that no
    longer exists (the fast path: no waiting for the lease to run out after a local crash)."""
    return lease_running(entry, owner, now, ttl) and owner_alive(entry.claimed_by)


def redact_url(url: str) -> str:
    """`url` without its password, for messages and reprs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
