"""What a run leaves behind besides the chunk files: `<out>/manifest.json`, one line per chunk
with its outcome, and with `merge` one file per export and format, its chunks in date order."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio

from ..errors import OutputError
from ..files import atomic_write, part_of
from ..merge import merge_files
from .model import ChunkRun
from .state import RunState

__all__ = ["merge_done", "write_manifest"]


def write_manifest(state: RunState) -> Path:
    """`<out>/manifest.json`, written durably; `OutputError` if the disk refuses it (the previous
    manifest, if any, stays whole). Blocking: run it in a thread."""
    path = state.out / "manifest.json"
    counts = Counter(run.status for run in state.runs.values())
    document = {
        "generated_at": state.api.clock.now().isoformat(),
        "account_type": state.api.config.account_type.value,
        "stopped": None if state.stopped is None else str(state.stopped),
        "counts": dict(counts),
        "calls": state.calls(),
        "chunks": [run.to_manifest(state.out) for run in state.runs.values()],
    }
    body = (json.dumps(document, indent=2) + "\n").encode()
    try:
        state.out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: handle.write(body))
    except OSError as exc:
        part_of(path).unlink(missing_ok=True)
        raise OutputError(path, exc) from exc
    return path


async def merge_done(state: RunState) -> tuple[Path, ...]:
    """One merged file per export whose every chunk is done; one report in two formats shares a
    folder, so each format merges into its own file."""
    merged: list[Path] = []
    by_target: dict[tuple[Path, str], list[ChunkRun]] = {}
    for run in state.runs.values():
        key = (Path(run.planned.path.parent), run.planned.request.result_format)
        by_target.setdefault(key, []).append(run)
    for (folder, fmt), runs in by_target.items():
        if not all(run.status == "done" for run in runs):
            continue
        runs.sort(key=lambda run: run.planned.chunk.start)
        target = state.out / f"{folder}.{fmt.lower()}"
        files = [state.out / run.planned.path for run in runs]
        try:
            await anyio.to_thread.run_sync(merge_files, files, target, fmt)
        except OSError as exc:
            raise OutputError(target, exc) from exc
        merged.append(target)
    return tuple(merged)
