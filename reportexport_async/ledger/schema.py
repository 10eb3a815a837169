"""The ledger's schema: each table described once, for both stores, and the SQLite file's history.
Its versions, and what each step adds, are listed in docs/ledger.md.

A SQLite file keeps every version it went through (`MIGRATIONS`, counted by `PRAGMA user_version`):
a file written by an older version is migrated step by step, and a new file gets the current
tables (`TABLES`) at once. A PostgreSQL database goes through its own steps (`PG_MIGRATIONS`, the
first one the SQLite file's schema 5 as a whole) and counts them in `reportexport_schema`. Both
keep times as ISO-8601 UTC text, so one row decoder (`records.entry_of`) serves both.

In the descriptions, `{int}` is a 64-bit integer and `{serial}` an auto-incrementing key, written
in each dialect by `tables` (SQLite's INTEGER is 64 bits; its AUTOINCREMENT never reuses a key).
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_OF",
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "PG_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "TABLES",
    "tables",
]

_EXPORTS = """
    CREATE TABLE exports (
        fingerprint   TEXT PRIMARY KEY,
        canonical     TEXT NOT NULL,
        endpoint      TEXT NOT NULL,
        report_id     TEXT,
        range_start   TEXT,
        range_end     TEXT,
        result_format TEXT NOT NULL,
        job_id        TEXT,
        status        TEXT,
        records       {int},
        created_at    TEXT NOT NULL,
        claimed_by    TEXT,
        claimed_at    TEXT,
        submitted_at  TEXT,
        completed_at  TEXT,
        status_at     TEXT,
        file_path     TEXT,
        file_size     {int},
        file_sha256   TEXT,
        downloaded_at TEXT,
        replays       INTEGER NOT NULL DEFAULT 0,
        last_replay_at TEXT{lease}
    );
    CREATE INDEX exports_job ON exports(job_id);
    CREATE INDEX exports_report ON exports(report_id);
    CREATE TABLE events (
        id          {serial},
        fingerprint TEXT NOT NULL,
        at          TEXT NOT NULL,
        kind        TEXT NOT NULL,
        job_id      TEXT,
        detail      TEXT NOT NULL DEFAULT '{{}}'
    );
    CREATE INDEX events_fingerprint ON events(fingerprint);
    CREATE INDEX events_job ON events(job_id);
"""
_QUOTA_USE = """
    CREATE TABLE {name} (
        account TEXT NOT NULL,
        day     TEXT NOT NULL,
        name    TEXT NOT NULL,
        used    INTEGER NOT NULL,{spent}
        PRIMARY KEY (account, day, name)
    );
"""
_SPENT = "\n        spent   INTEGER NOT NULL DEFAULT 0,"
_QUOTA_ZONE = """
    CREATE TABLE quota_zone (
        account            TEXT PRIMARY KEY,
        utc_offset_minutes INTEGER NOT NULL
    );
"""
_AUTO_CHUNKS = """
    CREATE TABLE auto_chunks (
        account     TEXT NOT NULL,
        export      TEXT NOT NULL,
        chunks      TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, export)
    );
"""
_LEASES = "CREATE INDEX exports_claimed ON exports(claimed_by);"
_HOURLY_BUCKET = """
    CREATE TABLE hourly_bucket (
        account   TEXT PRIMARY KEY,
        lim       INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        resets_at TEXT NOT NULL
    );
"""
_SQLITE = {"int": "INTEGER", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}

#: The tables of the SQLite file's schema 5 (PostgreSQL's first version).
_TABLES_5 = (
    _EXPORTS.replace("{lease}", ",\n        lease_until   TEXT")
    + _LEASES
    + _QUOTA_USE.format(name="quota_use", spent=_SPENT)
    + _QUOTA_ZONE
    + _AUTO_CHUNKS
    + _HOURLY_BUCKET
)
#: Each export's account (`core.fingerprint.account_key`, `records.account_of`) in a column of
#: its own, indexed with the report: a ledger serving thousands of accounts finds one account's
#: rows of a report without reading every other account's (a `LIKE` on `canonical` did).
_ACCOUNT = "ALTER TABLE exports ADD COLUMN account TEXT NOT NULL DEFAULT '';"
_ACCOUNT_INDEX = "CREATE INDEX exports_account ON exports(account, report_id);"
#: The name of the SQL function a SQLite migration fills the account with: the ledger registers
#: `records.account_of` under it, so a migrated row holds what a new row would.
ACCOUNT_OF = "reportexport_account_of"

#: The current tables, in either dialect (`tables`).
TABLES = _TABLES_5 + _ACCOUNT + _ACCOUNT_INDEX


def tables(dialect: dict[str, str]) -> str:
    """`TABLES` in a dialect (`int` and `serial` spelled out)."""
    return TABLES.format(**dialect)


# Each entry moves the SQLite file's schema one version forward; `user_version` says how many
# have run. History: an entry never changes once released.
MIGRATIONS: tuple[str, ...] = (
    _EXPORTS.replace("{lease}", "").format(**_SQLITE)
    + """
    CREATE TABLE quota_use (
        day  TEXT NOT NULL,
        name TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    );
    """,
    # 2: the daily quotas are counted per account (a ledger may serve several accounts).
    _QUOTA_USE.format(name="quota_use_v2", spent="")
    + """
    INSERT INTO quota_use_v2 (account, day, name, used) SELECT '', day, name, used FROM quota_use;
    DROP TABLE quota_use;
    ALTER TABLE quota_use_v2 RENAME TO quota_use
    """,
    # 3: the chunks `chunk="auto"` chose, per account and export (report, filters, format), so
    # a later run over the same days reuses them instead of exporting the days again.
    _AUTO_CHUNKS,
    # 4: a daily quota the server refused is marked spent (its count stays the server's), and the
    # account's quota day (a UTC offset) is learned from the reset of a daily-quota 429.
    "ALTER TABLE quota_use ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;" + _QUOTA_ZONE,
    # 5: a claim is a lease: the worker (`claimed_by`) holds the chunk from its intent to its
    # download while it renews `lease_until`; and the hourly bucket of each account is kept here
    # so that every process and host on the ledger spends one bucket.
    "ALTER TABLE exports ADD COLUMN lease_until TEXT;" + _LEASES + _HOURLY_BUCKET,
    # 6: each export's account in an indexed column, filled from its canonical JSON.
    f"{_ACCOUNT} UPDATE exports SET account = {ACCOUNT_OF}(canonical); {_ACCOUNT_INDEX}",
)
SCHEMA_VERSION = len(MIGRATIONS)

# `records.account_of` in PostgreSQL's terms: origin, account type and SID of the canonical JSON
# ('None' for a missing one, as Python's f-string writes it).
_PG_ACCOUNT_OF = " || '/' || ".join(
    f"COALESCE(canonical::jsonb ->> '{key}', 'None')"
    for key in ("origin", "account_type", "account_sid")
)

#: Each entry moves the PostgreSQL schema one version forward (the first one is the SQLite
#: file's schema 5 as a whole; the second its step 6).
PG_MIGRATIONS: tuple[str, ...] = (
    _TABLES_5.format(int="BIGINT", serial="BIGSERIAL PRIMARY KEY"),
    f"{_ACCOUNT} UPDATE exports SET account = {_PG_ACCOUNT_OF}; {_ACCOUNT_INDEX}",
)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)
