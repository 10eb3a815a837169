"""Where results go: one small interface, `Destination`, and its first implementation, the
files (`FilesDestination`). The contract a destination keeps is in docs/destinations.md.

A destination knows nothing of jobs or HTTP. The driver asks it where a chunk's file goes
(`path_for`), whether what the ledger recorded is still whole (`is_intact`), tells it when a
chunk's file was published (`saved`), and at the end of a run has it merge each report's chunks
(`merge`) and record every chunk's outcome (`write_manifest`). `export`, `backfill` and `sync`
use the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Protocol

from ..core.chunking import Chunk
from ..core.models import ExportRequest
from ..ledger import LedgerEntry
from .files import FilesDestination, Merged, canonical, file_is_intact
from .manifest import MANIFEST_NAME, Manifest, ManifestChunk, manifest_schema, read_manifest

__all__ = [
    "MANIFEST_NAME",
    "Destination",
    "FilesDestination",
    "Manifest",
    "ManifestChunk",
    "Merged",
    "canonical",
    "file_is_intact",
    "manifest_schema",
    "merge_each",
    "read_manifest",
]


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

    def check(self) -> None:
        """Before any call: the destination can be written (`ConfigurationError` if not)."""
        ...

    async def is_intact(self, entry: LedgerEntry, path: Path | None = None) -> bool:
        """The chunk's recorded file is at `path`, whole (size and sha256 as recorded)."""
        ...

    async def saved(self, request: ExportRequest, chunk: Chunk | None, path: Path) -> None:
        """The chunk's file at `path` was published whole and recorded in the ledger: load it
        (replacing whatever this chunk loaded before). Idempotent."""
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
