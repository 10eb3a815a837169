"""Downloading: a few downloaders take completed chunks from the tracker's queue and stream each
result to `<out>/<report>/<start>_<end>.<ext>` (names from the plan, never from the server); the
driver records path, size and sha256 in the ledger once the file is in place, shielded."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from ...core.responses import worth_another_round
from ...destinations import SavedChunk
from ...errors import (
    HTTPStatusError,
    JobFailed,
    JobNotReady,
    NotFound,
    OutputError,
    ReportExportError,
)
from ..driver import download_recorded
from .lease import finished_elsewhere, take_result
from .model import ROUNDS, ChunkRun
from .recover import Recovery
from .state import RunState

__all__ = ["Downloading", "count_lines", "fill_unknown_rows"]


class Downloading:
    def __init__(self, state: RunState, recovery: Recovery) -> None:
        self.state = state
        self.recovery = recovery
        self.folders: set[Path] = set()  # made (or found) by this run: not made again per chunk

    async def run(self) -> None:
        state = self.state
        async with state.receive.clone() as receive:
            async for run in receive:
                try:
                    await self.download(run)
                finally:
                    state.downloads_waiting -= 1
                    state.poke()

    async def download(self, run: ChunkRun) -> None:
        state = self.state
        assert run.job_id is not None
        dest = state.out / run.planned.path
        if state.disk_full is not None:  # no call spent on a download that cannot be written
            state.set_status(run, "failed", f"not downloaded: {state.disk_full}")
            return
        await state.keep_leases()
        # Still this worker's? A worker that was paused past its lease may find the chunk
        # taken over, or already done by the worker that took it.
        entry, mine = await state.ledger.take_lease(run.planned.fingerprint)
        if entry is not None and finished_elsewhere(state, entry):
            if mine:
                await state.ledger.release_lease(run.planned.fingerprint)
            take_result(state, run, entry)
            return
        if not mine:
            state.watch(run)
            return
        probe, run.probe = run.probe, None
        if probe is not None:
            state.postback_latency.append(time.monotonic() - probe.arrived)
        while True:
            failure: ReportExportError
            try:
                if dest.parent not in self.folders:
                    try:
                        await anyio.to_thread.run_sync(
                            lambda: dest.parent.mkdir(parents=True, exist_ok=True)
                        )
                    except OSError as exc:
                        raise OutputError(dest.parent, exc) from exc
                    self.folders.add(dest.parent)
                result = await download_recorded(
                    state.api,
                    state.ledger,
                    run.planned.fingerprint,
                    run.job_id,
                    dest,
                    wait=probe is None,
                )
                break
            except JobNotReady:
                # An early or forged postback: one call spent, nothing recorded; keep tracking.
                state.in_flight[run.job_id] = run
                state.set_status(run, "running")
                return
            except JobFailed as failed:
                await self.recovery.after_failure(run, failed.job)
                return
            except HTTPStatusError as error:
                if isinstance(error, NotFound) or error.status == 410:
                    await self.recovery.result_gone(run, run.job_id)
                    return
                failure = error
            except ReportExportError as error:
                failure = error
            if state.account_wide(failure):
                return
            if isinstance(failure, OutputError) and failure.disk_full:
                state.disk_full = failure
            elif worth_another_round(failure) and run.download_rounds < ROUNDS:
                if not await state.another_round(run, "download", failure, run.download_rounds):
                    return
                run.download_rounds += 1
                if state.disk_full is None:
                    continue
            state.set_status(run, "failed", f"download failed: {failure}")
            return
        run.size = result.size
        run.sha256 = result.sha256
        # Published and recorded: a destination beside the files loads the chunk now.
        planned = run.planned
        saved = SavedChunk(
            planned.fingerprint, planned.request, planned.chunk, result.path, result.sha256,
            run.job_id,
        )  # fmt: skip
        await state.load([saved])
        state.set_status(run, "done")


async def fill_unknown_rows(state: RunState) -> None:
    """After the run: the rows of each done chunk that no status of this run gave (tracked by a
    postback alone, or re-attached without a status): the ledger's record of an earlier status,
    else (CSV) the file's lines less its header. Counted here, once the downloads are over, not in
    the downloads' hash threads: counting every download while hashing cost about as much as its
    sha256."""
    for run in state.runs.values():
        if run.status != "done" or run.records is not None:
            continue
        entry = await state.ledger.get(run.planned.fingerprint)
        if entry is not None and entry.records is not None:
            run.records = entry.records
        elif run.planned.request.result_format == "CSV":
            try:
                lines = await anyio.to_thread.run_sync(count_lines, state.out / run.planned.path)
            except OSError:
                continue
            run.records = max(0, lines - 1)


def count_lines(path: Path) -> int:
    """Blocking: the lines of a text file (its newlines, one more for a last line without)."""
    lines, last = 0, b""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (1 if last and last != b"\n" else 0)
