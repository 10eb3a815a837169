"""The Parquet destination: one file per chunk, hive-style,

    <dir>/report=<report>/chunk_start=<start>/<start>_<end>.parquet
    <dir>/_reportexport/<report>.json     the report's column types and the chunks it holds

readable with `duckdb.read_parquet('<dir>/**/*.parquet', hive_partitioning=true)` or
`pyarrow.dataset.dataset('<dir>', partitioning='hive')`. A chunk's file is written to `.part`,
fsynced and renamed over the one before: a reader sees the old rows or the new, never a mix. The
types are decided as for every typed destination (`types`); when a later chunk decides a column
that was still undecided, or widens a number, the report's earlier files are written again with
the new types, so that every file of a report has the same schema.

Memory is bounded, whatever the chunk's size (`Bounds`): the CSV is converted a block at a time
by one thread (no read-ahead of further blocks), the typed batches are gathered into row groups
of `row_group_rows` rows, each written and let go before the next, and Arrow's allocator gives
its unused memory back when a file is done. Without this (8 MB blocks, the threaded reader, a
row group per block) a 1 GB load grew the process by hundreds of MB.

`pyarrow` is imported here only, when a `parquet://` destination is opened.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ConfigurationError, LoadError
from ..machine.files import atomic_write, part_of, publish
from .typed import LoadChunk, Loaded, judge_file
from .types import DECIMAL_DIGITS, ColumnType, Schema

__all__ = ["BOUNDED", "Bounds", "ParquetDestination", "arrow_type"]

_RECORDS = "_reportexport"


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much of a chunk Arrow holds at a time: `block` bytes of CSV text (converted by one
    thread, or by several reading ahead with `threads`), and the typed values of one row group
    of `row_group_rows` rows (0: a row group per block)."""

    block: int = 1 << 20
    row_group_rows: int = 32 * 1024
    threads: bool = False


#: The bounds every load uses: about 1 MB of text and one row group of typed values (~10 MB for
#: a report of ten columns), whatever the chunk's size.
BOUNDED = Bounds()


def arrow_type(kind: ColumnType) -> pa.DataType:
    return {
        "boolean": pa.bool_(),
        "integer": pa.int64(),
        "decimal": pa.decimal128(DECIMAL_DIGITS, kind.scale),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }.get(kind.kind, pa.string())


def _arrow_schema(schema: Schema) -> pa.Schema:
    fields = [pa.field(n, arrow_type(k)) for n, k in schema.columns.items()]
    return pa.schema([*fields, pa.field("_chunk", pa.string())])


def _cast(array: pa.Array, kind: ColumnType) -> pa.Array:
    if kind.kind == "boolean":
        array = pc.utf8_lower(array)
    return pc.cast(array, arrow_type(kind))


