"""A dlt source (https://dlthub.com): the reports as dlt resources, one table per report, loaded
into any destination dlt supports, each chunk's rows replaced whole when the chunk is fetched
again. docs/dlt.md has the guarantees and a complete example.

    import dlt
    from reportexport_async.dlt import reportexport_source

    source = reportexport_source(["mp_action_listing_fast"], date(2025, 1, 1),
                                 date(2025, 3, 31), out="files", chunk="1d")
    dlt.pipeline("impact", destination="duckdb").run(source)

The library stays in charge of the API: a run of the source is a `Client.backfill` (reports and a
date window) or a `Client.sync` (datasets, as `datasets.toml` describes them) into its working
folder, with its ledger, limits and freshness rules. Then every chunk whose file is whole is
offered to its report's resource, which loads it only when dlt has not loaded that file before:
the resource's state (kept by dlt with the data, in the destination) holds each chunk's sha256.
A chunk fetched again with other bytes (a refresh of a day still settling) is loaded again whole;
a chunk unchanged costs nothing.

Every row carries `_chunk`, its chunk's key (the ledger's fingerprint of the export); the
resources load with dlt's `merge` disposition, strategy `delete-insert`, on the merge key
`_chunk`: the rows a chunk loaded before are deleted and its new rows inserted in one transaction
of the destination. A chunk that now has no rows deletes its old ones (a row marked in the
`hard_delete` column `_chunk_deleted`, never inserted), and a chunk that covers days another
chunk loaded before (the chunk rule changed) replaces that chunk's rows too.

Chunk files are read, and values typed, by the code that serves the typed destinations
(`destinations.rows`, `destinations.types`: dates, timestamps, integers, decimals, booleans; text
where nothing else fits), and each column's type is kept in the resource's state. dlt cannot
change the type of a column it has loaded, so here no kept type widens: a value that no longer
fits, or that would widen its column, stops the load with `ColumnTypeError`; a file not of its
format, with `UnreadableResult` (both `LoadError`s naming the report's table and the chunk).

This module needs dlt: `pip install 'reportexport_async[dlt]'` (and the extra of a destination,
e.g. `dlt[postgres]`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, Unpack

import anyio
import anyio.from_thread

try:
    import dlt  # the library: imports are absolute, so this module never shadows it
    from dlt.common.data_types import TDataType
    from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
    from dlt.sources import DltResource, DltSource
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "reportexport_async.dlt needs dlt: pip install 'reportexport_async[dlt]'"
    ) from exc

from .client import Client, Exports
from .core.chunking import Chunk
from .core.planning import export_folder
from .destinations import read_manifest
from .destinations.typed import judge_rows, typed_batches
from .destinations.types import DECIMAL_DIGITS, Schema
from .errors import ConfigurationError
from .jobs.datasets import load_datasets
from .jobs.orchestrator import (
    BackfillChanges,
    BackfillOptions,
    ExportSpec,
    ProgressEvent,
    as_specs,
)
from .jobs.sync import Dataset, SyncOptions

__all__ = ["CHUNK_COLUMN", "DELETED_COLUMN", "ChunkFile", "reportexport_source"]

log = logging.getLogger("reportexport_async.dlt")

#: The merge key: the key of the chunk a row came from.
CHUNK_COLUMN = "_chunk"
#: dlt's `hard_delete` column: true only on the one row that deletes an emptied chunk's rows.
DELETED_COLUMN = "_chunk_deleted"
#: Rows handed to dlt at a time.
BATCH = 5_000
#: The `target` that errors name.
TARGET = "dlt"
#: The resource that runs the library and offers the chunk files to the reports' resources.
FILES_RESOURCE = "_reportexport_chunk_files"

MERGE: TWriteDispositionConfig = {"disposition": "merge", "strategy": "delete-insert"}
COLUMNS: dict[str, TColumnSchema] = {
    CHUNK_COLUMN: {"data_type": "text", "nullable": False},
    DELETED_COLUMN: {"data_type": "bool", "hard_delete": True},
}

T = TypeVar("T")


@dataclass(frozen=True)
class ChunkFile:
    """A chunk's file, whole, after the library's run: what a report's resource may load."""

    table: str  # the resource: the export's folder (the report id, `__<hash>` with filters)
    key: str  # `_chunk`: the fingerprint; the report's default range: one key per export
    start: date | None  # None: the report's default range
    end: date | None
    path: Path
    sha256: str
    result_format: str

    @property
    def label(self) -> str:
        return "default range" if self.start is None else f"{self.start}..{self.end}"


