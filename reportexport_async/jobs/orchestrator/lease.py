"""Leases: several workers (processes, hosts) on one ledger share the chunks of a run. A worker
holds a chunk from its intent to its recorded download, renewing its lease as it works
(`RunState.keep_leases`) and while every task waits for the hourly bucket
(`Watching.keep_through_waits`); a chunk another live worker holds is `elsewhere`, and watched here
through the ledger at no API cost until it is done (its file, its hash) or its lease runs out.
Then this worker takes it over: by the recorded job id (tracked, or downloaded when it is
known complete), or, when no job id was recorded, by submitting (the service's de-duplication
returns the same job for a submit whose answer was lost)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio

from ...core.models import JobStatus
from ...errors import LedgerError
from ...ledger import LedgerEntry, lease_alive
from .model import ChunkRun
from .state import RunState
from .submit import Submitting

__all__ = ["Watching"]

log = logging.getLogger("reportexport_async.jobs.orchestrator")

#: The longest pause between two looks at the watched chunks (seconds, client clock).
WATCH_EVERY = 60.0


def finished_elsewhere(state: RunState, entry: LedgerEntry) -> bool:
    """Another worker recorded the chunk's file since this run's plan read the entry (a file
    recorded before was found missing or damaged by the plan: it is downloaded again)."""
    return (
        entry.status is JobStatus.COMPLETED
        and entry.file_sha256 is not None
        and entry.downloaded_at is not None
        and entry.downloaded_at != state.known_downloads.get(entry.fingerprint)
    )


def take_result(state: RunState, run: ChunkRun, entry: LedgerEntry) -> None:
    """The chunk is done by another worker: its record is this run's outcome."""
    run.job_id = entry.job_id
    run.records, run.size, run.sha256 = entry.records, entry.file_size, entry.file_sha256
    if entry.file_path is not None and Path(entry.file_path) != state.out / run.planned.path:
        run.file = Path(entry.file_path)  # the manifest says where it is
    state.set_status(run, "done")


class Watching:
    def __init__(self, state: RunState, submitting: Submitting) -> None:
        self.state = state
        self.submitting = submitting

    @property
    def pause(self) -> float:
        return min(WATCH_EVERY, self.state.ledger.lease.total_seconds() / 4)

    async def run(self) -> None:
        """Look at the watched chunks every `pause` until none is left (the caller cancels this
        when the whole run is over)."""
        state = self.state
        account = state.api.config.account_key
        while True:
            if not state.watched:
                await state.watch_added.wait()
                state.watch_added = type(state.watch_added)()
                continue
            await state.api.clock.sleep(self.pause)
            await state.keep_leases()
            # One read per report for every watched chunk (this account's rows only: a ledger
            # may serve thousands of accounts); a write only for a chunk that is done or free.
            now = state.api.clock.now()
            for report_id in sorted({run.planned.report_id for run in state.watched.values()}):
                for seen in await state.ledger.entries(report_id=report_id, account=account):
                    run = state.watched.get(seen.fingerprint)
                    if run is not None and (
                        finished_elsewhere(state, seen)
                        or not lease_alive(seen, state.ledger.owner, now, state.ledger.lease)
                    ):
                        await self.look(run)
            state.poke()

    async def keep_through_waits(self) -> None:
        """Renew this worker's leases while the limiter holds the run's tasks for the hourly
        bucket (up to an hour): no submit, tick or download renews them then, and a worker that
        waits is alive; another one must not take its chunks and download them again. Sleeps
        only while such a wait lasts (the caller cancels this when the whole run is over)."""
        state = self.state
        clock = state.api.clock
        while True:
            await state.long_wait.wait()
            state.long_wait = anyio.Event()
            while state.waiting_until is not None:
                left = (state.waiting_until - clock.now()).total_seconds()
                if left <= 0:
                    state.waiting_until = None
                    break
                await clock.sleep(min(left, state.ledger.lease.total_seconds() / 3))
                try:
                    await state.keep_leases()
                except LedgerError as error:  # tried again a third of a lease later
                    log.warning("could not renew this run's leases: %s", error)

    async def look(self, run: ChunkRun) -> None:
        state = self.state
        key = run.planned.fingerprint
        entry, mine = await state.ledger.take_lease(key)
        if entry is None:
            return
        if finished_elsewhere(state, entry):
            if mine:
                await state.ledger.release_lease(key)
            del state.watched[key]
            take_result(state, run, entry)
            return
        if not mine:
            return  # its worker lives and renews: look again later
        del state.watched[key]
        if entry.job_id is None:  # the worker died before its submit was recorded
            await self.submitting.again(run)
            return
        run.job_id = entry.job_id
        run.submitted_at = entry.submitted_at or entry.created_at
        run.created_at = entry.created_at
        if entry.status is JobStatus.COMPLETED:
            await state.queue_download(run)
        else:
            state.track(run, "running")
