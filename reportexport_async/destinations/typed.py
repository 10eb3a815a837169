"""Typed destinations beside the files: `into` URLs, what a loader offers (`TypedDestination`),
and the destination that keeps the files and loads each chunk into a typed one (`FilesInto`).

    duckdb:///data.duckdb          a DuckDB file, relative to the working folder (or to the
    duckdb:////abs/data.duckdb     datasets/accounts file); four slashes: an absolute path
    parquet:///lake                Parquet files under report=<report>/chunk_start=<day>/

The files stay the source of truth: their ledger and manifest are untouched, and a typed
destination is brought to equal them. It records which chunk it holds with which sha256, so a
chunk whose load did not commit (a crash, a kill, a value that did not fit) is loaded again by
the next run (`FilesInto.reconcile`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from ..core.planning import export_folder
from ..errors import ConfigurationError, LoadError, UnreadableResult
from .base import Loaded, SavedChunk
from .files import FilesDestination
from .rows import BATCH, CsvCopy, read_rows
from .types import TEXT, Schema, value

__all__ = [
    "EXTRAS",
    "FilesInto",
    "IntoURL",
    "LoadChunk",
    "Loaded",
    "TypedDestination",
    "judge_file",
    "judge_rows",
    "parse_into",
    "typed_batches",
]

#: The package each kind needs, and the extra that installs it.
EXTRAS: Mapping[str, tuple[str, str]] = {
    "duckdb": ("duckdb", "duckdb"),
    "parquet": ("pyarrow", "parquet"),
}
DISTRIBUTION = "reportexport_async"


@dataclass(frozen=True, slots=True)
class IntoURL:
    """A parsed `into` URL: the kind (`duckdb`, `parquet`) and the path it names."""

    kind: str
    path: Path
    text: str

    def __str__(self) -> str:
        return self.text


def parse_into(url: str, *, setting: str = "into", base: Path | None = None) -> IntoURL:
    """`duckdb:///PATH` or `parquet:///PATH` (three slashes: relative to `base`, the working
    folder by default; four: absolute). A `ConfigurationError` naming `setting` otherwise, and
    when the package the kind needs is not installed (naming the extra to install)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            setting, f"expected duckdb:///PATH or parquet:///PATH, got {url!r}"
        )
    scheme, _, rest = url.partition("://")
    kind = scheme.lower()
    if kind not in EXTRAS:
        raise ConfigurationError(
            setting,
            f"unknown destination {scheme!r} in {url!r}: use duckdb:///PATH or parquet:///PATH",
        )
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigurationError(
            setting,
            f"{url!r} names no path: write {kind}:///relative/path or {kind}:////absolute/path",
        )
    text = rest[1:]  # `///x` is relative `x`; `////x` is absolute `/x`
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    package, extra = EXTRAS[kind]
    if importlib.util.find_spec(package) is None:
        raise ConfigurationError(
            setting,
            f"{url} needs {package}, which is not installed: pip install '{DISTRIBUTION}[{extra}]'",
        )
    return IntoURL(kind, path, url)


@dataclass(frozen=True, slots=True)
class LoadChunk:
    """A saved chunk as a typed destination loads it: into `schema` (the dataset's name, `main`
    for a backfill or an export), its report's table, under its chunk key."""

    saved: SavedChunk
    schema: str

    @property
    def table(self) -> str:
        """The report's table (or folder): `<report>`, `<report>__<8 hex>` with filters."""
        return export_folder(self.saved.request)

    @property
    def key(self) -> str:
        """The chunk's key in its table: `<start>_<end>`, or `default-range` (the newest
        default-range export of a report replaces the one before)."""
        chunk = self.saved.chunk
        return "default-range" if chunk is None else f"{chunk.start}_{chunk.end}"

    @property
    def start(self) -> str:
        chunk = self.saved.chunk
        return "default-range" if chunk is None else chunk.start.isoformat()

    @property
    def report(self) -> str:
        return self.saved.request.report_id

    @property
    def format(self) -> str:
        return self.saved.request.result_format


class TypedDestination(Protocol):
    """What a typed destination offers `FilesInto`. Every method blocks: run it in a thread."""

    #: The URL it was opened with (for messages).
    url: str

    def check(self) -> None:
        """Before any call: it can be written, else `ConfigurationError` naming `into`."""
        ...

    def loaded(self, schema: str, table: str) -> Mapping[str, str]:
        """Chunk key -> sha256 of the file each loaded chunk of `table` came from."""
        ...

    def load(self, chunk: LoadChunk) -> Loaded:
        """Replace the rows of `chunk.key` in its table with the chunk file's, whole or not at
        all; `LoadError` (or `ColumnTypeError`) naming report, chunk and column otherwise."""
        ...

    def close(self) -> None: ...


