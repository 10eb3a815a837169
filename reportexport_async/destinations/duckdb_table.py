"""The DuckDB destination: one table per report (`<schema>.<report>`), typed columns, and a
column `_chunk` saying which chunk each row came from. Side tables in `main`:

    _reportexport_chunks   (schema, table, chunk, fingerprint, sha256, rows, loaded_at)
    _reportexport_columns  (schema, table, column, type)   the types decided so far

A chunk is loaded in two steps: its values are judged (`types.Schema.merge`, batch by batch, with
bounded memory), then in ONE transaction its table is made or widened, its earlier rows deleted
by chunk key, its new rows inserted (DuckDB reads the CSV itself, with the decided column types)
and its record written. A process killed before the commit leaves the chunk as it was; the
record then differs from the files and the next run loads the chunk again.

Memory is bounded, whatever the chunk's size: the connection runs with `SETTINGS` (DuckDB's
`memory_limit`, `MEMORY_LIMIT`; two threads; insertion order not preserved, so an insert streams
instead of holding rows back to keep their order) and spills what does not fit to
`<database>.tmp/` beside the file. DuckDB's own defaults (80% of the machine's memory, one
thread per core) let a 1 GB load grow the process by hundreds of MB.

`duckdb` is imported here only, when a `duckdb://` destination is opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb

from ..errors import ConfigurationError, LoadError
from .typed import LoadChunk, Loaded, judge_file
from .types import Schema

__all__ = ["MEMORY_LIMIT", "PAUSE_ENV", "SETTINGS", "DuckDBDestination"]

#: DuckDB's buffer manager stays under this (its `memory_limit`); what a load needs beyond it
#: spills to `<database>.tmp/`. The process grows by about this plus one batch of the values'
#: judging (`rows.BATCH` rows), whatever the chunk's size.
MEMORY_LIMIT = "128MB"
#: The connection's settings (`temp_directory` is added: `<database>.tmp` beside the file).
SETTINGS: Mapping[str, str | int | bool] = {
    "memory_limit": MEMORY_LIMIT,
    # Each thread holds its own buffers while reading the CSV; two keep a load streaming.
    "threads": 2,
    # The rows of a chunk have no order to keep (`_chunk` says where each came from).
    "preserve_insertion_order": False,
}

#: Tests only: `<n>:<marker file>` makes the n-th load of the process write the marker and wait
#: between its insert and its commit (a test kills the process there).
PAUSE_ENV = "REPORTEXPORT_TEST_LOAD_PAUSE"
_loads = 0

_SETUP = """
CREATE TABLE IF NOT EXISTS main._reportexport_chunks (
    "schema" VARCHAR, "table" VARCHAR, chunk VARCHAR, fingerprint VARCHAR, sha256 VARCHAR,
    "rows" BIGINT, loaded_at TIMESTAMPTZ, PRIMARY KEY ("schema", "table", chunk));
CREATE TABLE IF NOT EXISTS main._reportexport_columns (
    "schema" VARCHAR, "table" VARCHAR, "column" VARCHAR, "type" VARCHAR, position INTEGER,
    PRIMARY KEY ("schema", "table", "column"));
