"""The files destination: chunk files in a folder, a manifest, merged files (the default, and the
source of truth every other destination is loaded from).

    <folder>/<report>/<start>_<end>.<ext>        one file per chunk
    <folder>/<report>/default-range_<day>.<ext>  a default-range export (sync), one a day
    <folder>/<report>.<ext>                      with merge: the chunks in date order
    <folder>/manifest.json                       every chunk's outcome (`manifest.Manifest`)

(`<report>` is `<report>__<8 hex>` when filters are set: `core.planning.export_folder`.)

Every path is canonical (`canonical`): the same file through any spelling (relative, `../A/x`,
absolute, through a symlinked folder) is one path, in the ledger and in every comparison, so
asking for it again by another spelling costs no call. Files are written whole or not at all
(`machine.files.atomic_write`; downloads stream through the same `.part`, fsync, rename).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path, PurePosixPath

import anyio

from ..core.chunking import Chunk
from ..core.models import ExportRequest
from ..core.planning import chunk_path, default_range_path, export_folder
from ..errors import OutputError
from ..ledger import LedgerEntry
from ..machine.files import atomic_write, part_of
from .base import Loaded, Merged, SavedChunk
from .manifest import MANIFEST_NAME, Manifest, read_manifest
from .merge import merge_files
from .outputs import check_folder, prepare_folder

__all__ = ["FilesDestination", "canonical", "file_is_intact", "sha256_of"]

_CHECK_CHUNK = 1 << 20
# A `.` or `..` part of a path: it needs resolving before it can be compared.
_UNRESOLVED = re.compile(r"(^|[\\/])\.{1,2}([\\/]|$)")


def canonical(path: str | Path) -> Path:
    """The one spelling of `path`: absolute, `~` expanded, `..` and symlinks resolved (the file
    itself need not exist). Two spellings of one file give one canonical path."""
    return Path(path).expanduser().resolve()


def sha256_of(path: Path) -> tuple[int, str] | None:
    """Blocking: the size and sha256 of the file at `path` (None: it cannot be read)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while piece := handle.read(_CHECK_CHUNK):
                digest.update(piece)
                size += len(piece)
    except OSError:
        return None
    return size, digest.hexdigest()


def _same_file(recorded: Path, dest: Path) -> bool:
    # The ledger holds canonical paths: equal text is the usual case, and costs no system call.
    return str(recorded) == str(dest) or canonical(recorded) == canonical(dest)


async def file_is_intact(entry: LedgerEntry, dest: Path | None = None) -> bool:
    """The file the ledger recorded for `entry` is at `dest` (or where it was recorded), in any
    spelling, with the recorded size and sha256."""
    path = dest or entry.file_path
    if path is None or entry.file_size is None or entry.file_sha256 is None:
        return False
    if entry.file_path is not None and dest is not None and not _same_file(entry.file_path, dest):
        return False
    try:
        if path.stat().st_size != entry.file_size:  # cheap check first
            return False
    except OSError:
        return False
    found = await anyio.to_thread.run_sync(sha256_of, path)
    return found == (entry.file_size, entry.file_sha256)


