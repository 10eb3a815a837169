"""The manifest: one JSON document per output folder, `<folder>/manifest.json`, one schema for
`backfill` and `sync` (docs/destinations.md explains every field).

Written by the destination alone, durably, at the end of a run (also a run stopped by an
account-wide failure). Read back tolerantly: `read_manifest` also understands the two older
layouts (a backfill's and a sync's, before they shared this one), so a folder written by an
earlier version keeps its merged files' digests and its chunks' paths.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestChunk", "manifest_schema", "read_manifest"]

MANIFEST_NAME = "manifest.json"
#: The layout written now; documents without `version` are the older layouts.
VERSION: Literal[2] = 2

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ManifestChunk(BaseModel):
    """One chunk (or one default-range export) and its outcome in this run."""

    model_config = _STRICT

    report: str = Field(description="the report id")
    filters: dict[str, str] = Field(default_factory=dict, description="the export's filters")
    start: date | None = Field(description="first day of the chunk; null: the default range")
    end: date | None = Field(description="last day of the chunk; null: the default range")
    fingerprint: str = Field(description="the ledger's key of the export")
    status: str = Field(
        description="done, failed, pending, deferred, stuck (planned only in a dry run)"
    )
    job_id: str | None = Field(description="the job whose result the file holds, or in flight")
    rows: int | None = Field(description="rows of the result, when known")
    bytes: int | None = Field(description="size of the file")
    sha256: str | None = Field(description="sha256 of the file, hex")
    fetched_at: datetime | None = Field(
        description="when the file's data was made: its job's completion, server's clock"
    )
    downloaded_at: datetime | None = Field(description="when the file was written")
    final: bool | None = Field(
        description="sync: fetched after its days had settled (never fetched again); "
        "null when the run does not judge it (backfill)"
    )
    kind: str | None = Field(
        default=None, description="sync: the chunk's verdict (new, history, refresh, ...)"
    )
    replays: int | None = Field(default=None, description="replays made by this run")
    error: str | None = Field(
        default=None, description="why the chunk is not done, or the verdict's reason (sync)"
    )
    until: datetime | None = Field(
        default=None, description="when a pending or deferred chunk may go on"
    )
    path: str = Field(
        description="the file, relative to the manifest's folder (POSIX; may start with ../ "
        "when another worker wrote it elsewhere)"
    )

    def file(self, folder: Path) -> Path:
        """Where the chunk's file is (an absolute `path` of an older manifest stays as it is)."""
        return folder / self.path


class Manifest(BaseModel):
    """What a run left in its folder."""

    model_config = _STRICT

    version: Literal[2] = Field(default=VERSION, description="the layout of this document")
    run: Literal["backfill", "sync"] = Field(description="the command that wrote it")
    generated_at: datetime = Field(description="when it was written")
    account_type: str = Field(description="Mediapartners or Agencies")
    folder: str = Field(description="the folder's canonical absolute path when it was written")
    stopped: str | None = Field(
        default=None, description="the account-wide failure that stopped the run, if any"
    )
    counts: dict[str, int] = Field(description="chunks by status")
    calls: dict[str, int] = Field(
        default_factory=dict, description="API calls of the run, by endpoint"
    )
    merged: dict[str, str] = Field(
        default_factory=dict,
        description="merged file name -> digest of the chunks it was made of (a merged file "
        "whose chunks did not change is not written again)",
    )
    dataset: str | None = Field(default=None, description="sync: the dataset's name")
    account_day: date | None = Field(default=None, description="sync: the server's day")
    last_complete_day: date | None = Field(default=None, description="sync: the day before")
    settle_days: int | None = Field(default=None, description="sync: the settle window")
    refresh_hour: int | None = Field(default=None, description="sync: the refresh hour")
    server_clock_offset_seconds: float | None = Field(
        default=None, description="sync: the server's clock minus this machine's (informative)"
    )
    verdicts: dict[str, int] | None = Field(
        default=None, description="sync: chunks by verdict (new, refresh, final, ...)"
    )
    chunks: list[ManifestChunk] = Field(description="one entry per chunk of the run's plan")

    def document(self) -> bytes:
        """The JSON text written to disk."""
        return (self.model_dump_json(indent=2) + "\n").encode()


def manifest_schema() -> dict[str, Any]:
    """The JSON schema of `manifest.json` (for validating it outside Python)."""
    return Manifest.model_json_schema()


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at `path`, in the current layout whatever layout wrote it; None when there
    is none or it cannot be read. Blocking."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    if "version" not in document:
        document = _upgrade(document, path.parent)
    try:
        return Manifest.model_validate(document)
    except ValueError:
        return None


def _upgrade(old: dict[str, Any], folder: Path) -> dict[str, Any]:
    """An older layout as the current one. A backfill's had `resets_at` per chunk and counts by
    status; a sync's had `dataset`, counts by verdict, `kind`, `reason` and `until`."""
    is_sync = "dataset" in old
    chunks = []
    for chunk in old.get("chunks") or []:
        chunks.append(
            {
                "report": chunk.get("report"),
                "filters": chunk.get("filters") or {},
                "start": chunk.get("start"),
                "end": chunk.get("end"),
                "fingerprint": chunk.get("fingerprint"),
                "status": chunk.get("status"),
                "job_id": chunk.get("job_id"),
                "rows": chunk.get("rows"),
                "bytes": chunk.get("bytes"),
                "sha256": chunk.get("sha256"),
                "fetched_at": chunk.get("fetched_at"),
                "downloaded_at": chunk.get("downloaded_at"),
                "final": chunk.get("final"),
                "kind": chunk.get("kind"),
                "replays": chunk.get("replays"),
                "error": chunk.get("error") or chunk.get("reason"),
                "until": chunk.get("until") or chunk.get("resets_at"),
                "path": chunk.get("path"),
            }
        )
    statuses: dict[str, int] = {}
    for chunk in chunks:
        statuses[chunk["status"]] = statuses.get(chunk["status"], 0) + 1
    keep = ("dataset", "account_day", "last_complete_day", "settle_days", "refresh_hour")
    return {
        "version": VERSION,
        "run": "sync" if is_sync else "backfill",
        "generated_at": old.get("generated_at"),
        "account_type": old.get("account_type"),
        "folder": str(folder),
        "stopped": old.get("stopped"),
        "counts": statuses,
        "calls": old.get("calls") or {},
        "merged": old.get("merged") or {},
        "server_clock_offset_seconds": old.get("server_clock_offset_seconds"),
        "verdicts": old.get("counts") if is_sync else None,
        **{name: old.get(name) for name in keep},
        "chunks": chunks,
    }
