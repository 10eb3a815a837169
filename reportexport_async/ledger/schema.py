"""The ledger's schema: the tables of both stores described once, and the SQLite file's history.

A SQLite file keeps every version it went through (`MIGRATIONS`, counted by `PRAGMA user_version`):
a file written by an older version is migrated step by step. A PostgreSQL database starts from the
current tables (`TABLES`, in its dialect) and counts its own versions in `reportexport_schema`.
Both keep times as ISO-8601 UTC text, so one row decoder (`records.entry_of`) serves both.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "PG_MIGRATIONS", "PG_SCHEMA_VERSION", "SCHEMA_VERSION", "TABLES"]

# Each entry moves the schema one version forward; `user_version` says how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
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
        records       INTEGER,
        created_at    TEXT NOT NULL,
        claimed_by    TEXT,
        claimed_at    TEXT,
        submitted_at  TEXT,
        completed_at  TEXT,
        status_at     TEXT,
        file_path     TEXT,
        file_size     INTEGER,
        file_sha256   TEXT,
        downloaded_at TEXT,
        replays       INTEGER NOT NULL DEFAULT 0,
        last_replay_at TEXT
    );
    CREATE INDEX exports_job ON exports(job_id);
    CREATE INDEX exports_report ON exports(report_id);
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        at          TEXT NOT NULL,
        kind        TEXT NOT NULL,
        job_id      TEXT,
        detail      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_fingerprint ON events(fingerprint);
    CREATE INDEX events_job ON events(job_id);
    CREATE TABLE quota_use (
        day  TEXT NOT NULL,
        name TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    );
    """,
    # 2: the daily quotas are counted per account (a ledger may serve several accounts).
    """
    CREATE TABLE quota_use_v2 (
        account TEXT NOT NULL,
        day     TEXT NOT NULL,
        name    TEXT NOT NULL,
        used    INTEGER NOT NULL,
        PRIMARY KEY (account, day, name)
    );
    INSERT INTO quota_use_v2 (account, day, name, used) SELECT '', day, name, used FROM quota_use;
    DROP TABLE quota_use;
    ALTER TABLE quota_use_v2 RENAME TO quota_use
    """,
    # 3: the chunks `chunk="auto"` chose, per account and export (report, filters, format), so
    # a later run over the same days reuses them instead of exporting the days again.
    """
    CREATE TABLE auto_chunks (
        account     TEXT NOT NULL,
        export      TEXT NOT NULL,
        chunks      TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, export)
    )
    """,
    # 4: a daily quota the server refused is marked spent (its count stays the server's), and the
    # account's quota day (a UTC offset) is learned from the reset of a daily-quota 429.
    """
    ALTER TABLE quota_use ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE quota_zone (
        account            TEXT PRIMARY KEY,
        utc_offset_minutes INTEGER NOT NULL
    )
    """,
    # 5: a claim is a lease: the worker (`claimed_by`) holds the chunk from its intent to its
    # download while it renews `lease_until`; and the hourly bucket of each account is kept here
    # so that every process and host on the ledger spends one bucket.
    """
    ALTER TABLE exports ADD COLUMN lease_until TEXT;
    CREATE INDEX exports_claimed ON exports(claimed_by);
    CREATE TABLE hourly_bucket (
        account   TEXT PRIMARY KEY,
        lim       INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        resets_at TEXT NOT NULL
    )
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: The current tables, in either dialect: `{int}` a 64-bit integer, `{serial}` an
#: auto-incrementing key. (SQLite's INTEGER is 64 bits; its AUTOINCREMENT never reuses a key.)
TABLES = """
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
        last_replay_at TEXT,
        lease_until   TEXT
    );
    CREATE INDEX exports_job ON exports(job_id);
    CREATE INDEX exports_report ON exports(report_id);
    CREATE INDEX exports_claimed ON exports(claimed_by);
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
    CREATE TABLE quota_use (
        account TEXT NOT NULL,
        day     TEXT NOT NULL,
        name    TEXT NOT NULL,
        used    INTEGER NOT NULL,
        spent   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, day, name)
    );
    CREATE TABLE quota_zone (
        account            TEXT PRIMARY KEY,
        utc_offset_minutes INTEGER NOT NULL
    );
    CREATE TABLE auto_chunks (
        account     TEXT NOT NULL,
        export      TEXT NOT NULL,
        chunks      TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, export)
    );
    CREATE TABLE hourly_bucket (
        account   TEXT PRIMARY KEY,
        lim       INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        resets_at TEXT NOT NULL
    )
"""

#: Each entry moves the PostgreSQL schema one version forward (the first one is the SQLite
#: file's schema 5 as a whole).
PG_MIGRATIONS: tuple[str, ...] = (TABLES.format(int="BIGINT", serial="BIGSERIAL PRIMARY KEY"),)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)