@dataclass(frozen=True)
class _Work:
    """What one run of the source asks of the library: the client (not open: the run opens it
    in its own event loop) and the run, which returns the manifests it wrote."""

    client: Client
    tables: tuple[str, ...]
    run: Callable[[Client], Awaitable[list[Path | None]]]


def reportexport_source(
    exports: Exports | None = None,
    start: date | None = None,
    end: date | None = None,
    *,
    out: str | Path | None = None,
    datasets: str | Path | Dataset | Sequence[Dataset] | None = None,
    names: Sequence[str] = (),
    client: Client | None = None,
    options: BackfillOptions | SyncOptions | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    name: str = "reportexport",
    **changes: Unpack[BackfillChanges],
) -> DltSource:
    """A dlt source of the reports: one resource (and table) per export, named after its folder
    (the report id; `<report>__<8 hex>` with filters).

    Either `exports` (report ids or `ExportSpec`s) over `[start, end]` into the working folder
    `out`, as `Client.backfill` takes them (`options` a `BackfillOptions`, or keyword `changes`
    such as `chunk="1d"`); or `datasets`: a `datasets.toml` file (only the datasets `names`,
    when given) or `Dataset` values, run as `Client.sync` runs them (`options` a `SyncOptions`).
    `client` is a `Client` that is not open (default `Client.from_env()`); the source opens it
    for its run and closes it. `name` is the source's name in the pipeline (its state's key).

    Every argument is checked here, before any call (`ConfigurationError` naming it). The work
    is done when dlt extracts the source; make a new source for each run."""
    if client is None:
        client = Client.from_env()
    elif not isinstance(client, Client):
        raise ConfigurationError("client", f"expected a Client, got {client!r}")
    elif _is_open(client):
        raise ConfigurationError(
            "client", "give a Client that is not open: the source opens it for its run"
        )
    if on_event is not None and not callable(on_event):
        raise ConfigurationError("on_event", f"expected a function, got {on_event!r}")
    if datasets is not None:
        given = {"exports": exports, "start": start, "end": end, "out": out}
        work = _sync_work(given, datasets, names, client, options, changes, on_event)
    else:
        work = _backfill_work(exports, start, end, out, client, options, changes, on_event)
    factory: Any = _source.with_args(name=name)
    source: DltSource = factory(work)
    return source


@dlt.source(name="reportexport", max_table_nesting=0)
def _source(work: _Work) -> Iterator[DltResource]:
    files = dlt.resource(_chunk_files(work), name=FILES_RESOURCE, selected=False)
    for table in work.tables:
        rows = dlt.transformer(
            _table_rows(table), data_from=files, name=table, merge_key=CHUNK_COLUMN, columns=COLUMNS
        )
        # The transformer's own argument takes a disposition's name only, not its strategy.
        rows.apply_hints(write_disposition=MERGE)
        yield rows


# -- the library's run --------------------------------------------------------------------------


def _chunk_files(work: _Work) -> Iterator[ChunkFile]:
    """Run the library (when dlt first asks), then offer every chunk whose file is whole."""

    async def main() -> list[Path | None]:
        async with work.client as client:
            return await work.run(client)

    manifests = _blocking(main)
    tables = set(work.tables)
    for manifest_path in manifests:
        if manifest_path is None:
            continue
        manifest = read_manifest(manifest_path)
        if manifest is None:
            continue
        folder = manifest_path.parent
        for chunk in manifest.chunks:
            table = PurePosixPath(chunk.path).parent.name
            if chunk.sha256 is None or table not in tables:
                continue  # not fetched whole (yet): a later run loads it
            yield ChunkFile(
                table=table,
                key=chunk.fingerprint if chunk.start is not None else f"{table}:default-range",
                start=chunk.start,
                end=chunk.end,
                path=chunk.file(folder),
                sha256=chunk.sha256,
                result_format=PurePosixPath(chunk.path).suffix.lstrip(".").upper(),
            )


