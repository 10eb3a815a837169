"""The job ledger: durable memory of every export, so nothing is submitted twice (the guide's
rule 1, docs/guide.md), an interrupted run re-attaches to its jobs, completed results cost no call,
and the daily quota's use survives restarts and is shared by processes and hosts. It also keeps
the chunks `chunk="auto"` chose for each export, so a rerun plans the same chunks.

The ledger remembers; it does not decide. The core decides (fingerprints, the replay guard, the
claim and lease rules of `core.leases`, the quota's arithmetic); the flows ask the ledger what is
known and tell it what happened.

- `records`: what is recorded (`LedgerEntry`, `LedgerEvent`) and how it is encoded;
- `schema`: the tables, once for both databases, and the SQLite file's migrations;
- `sql`: the one interface (`Tx`) the shared code runs its statements through;
- `base`: every call on exports and claims, written once;
- `counters`: the daily quotas and the hourly bucket, a small store of their own that each
  ledger makes over its database (`ledger.counters`), the one the rate limiter is given;
- `sqlite`: the SQLite file (`Ledger`, the default); `postgres`: a PostgreSQL database, for
  several hosts (`PostgresLedger`, needs asyncpg: imported only when asked for);
- `store`: the interface (`LedgerStore`) and `open_ledger`, which picks one by its argument.
"""

from __future__ import annotations

from .records import CLAIM_TIMEOUT, LedgerEntry, LedgerEvent, lease_alive
from .schema import MIGRATIONS, SCHEMA_VERSION
from .sqlite import DEFAULT_LEDGER_PATH, GROUP_LIMIT, Ledger

__all__ = [
    "CLAIM_TIMEOUT",
    "DEFAULT_LEDGER_PATH",
    "GROUP_LIMIT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerEntry",
    "LedgerEvent",
    "lease_alive",
]
