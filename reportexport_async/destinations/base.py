"""The interface every destination offers the driver (`Destination`), the values it exchanges
(`SavedChunk`, `Merged`), and what is built on the interface alone (`merge_each`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from ..core.chunking import Chunk
from ..core.models import ExportRequest
from ..ledger import LedgerEntry
from .manifest import Manifest

__all__ = ["Destination", "Loaded", "Merged", "SavedChunk", "merge_each"]


@dataclass(frozen=True, slots=True)
class SavedChunk:
    """A chunk's file, published whole and recorded in the ledger. `fingerprint` is the chunk's
    key (a report has no primary key: a chunk's rows are replaced by the chunk's key);
    `chunk` is None for a default-range export."""

    fingerprint: str
    request: ExportRequest
    chunk: Chunk | None
    path: Path
    sha256: str
    job_id: str | None


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a typed destination loaded: `rows` of `report`'s chunk `chunk` (its key: `<start>_<end>`
    or `default-range`) into `table` of `target` (the destination's URL)."""

    target: str
    table: str
    report: str
    chunk: str
    rows: int

    @property
    def message(self) -> str:
        return f"{self.rows} rows of {self.report} {self.chunk} into {self.target} {self.table}"


@dataclass(frozen=True, slots=True)
class Merged:
    """A merged file: where, the digest of the chunks it holds, whether this run wrote it."""

    path: Path
    digest: str
    written: bool


class Destination(Protocol):
    """What every destination offers the driver (docs/destinations.md has the guarantees)."""

    #: The folder of the chunk files, the manifest and the merged files, canonical.
    root: Path

    def path_for(
        self, request: ExportRequest, chunk: Chunk | None, *, day: date | None = None
    ) -> Path:
        """The canonical file a chunk is downloaded to (a default-range export: by its `day`)."""
        ...

    def canonical(self, path: str | Path) -> Path:
        """The one spelling of `path`."""
        ...

    def relative(self, path: str | Path) -> str:
        """`path` as the manifest records it: relative to `root`, POSIX."""
        ...

    def check(self, *, create: bool = True) -> None:
        """Before any call: the destination can be written (`ConfigurationError` if not); with
        `create=False` (a dry run) nothing is made."""
        ...

    async def is_intact(self, entry: LedgerEntry, path: Path | None = None) -> bool:
        """The chunk's recorded file is at `path`, whole (size and sha256 as recorded)."""
        ...

    async def saved(self, saved: SavedChunk) -> Sequence[Loaded]:
        """A chunk's file was published whole and recorded in the ledger: load it, replacing
        whatever the same chunk (`saved.fingerprint`) loaded before. Idempotent. Returns what
        was loaded where (nothing for the files alone); `LoadError` when a load fails (the file
        and the ledger stay as they are)."""
        ...

    async def reconcile(self, chunks: Iterable[SavedChunk]) -> Sequence[Loaded]:
        """The run's whole chunks (also those done before): whatever a destination beside the
        files lacks of them, or holds from another file, is loaded now (a load an earlier run
        did not commit)."""
        ...

    async def aclose(self) -> None:
        """The run is over: release what the destination holds open."""
        ...

    async def merge(self, request: ExportRequest, files: Sequence[tuple[Path, str]]) -> Merged:
        """One report's chunk files `(path, sha256)` as one, replaced atomically."""
        ...

    def write_manifest(self, manifest: Manifest) -> Path:
        """Record the run's outcome, durably. Blocking: run it in a thread."""
        ...


async def merge_each(
    destination: Destination,
    groups: Iterable[tuple[ExportRequest, Sequence[tuple[Path, str | None]]]],
    sources: dict[str, str],
) -> tuple[Path, ...]:
    """`destination.merge` for each export's chunk files `(path, sha256)` whose every file is
    whole (its sha256 known); the others stay as they were. `sources` gets each merged file's
    digest (for the manifest). Returns the files written."""
    written: list[Path] = []
    for request, files in groups:
        whole = [(path, sha) for path, sha in files if sha is not None]
        if not whole or len(whole) < len(files):
            continue  # a chunk is missing: the merged file stays as it was
        merged = await destination.merge(request, whole)
        sources[merged.path.name] = merged.digest
        if merged.written:
            written.append(merged.path)
    return tuple(written)