class ParquetDestination:
    def __init__(self, path: Path, url: str, *, bounds: Bounds = BOUNDED) -> None:
        self.path = path
        self.url = url
        #: `BOUNDED`; the benchmark passes the earlier settings to measure them beside it.
        self.bounds = bounds

    def check(self) -> None:
        try:
            (self.path / _RECORDS).mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path / _RECORDS)  # noqa: SIM115
            probe.close()
        except OSError as exc:
            raise ConfigurationError("into", f"{self.url} cannot be written: {exc}") from None

    def close(self) -> None:
        pass

    # -- records -----------------------------------------------------------------------------

    def _record_path(self, schema: str, table: str) -> Path:
        name = table if schema == "main" else f"{schema}.{table}"
        return self.path / _RECORDS / f"{name}.json"

    def _read(self, schema: str, table: str) -> dict[str, Any]:
        try:
            found = json.loads(self._record_path(schema, table).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"columns": {}, "chunks": {}}
        return dict(found)

    def loaded(self, schema: str, table: str) -> Mapping[str, str]:
        chunks = self._read(schema, table)["chunks"]
        return {key: entry["sha256"] for key, entry in chunks.items()}

    def _write_record(self, schema: str, table: str, record: Mapping[str, Any]) -> None:
        body = (json.dumps(record, indent=1) + "\n").encode()
        self._record_path(schema, table).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._record_path(schema, table), lambda handle: handle.write(body))

    # -- loading -----------------------------------------------------------------------------

    def load(self, chunk: LoadChunk) -> Loaded:
        record = self._read(chunk.schema, chunk.table)
        before = Schema.of(record["columns"])
        folder = self.path / f"report={chunk.table}" / f"chunk_start={chunk.start}"
        folder.mkdir(parents=True, exist_ok=True)
        copy = None
        if chunk.format.upper() != "CSV":
            handle, name = tempfile.mkstemp(suffix=".csv", prefix=".load-", dir=folder)
            os.close(handle)
            copy = Path(name)
        target = folder / f"{chunk.key}.parquet"
        try:
            columns, schema, count = judge_file(chunk, before, self.url, copy)
            try:
                self._write(chunk, copy or chunk.saved.path, columns, schema, target)
                if schema.changed(before):
                    self._rewrite_others(record, schema, skip=chunk.key)
            except (OSError, pa.ArrowException) as exc:
                raise LoadError(self.url, chunk.report, chunk.key, str(exc)) from exc
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
        record["columns"] = schema.record()
        record["chunks"][chunk.key] = {
            "fingerprint": chunk.saved.fingerprint,
            "sha256": chunk.saved.sha256,
            "rows": count,
            "file": target.relative_to(self.path).as_posix(),
        }
        self._write_record(chunk.schema, chunk.table, record)
        return Loaded(self.url, target.relative_to(self.path).as_posix(), chunk.report, chunk.key,
                      count)  # fmt: skip

    def _write(
        self, chunk: LoadChunk, source: Path, columns: list[str], schema: Schema, target: Path
    ) -> None:
        """The chunk's rows as `target`, converted a block at a time, published whole."""
        arrow = _arrow_schema(schema)
        bounds = self.bounds
        if not columns:
            _write_whole(target, arrow, (), bounds)
            return
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=columns,
                skip_rows=1,
                block_size=bounds.block,
                use_threads=bounds.threads,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in columns},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        batches = (self._typed(b, schema, chunk.key, arrow) for b in reader)
        _write_whole(target, arrow, batches, bounds)

    @staticmethod
    def _typed(batch: pa.RecordBatch, schema: Schema, key: str, arrow: pa.Schema) -> pa.RecordBatch:
        names = set(batch.schema.names)
        arrays = []
        for name, kind in schema.columns.items():
            if name in names:
                arrays.append(_cast(batch.column(name), kind))
            else:
                arrays.append(pa.nulls(batch.num_rows, arrow_type(kind)))
        arrays.append(pa.array([key] * batch.num_rows, pa.string()))
        return pa.RecordBatch.from_arrays(arrays, schema=arrow)

    def _rewrite_others(self, record: Mapping[str, Any], schema: Schema, *, skip: str) -> None:
        """Every other file of the report with the report's types now (a column decided or
        widened since it was written: lossless casts)."""
        arrow = _arrow_schema(schema)
        for key, entry in record["chunks"].items():
            path = self.path / entry["file"]
            if key == skip or not path.exists():
                continue
            source = pq.ParquetFile(path)
            if source.schema_arrow.equals(arrow):
                continue
            batches = (_recast(b, arrow) for b in source.iter_batches())
            _write_whole(path, arrow, batches, self.bounds)


def _write_whole(
    target: Path, arrow: pa.Schema, batches: Iterable[pa.RecordBatch], bounds: Bounds
) -> None:
    """`target` from `batches`, written to `.part` a row group at a time, fsynced and renamed
    over the one before."""
    part = part_of(target)
    try:
        with pq.ParquetWriter(part, arrow) as writer:
            for group in _row_groups(batches, bounds.row_group_rows):
                writer.write_table(group, row_group_size=max(group.num_rows, 1))
                del group  # its buffers go back to the pool before the next group is made
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        publish(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        # mimalloc and jemalloc keep freed pages for reuse; a long-lived process gives them back.
        pa.default_memory_pool().release_unused()


def _row_groups(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """`batches` gathered into tables of at least `rows` rows (the last one: what is left);
    with `rows` 0, one table a batch."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pa.Table.from_batches(pending)
            pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _recast(batch: pa.RecordBatch, arrow: pa.Schema) -> pa.RecordBatch:
    names = set(batch.schema.names)
    arrays = [
        pc.cast(batch.column(f.name), f.type)
        if f.name in names
        else pa.nulls(batch.num_rows, f.type)
        for f in arrow
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow)