"""


def quote(name: str) -> str:
    """An SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """An SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class DuckDBDestination:
    """One DuckDB file (opened on first use, one connection, closed with `close`)."""

    def __init__(
        self, path: Path, url: str, *, settings: Mapping[str, str | int | bool] = SETTINGS
    ) -> None:
        self.path = path
        self.url = url
        #: `SETTINGS`; the benchmark passes `{}` to measure DuckDB's own defaults beside them.
        self.settings: dict[str, str | bool | int | float | list[str]] = dict(settings)
        if settings:
            self.settings.setdefault("temp_directory", str(path.with_name(path.name + ".tmp")))
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._held: dict[tuple[str, str], dict[str, str]] = {}
        #: The committed schema of each table (this process is the file's one writer).
        self._schemas: dict[tuple[str, str], Schema] = {}

    def check(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()
        except (OSError, duckdb.Error) as exc:
            raise ConfigurationError("into", f"{self.url} cannot be opened: {exc}") from None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = duckdb.connect(str(self.path), config=self.settings)
            connection.execute(_SETUP)
            self._connection = connection
        return self._connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._held.clear()
        self._schemas.clear()
        if connection is not None:
            connection.close()

    def loaded(self, schema: str, table: str) -> Mapping[str, str]:
        held = self._held.get((schema, table))
        if held is None:
            rows = (
                self._connect()
                .execute(
                    'SELECT chunk, sha256 FROM main._reportexport_chunks WHERE "schema" = ? '
                    'AND "table" = ?',
                    [schema, table],
                )
                .fetchall()
            )
            held = self._held[(schema, table)] = {chunk: sha for chunk, sha in rows}
        return held

    def _schema(self, schema: str, table: str) -> Schema:
        found = self._schemas.get((schema, table))
        if found is None:
            rows = (
                self._connect()
                .execute(
                    'SELECT "column", "type" FROM main._reportexport_columns '
                    'WHERE "schema" = ? AND "table" = ? ORDER BY position',
                    [schema, table],
                )
                .fetchall()
            )
            found = self._schemas[(schema, table)] = Schema.of(dict(rows))
        return found

    def load(self, chunk: LoadChunk) -> Loaded:
        connection = self._connect()
        where = f"{chunk.schema}.{chunk.table}"
        before = self._schema(chunk.schema, chunk.table)
        copy = None
        if chunk.format.upper() != "CSV":
            handle, name = tempfile.mkstemp(suffix=".csv", prefix=".load-", dir=self.path.parent)
            os.close(handle)
            copy = Path(name)
        try:
            columns, schema, count = judge_file(chunk, before, self.url, copy)
            self._replace(connection, chunk, copy or chunk.saved.path, columns, before, schema)
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
        self._held.setdefault((chunk.schema, chunk.table), {})[chunk.key] = chunk.saved.sha256
        self._schemas[(chunk.schema, chunk.table)] = Schema.of(schema.record())
        return Loaded(self.url, where, chunk.report, chunk.key, count)

    def _replace(
        self,
        connection: duckdb.DuckDBPyConnection,
        chunk: LoadChunk,
        source: Path,
        columns: list[str],
        before: Schema,
        schema: Schema,
    ) -> None:
        table = f"{quote(chunk.schema)}.{quote(chunk.table)}"
        connection.execute("BEGIN TRANSACTION")
        try:
            if not before.columns:
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(chunk.schema)}")
                body = ", ".join(f"{quote(n)} {k.sql}" for n, k in schema.columns.items())
                connection.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body}, _chunk VARCHAR)")
            else:
                for name in schema.changed(before):
                    kind = schema.columns[name].sql
                    if name in before.columns:
                        connection.execute(f"ALTER TABLE {table} ALTER {quote(name)} TYPE {kind}")
                    else:
                        connection.execute(f"ALTER TABLE {table} ADD COLUMN {quote(name)} {kind}")
            connection.execute(f"DELETE FROM {table} WHERE _chunk = ?", [chunk.key])
            rows = self._insert(connection, table, chunk, source, columns, schema)
            self._record(connection, chunk, rows, schema if schema.changed(before) else None)
            _pause_for_tests()
            connection.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):
                connection.execute("ROLLBACK")
            if isinstance(exc, duckdb.Error):
                problem = str(exc).splitlines()[0]
                raise LoadError(self.url, chunk.report, chunk.key, problem) from exc
            raise

    def _insert(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        chunk: LoadChunk,
        source: Path,
        columns: list[str],
        schema: Schema,
    ) -> int:
        """The chunk's rows inserted; how many."""
        if not columns:
            return 0
        types = ", ".join(f"{literal(n)}: {literal(schema.columns[n].sql)}" for n in columns)
        names = ", ".join(quote(n) for n in columns)
        inserted = connection.execute(
            f"INSERT INTO {table} ({names}, _chunk) SELECT {names}, ? FROM read_csv("
            f"{literal(str(source))}, header = true, auto_detect = false, delim = ',', "
            f"quote = '\"', escape = '\"', nullstr = '', columns = {{{types}}})",
            [chunk.key],
        ).fetchone()
        return 0 if inserted is None else int(inserted[0])

    def _record(
        self,
        connection: duckdb.DuckDBPyConnection,
        chunk: LoadChunk,
        rows: int,
        schema: Schema | None,
    ) -> None:
        """The chunk's record, and the table's types when they changed."""
        saved = chunk.saved
        connection.execute(
            "INSERT OR REPLACE INTO main._reportexport_chunks VALUES (?, ?, ?, ?, ?, ?, now())",
            [chunk.schema, chunk.table, chunk.key, saved.fingerprint, saved.sha256, rows],
        )
        if schema is None:
            return
        for position, (name, kind) in enumerate(schema.columns.items()):
            connection.execute(
                "INSERT OR REPLACE INTO main._reportexport_columns VALUES (?, ?, ?, ?, ?)",
                [chunk.schema, chunk.table, name, kind.text(), position],
            )


def _pause_for_tests() -> None:
    global _loads
    setting = os.environ.get(PAUSE_ENV)
    if not setting:
        return
    _loads += 1
    nth, _, marker = setting.partition(":")
    if _loads == int(nth):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(600)
