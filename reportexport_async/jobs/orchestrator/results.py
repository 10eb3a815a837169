"""What a run leaves behind besides the chunk files, through its destination: the manifest (one
line per chunk with its outcome) and, with `merge`, one file per export and format, its chunks in
date order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ...destinations import Manifest, merge_each
from ...ledger import LedgerEntry
from .model import ChunkRun
from .state import RunState

__all__ = ["manifest_of", "merge_done", "write_manifest"]


def manifest_of(state: RunState, entries: Mapping[str, LedgerEntry]) -> Manifest:
    """The run's manifest; `entries` are the ledger's records of its chunks (when each chunk's
    data was made and downloaded)."""
    runs = state.runs.values()
    return Manifest(
        run="backfill",
        generated_at=state.api.clock.now(),
        account_type=state.api.config.account_type.value,
        folder=str(state.destination.root),
        stopped=None if state.stopped is None else str(state.stopped),
        counts=dict(Counter(run.status for run in runs)),
        calls=dict(state.calls()),
        merged=dict(state.merged_sources),
        chunks=[
            run.to_manifest(state.destination, entries.get(run.planned.fingerprint)) for run in runs
        ],
    )


def write_manifest(state: RunState, entries: Mapping[str, LedgerEntry] | None = None) -> Path:
    """`<out>/manifest.json`, written durably; `OutputError` if the disk refuses it (the previous
    manifest, if any, stays whole). Blocking: run it in a thread."""
    return state.destination.write_manifest(manifest_of(state, entries or {}))


async def merge_done(state: RunState) -> tuple[Path, ...]:
    """One merged file per export whose every chunk is done, written when its chunks changed
    since it was made; one report in two formats shares a folder, so each format merges into its
    own file. Returns the files written."""
    by_target: dict[tuple[Path, str], list[ChunkRun]] = {}
    for run in state.runs.values():
        key = (Path(run.planned.path.parent), run.planned.request.result_format)
        by_target.setdefault(key, []).append(run)
    groups = [
        (
            runs[0].planned.request,
            [
                (
                    run.file or state.out / run.planned.path,
                    run.sha256 if run.status == "done" else None,
                )
                for run in runs
            ],
        )
        for runs in by_target.values()
    ]
    return await merge_each(state.destination, groups, state.merged_sources)