def judge_file(
    chunk: LoadChunk, before: Schema, target: str, csv_copy: Path | None
) -> tuple[list[str], Schema, int]:
    """Blocking: the chunk file's columns, the schema with its values judged, its rows; with
    `csv_copy`, the rows are also written there as plain CSV (a JSON or XML chunk)."""
    return judge_rows(
        chunk.saved.path, chunk.format, before,
        target=target, report=chunk.report, chunk=chunk.key, csv_copy=csv_copy,
    )  # fmt: skip


def judge_rows(
    path: Path,
    fmt: str,
    before: Schema,
    *,
    target: str,
    report: str,
    chunk: str,
    csv_copy: Path | None = None,
    widen: bool = True,
) -> tuple[list[str], Schema, int]:
    """Blocking: the columns of the result file at `path` (format `fmt`), `before` with the
    file's values judged (`Schema.merge`, `widen` as it says), and its number of rows; with
    `csv_copy`, the rows are also written there as plain CSV. `UnreadableResult` when the file
    is not of its format, `ColumnTypeError` for a value that no longer fits, both naming
    `target`, `report` and `chunk`."""
    try:
        with read_rows(path, fmt) as rows:
            columns = rows.columns
            if len(set(columns)) != len(columns) or "_chunk" in columns:
                raise LoadError(target, report, chunk, f"bad column names {columns}")
            schema, count = before, 0
            with CsvCopy(csv_copy, columns) as copy:
                for batch in rows.batches():
                    values = dict(zip(columns, zip(*batch, strict=True), strict=True))
                    schema = schema.merge(
                        values, target=target, report=report, chunk=chunk, widen=widen
                    )
                    count += len(batch)
                    copy.write(batch)
    except ValueError as exc:  # UnicodeDecodeError included
        raise UnreadableResult(target, report, chunk, str(path), str(exc)) from exc
    except OSError as exc:
        raise LoadError(target, report, chunk, f"cannot read {path}: {exc}") from exc
    for name in columns:  # a column of a file with no rows at all
        schema = schema.merge({name: ()}, target=target, report=report, chunk=chunk)
    return columns, schema, count


def typed_batches(
    path: Path, fmt: str, schema: Schema, size: int = BATCH
) -> Iterator[list[dict[str, object]]]:
    """Blocking: the rows of the result file at `path`, in batches, each row a mapping of column
    to the Python value of its type in `schema` (`types.value`; a column it lacks is text), for a
    loader that takes Python values (the dlt source). Judge the file first (`judge_rows`): a
    value that does not fit is then a `ValueError` here."""
    with read_rows(path, fmt) as rows:
        kinds = [schema.columns.get(name, TEXT) for name in rows.columns]
        typed = list(zip(rows.columns, kinds, strict=True))
        for batch in rows.batches(size):
            yield [
                {name: value(cell, kind) for (name, kind), cell in zip(typed, row, strict=True)}
                for row in batch
            ]


class FilesInto(FilesDestination):
    """The files (every duty of `FilesDestination`: layout, ledger's paths, manifest, merged
    files) and a typed destination loaded from them, chunk by chunk, in `schema`. Loads run one
    at a time, in a thread."""

    def __init__(self, folder: str | Path, into: TypedDestination, *, schema: str = "main") -> None:
        super().__init__(folder)
        self.into = into
        self.schema = schema
        self._lock = anyio.Lock()
        #: Per table, what the destination holds (chunk key -> sha256): read once, then kept
        #: as this process loads (one process writes a destination at a time).
        self._held: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"FilesInto({str(self.folder)!r}, {self.into.url!r})"

    def check(self, *, create: bool = True) -> None:
        super().check(create=create)
        if create:
            self.into.check()

    async def saved(self, saved: SavedChunk) -> tuple[Loaded, ...]:
        """Load the chunk unless the typed destination holds it from the same file already."""
        chunk = LoadChunk(saved, self.schema)
        async with self._lock:
            try:
                held = self._held.get(chunk.table)
                if held is None:
                    found = await anyio.to_thread.run_sync(
                        self.into.loaded, self.schema, chunk.table
                    )
                    held = self._held[chunk.table] = dict(found)
                if held.get(chunk.key) == saved.sha256:
                    return ()
                loaded = await anyio.to_thread.run_sync(self.into.load, chunk)
                held[chunk.key] = saved.sha256
                return (loaded,)
            except LoadError:
                raise
            except Exception as exc:  # the database's own failure (locked, disk full, ...)
                problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise LoadError(self.into.url, chunk.report, chunk.key, problem) from exc

    async def reconcile(self, chunks: Iterable[SavedChunk]) -> tuple[Loaded, ...]:
        """Bring the typed destination to equal the files: every chunk it lacks, or holds from
        another file, is loaded (a load an earlier run did not commit)."""
        done: list[Loaded] = []
        for saved in chunks:
            done.extend(await self.saved(saved))
        return tuple(done)

    async def aclose(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self.into.close)