class FilesDestination:
    """Chunk files, manifest and merged files in one folder. `folder` is kept as given (for
    messages) and as `root`, its canonical form (for everything written or compared)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.root = canonical(self.folder)
        self._prefix = os.path.join(self.root, "")
        self._previous: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"FilesDestination({str(self.folder)!r})"

    # -- layout -----------------------------------------------------------------------------

    def path_for(
        self, request: ExportRequest, chunk: Chunk | None, *, day: date | None = None
    ) -> Path:
        """Where a chunk's file goes: `root/<report>/<start>_<end>.<ext>`; without a chunk (a
        default-range export) `root/<report>/default-range_<day>.<ext>`."""
        if chunk is not None:
            return self.root / chunk_path(request, chunk)
        if day is None:
            raise ValueError("a default-range export's file is named after its day")
        return self.root / default_range_path(request, day)

    def merged_path(self, request: ExportRequest) -> Path:
        """`<folder>/<report>.<ext>`, spelt as the folder was given."""
        return self.folder / f"{export_folder(request)}.{request.result_format.lower()}"

    @property
    def manifest_path(self) -> Path:
        """`<folder>/manifest.json`, spelt as the folder was given."""
        return self.folder / MANIFEST_NAME

    def canonical(self, path: str | Path) -> Path:
        """`path` (relative: to the current folder) in its one spelling."""
        return canonical(path)

    def relative(self, path: str | Path) -> str:
        """`path` relative to the folder, POSIX, as the manifest records it."""
        text = str(path)
        if text.startswith(self._prefix) and not _UNRESOLVED.search(text):
            # Laid out here (the usual case): no system call, no parsing.
            return text[len(self._prefix) :].replace(os.sep, "/")
        found = os.path.relpath(canonical(path), self.root)
        return PurePosixPath(*Path(found).parts).as_posix()

    def check(self, *, create: bool = True) -> None:
        """Before any call: the folder can be written, made with its parents when missing (with
        `create=False`, a dry run's check, judged without making anything); a
        `ConfigurationError` naming `out_dir` otherwise (the checks of `outputs`)."""
        if create:
            prepare_folder(self.folder, argument="out_dir")
        else:
            check_folder(self.folder, argument="out_dir")

    # -- chunks -----------------------------------------------------------------------------

    async def is_intact(self, entry: LedgerEntry, path: Path | None = None) -> bool:
        """The ledger's file of `entry` is at `path` (default: where it was recorded) whole."""
        return await file_is_intact(entry, path)

    async def saved(self, saved: SavedChunk) -> tuple[Loaded, ...]:
        """A chunk's file was published whole and recorded. The files are the destination
        itself: nothing more to do (`typed.FilesInto` loads the chunk here)."""
        return ()

    async def reconcile(self, chunks: Iterable[SavedChunk]) -> tuple[Loaded, ...]:
        """The files are the source of truth: nothing to bring up to them."""
        return ()

    async def aclose(self) -> None:
        """Nothing held open."""

    # -- run outputs ------------------------------------------------------------------------

    def previous_merged(self) -> dict[str, str]:
        """The merged files' digests of the last manifest written here (any layout). Blocking."""
        if self._previous is None:
            found = read_manifest(self.root / MANIFEST_NAME)
            self._previous = {} if found is None else dict(found.merged)
        return self._previous

    async def merge(self, request: ExportRequest, files: Sequence[tuple[Path, str]]) -> Merged:
        """`<folder>/<report>.<ext>` from the chunk `files` (path, sha256), in date order,
        replaced atomically; not written again when it exists and holds the same chunks (by
        the last manifest's digest). `OutputError` when the disk refuses."""
        ordered = sorted(files, key=lambda item: item[0].name)
        digest = hashlib.sha256(
            "\n".join(f"{path.name} {sha}" for path, sha in ordered).encode()
        ).hexdigest()
        target = self.merged_path(request)
        previous = await anyio.to_thread.run_sync(self.previous_merged)
        if previous.get(target.name) == digest and target.exists():
            return Merged(target, digest, written=False)
        paths = [path for path, _ in ordered]
        try:
            await anyio.to_thread.run_sync(merge_files, paths, target, request.result_format)
        except OSError as exc:
            raise OutputError(target, exc) from exc
        return Merged(target, digest, written=True)

    def write_manifest(self, manifest: Manifest) -> Path:
        """`<folder>/manifest.json`, written durably; `OutputError` if the disk refuses it (the
        previous manifest, if any, stays whole). Blocking: run it in a thread."""
        path = self.manifest_path
        body = manifest.document()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self.root / MANIFEST_NAME, lambda handle: handle.write(body))
        except OSError as exc:
            part_of(self.root / MANIFEST_NAME).unlink(missing_ok=True)
            raise OutputError(path, exc) from exc
        self._previous = dict(manifest.merged)
        return path