def _blocking(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` to its end from dlt's synchronous extraction: on this thread, or on a thread
    of its own when this one already runs an event loop (a notebook, an async application).
    Interrupted (Ctrl-C), the run is cancelled as any run of the library is: its ledger and
    folder stay consistent."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(main)
    # Leaving the portal with an exception (KeyboardInterrupt) cancels the run's tasks.
    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(main)


def _is_open(client: Client) -> bool:
    try:
        client.api  # noqa: B018 - raises while the client is not open
    except RuntimeError:
        return False
    return True


def _backfill_work(
    exports: Exports | None,
    start: date | None,
    end: date | None,
    out: str | Path | None,
    client: Client,
    options: BackfillOptions | SyncOptions | None,
    changes: Mapping[str, Any],
    on_event: Callable[[ProgressEvent], None] | None,
) -> _Work:
    if exports is None:
        raise ConfigurationError("exports", "give report ids (with start, end and out) or datasets")
    for setting, value in (("start", start), ("end", end)):
        if not isinstance(value, date):
            raise ConfigurationError(setting, f"must be a date such as 2025-01-31, got {value!r}")
    assert start is not None
    assert end is not None
    if out is None:
        raise ConfigurationError("out", "give the working folder of the chunk files")
    if options is not None and not isinstance(options, BackfillOptions):
        raise ConfigurationError("options", "a backfill takes BackfillOptions")
    chosen = (options or BackfillOptions()).but(**changes)
    if chosen.dry_run:
        raise ConfigurationError("dry_run", "a dry run loads nothing: run the backfill itself")
    tables = _tables(as_specs(exports), "exports")

    async def run(client: Client) -> list[Path | None]:
        result = await client.backfill(
            exports, start, end, out=out, options=chosen, on_event=on_event
        )
        return [result.manifest_path]

    return _Work(client, tables, run)


def _sync_work(
    given: Mapping[str, object],
    datasets: str | Path | Dataset | Sequence[Dataset],
    names: Sequence[str],
    client: Client,
    options: BackfillOptions | SyncOptions | None,
    changes: Mapping[str, Any],
    on_event: Callable[[ProgressEvent], None] | None,
) -> _Work:
    for setting, value in given.items():
        if value is not None:
            raise ConfigurationError(setting, "datasets name their reports, days and folders")
    if changes:
        raise ConfigurationError(next(iter(changes)), "datasets take their settings from Dataset")
    if options is not None and not isinstance(options, SyncOptions):
        raise ConfigurationError("options", "a sync of datasets takes SyncOptions")
    if options is not None and options.dry_run:
        raise ConfigurationError("dry_run", "a dry run loads nothing: run the sync itself")
    if isinstance(datasets, str | Path):
        sets = load_datasets(datasets, names)
    else:
        sets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
        if names:
            raise ConfigurationError("names", "names choose datasets of a datasets.toml file")
    tables = _tables([spec for dataset in sets for spec in dataset.specs()], "datasets")

    async def run(client: Client) -> list[Path | None]:
        result = await client.sync(sets, options=options, on_event=on_event)
        return [dataset.manifest_path for dataset in result.datasets]

    return _Work(client, tables, run)


def _tables(specs: Sequence[ExportSpec], setting: str) -> tuple[str, ...]:
    """Each export's table: its folder. Two exports with one folder (a report in two formats,
    or twice) would load the same rows twice into one table: refused."""
    day = Chunk(date(2000, 1, 1), date(2000, 1, 1))
    tables: list[str] = []
    for spec in specs:
        table = export_folder(spec.request(day))
        if table in tables:
            raise ConfigurationError(
                setting,
                f"{spec.report_id} is asked for twice with the same filters (table {table!r}): "
                "give each report once, in one format",
            )
        tables.append(table)
    return tuple(tables)


# -- a report's rows ----------------------------------------------------------------------------


def _table_rows(table: str) -> Callable[[ChunkFile], Iterator[Any]]:
    """The transformer of one report's resource: it loads the chunks offered for `table` that
    dlt has not loaded with these bytes, and records them in the resource's state."""

    def rows(item: ChunkFile) -> Iterator[Any]:
        # Not a generator: dlt may start the next chunk before this one's rows are all out, so
        # the state is read and written here, at once, and only the rows are produced lazily.
        # A run that fails keeps none of it (dlt commits the state with the extracted data).
        if item.table != table:
            return iter(())
        state = dlt.current.resource_state()
        loaded: dict[str, list[Any]] = state.setdefault("chunks", {})
        types: dict[str, str] = state.setdefault("types", {})
        before = loaded.get(item.key)
        if before is not None and before[0] == item.sha256:
            return iter(())  # loaded with these bytes: nothing to do
        gone = _overlapped(loaded, item)  # the chunk rule changed: this chunk replaces them
        for key in gone:
            del loaded[key]
        _, schema, count = judge_rows(
            item.path, item.result_format, Schema.of(types),
            target=TARGET, report=table, chunk=item.label, widen=False,
        )  # fmt: skip
        types.update(schema.record())
        start = None if item.start is None else item.start.isoformat()
        end = None if item.end is None else item.end.isoformat()
        loaded[item.key] = [item.sha256, start, end]
        log.info("%s: chunk %s: %d rows", table, item.label, count)
        if count == 0 and before is not None:
            gone.append(item.key)  # no rows any more: its old rows go all the same
        deletes: list[dict[str, object]] = [{CHUNK_COLUMN: k, DELETED_COLUMN: True} for k in gone]
        return _typed_batches(item, schema, deletes)

    return rows


def _typed_batches(
    item: ChunkFile, schema: Schema, deletes: list[dict[str, object]]
) -> Iterator[Any]:
    """The rows that delete the chunks `item` replaces (itself, when it has no rows any more),
    then `item`'s rows, typed, each with its chunk's key, in batches; the first with each
    column's type as a hint (dlt's own guess of a decimal, 9 digits after the point, rounds)."""
    if deletes:
        yield deletes
    hints: Any = dlt.mark.make_hints(columns={**_column_hints(schema), **COLUMNS})
    for batch in typed_batches(item.path, item.result_format, schema, BATCH):
        for row in batch:
            row[CHUNK_COLUMN] = item.key
        yield batch if hints is None else dlt.mark.with_hints(batch, hints)
        hints = None


#: dlt's name of each type a column is given (`destinations.types`).
DLT_TYPES: Mapping[str, TDataType] = {
    "boolean": "bool",
    "integer": "bigint",
    "decimal": "decimal",
    "date": "date",
    "timestamp": "timestamp",
    "text": "text",
}


def _column_hints(schema: Schema) -> dict[str, TColumnSchema]:
    """Each decided column's type as dlt names it, in the file's order; a decimal with its
    scale. A column with no value yet is left to a later chunk."""
    hints: dict[str, TColumnSchema] = {}
    for name, kind in schema.columns.items():
        if kind.kind == "decimal":
            hints[name] = {"data_type": "decimal", "precision": DECIMAL_DIGITS, "scale": kind.scale}
        elif kind.kind in DLT_TYPES:
            hints[name] = {"data_type": DLT_TYPES[kind.kind]}
    return hints


def _overlapped(loaded: Mapping[str, list[Any]], item: ChunkFile) -> list[str]:
    """The keys of chunks loaded before, other than `item`'s, that cover some of its days."""
    if item.start is None or item.end is None:
        return []
    start, end = item.start.isoformat(), item.end.isoformat()
    return [
        key
        for key, (_, first, last) in loaded.items()
        if key != item.key and first is not None and first <= end and start <= last
    ]
