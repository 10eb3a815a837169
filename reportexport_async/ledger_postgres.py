"""Where `PostgresLedger` used to live: it is in `ledger.postgres` now (asyncpg needed)."""

from __future__ import annotations

from .ledger.postgres import OPEN_RETRY_FOR, PG_MIGRATIONS, PG_SCHEMA_VERSION, PostgresLedger

__all__ = ["OPEN_RETRY_FOR", "PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PostgresLedger"]
