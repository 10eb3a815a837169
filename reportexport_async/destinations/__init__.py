"""Where results go: one small interface, `Destination`, and its first implementation, the
files (`FilesDestination`). The contract a destination keeps is in docs/destinations.md.

A destination knows nothing of jobs or HTTP. The driver asks it where a chunk's file goes
(`path_for`), whether what the ledger recorded is still whole (`is_intact`), tells it when a
chunk's file was published (`saved`), and at the end of a run has it merge each report's chunks
(`merge`) and record every chunk's outcome (`write_manifest`). `export`, `backfill` and `sync`
use the same one.
"""

from __future__ import annotations

from .base import Destination, Loaded, Merged, SavedChunk, merge_each
from .files import FilesDestination, canonical, file_is_intact
from .manifest import MANIFEST_NAME, Manifest, ManifestChunk, manifest_schema, read_manifest
from .typed import FilesInto, IntoURL, parse_into

__all__ = [
    "MANIFEST_NAME",
    "Destination",
    "FilesDestination",
    "FilesInto",
    "IntoURL",
    "Loaded",
    "Manifest",
    "ManifestChunk",
    "Merged",
    "SavedChunk",
    "canonical",
    "file_is_intact",
    "manifest_schema",
    "merge_each",
    "parse_into",
    "read_manifest",
]


def _conforms(files: FilesDestination, into: FilesInto) -> tuple[Destination, Destination]:
    """Never called: `mypy --strict` checks here that both keep the whole interface."""
    return files, into
