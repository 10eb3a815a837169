"""The storage interface of the ledger, and the one place that picks an implementation.

Two implementations keep the same records with the same meaning:

- `sqlite.Ledger` (`reportexport_async.ledger.Ledger`): one SQLite file, the embedded default
  (one machine);
- `postgres.PostgresLedger`: a PostgreSQL database, for several processes and hosts
  (`pip install 'reportexport_async[postgres]'`).

`open_ledger` chooses by what it is given: a `postgresql://` (or `postgres://`) URL is a
PostgreSQL ledger, anything else is the path of a SQLite file. The command line's `--ledger` and
the `IMPACT_LEDGER_URL` environment variable go through it, and so does `Client(ledger=...)`.

Claims are leases: the worker that records the intent to submit a chunk holds it, renewing its
lease while it works (`renew_leases`), until the chunk's file is recorded; a worker that dies
loses its chunks when their leases run out, and another takes them over by the recorded job id
(`take_lease`), never by submitting again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..core.chunking import Chunk
from ..core.models import Job
from ..errors import ConfigurationError
from ..machine.clock import Clock
from .counters import Counters
from .records import LedgerEntry, LedgerEvent, redact_url

__all__ = ["LEDGER_URL_ENV", "LedgerStore", "is_ledger_url", "open_ledger", "redact_url"]

#: The environment variable naming the ledger (a path or a `postgresql://` URL).
LEDGER_URL_ENV = "IMPACT_LEDGER_URL"
_URL_SCHEMES = ("postgresql://", "postgres://")


@runtime_checkable
class LedgerStore(Protocol):
    """What the client, the flows and the orchestrator need from a ledger. Every
    read-modify-write is one transaction; every method is safe from many tasks, processes and
    (for PostgreSQL) hosts at once."""

    @property
    def path(self) -> Path | str:
        """Where it lives, for messages: a path, or a URL without its password."""
        ...

    #: What stamps its records: the client's server clock (`transport.server_clock.ServerClock`)
    #: once a `Client` uses it, so every stamp is on the server's time.
    clock: Clock

    @property
    def owner(self) -> str:
        """This worker's id (host, process, nonce): who holds a claim."""
        ...

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts without renewal."""
        ...

    @property
    def read_only(self) -> bool: ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: object) -> None: ...

    # -- exports and their claims
    async def get(self, fingerprint: str) -> LedgerEntry | None: ...
    async def get_many(self, fingerprints: Sequence[str]) -> dict[str, LedgerEntry]: ...
    async def claim(
        self,
        fingerprint: str,
        canonical: str,
        *,
        endpoint: str,
        report_id: str | None,
        range_start: date | None,
        range_end: date | None,
        result_format: str,
    ) -> tuple[LedgerEntry, bool]: ...
    async def take_lease(self, fingerprint: str) -> tuple[LedgerEntry | None, bool]: ...
    async def renew_leases(self) -> int: ...
    async def release_lease(self, fingerprint: str) -> None: ...
    async def release_leases(self) -> int: ...
    async def release_claim(self, fingerprint: str) -> None: ...
    async def record_submitted(self, fingerprint: str, job_id: str) -> None: ...
    async def forget_job(self, fingerprint: str, job_id: str) -> bool: ...
    async def record_status(self, fingerprint: str, job: Job) -> None: ...
    async def record_statuses(self, seen: Sequence[tuple[str, Job]]) -> None: ...
    async def record_download(
        self, fingerprint: str, job_id: str, path: Path, size: int, sha256: str
    ) -> None: ...
    async def record_replay(
        self, fingerprint: str, old_job_id: str, job: Job, *, rule: str
    ) -> None: ...
    async def record_event(
        self,
        fingerprint: str,
        kind: str,
        job_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...
    async def replays_since(self, fingerprint: str, since: datetime) -> int: ...
    async def entries(
        self, report_id: str | None = None, *, account: str | None = None
    ) -> list[LedgerEntry]: ...
    async def unfinished(self) -> list[LedgerEntry]: ...
    async def find(self, key: str, *, account: str | None = None) -> LedgerEntry | None: ...
    async def history(self, key: str) -> list[LedgerEvent]: ...

    # -- the chunks `chunk="auto"` chose
    async def auto_chunks(self, account: str, export: str) -> list[Chunk]: ...
    async def record_auto_chunks(
        self, account: str, export: str, chunks: Sequence[Chunk], *, expected: Sequence[Chunk]
    ) -> bool: ...

    # -- the limits: a store of their own over the same database (the `QuotaStore` of
    # `transport/ratelimit.py`, and the shared hourly bucket), given to the rate limiter instead of
    # the ledger, so that only the driver writes the records of exports
    @property
    def counters(self) -> Counters: ...


def is_ledger_url(spec: object) -> bool:
    """Whether `spec` names a PostgreSQL ledger (a `postgresql://` or `postgres://` URL)."""
    return isinstance(spec, str) and spec.lower().startswith(_URL_SCHEMES)


def open_ledger(
    spec: str | Path,
    *,
    clock: Clock | None = None,
    read_only: bool = False,
    lease: timedelta | None = None,
) -> LedgerStore:
    """The ledger `spec` names (not opened yet: use `async with`)."""
    extra: dict[str, Any] = {} if lease is None else {"lease": lease}
    if is_ledger_url(spec):
        try:
            from .postgres import PostgresLedger
        except ImportError as exc:  # the driver is an extra
            raise ConfigurationError(
                "ledger",
                "a PostgreSQL ledger needs the asyncpg driver: "
                "pip install 'reportexport_async[postgres]'",
            ) from exc
        return PostgresLedger(str(spec), clock=clock, read_only=read_only, **extra)
    from .sqlite import Ledger

    return Ledger(spec, clock=clock, read_only=read_only, **extra)
