"""The orchestrator: quota-aware date-range backfills and concurrent multi-report pulls. Most
applications use it through `Client.backfill`; `backfill` here is the engine it runs.

Step by step, each in the module named after it:

1. `plan`: everything is checked before any call (dates, the chunk rule, filters, the output
   folder; new report ids against the account's catalog, its one call); every export x chunk
   gets its fingerprint, and the ledger says whether it is done (file intact: no call), known
   (re-attach to its job: no submit) or new (one submit).
2. `submit`: new chunks are submitted while today's ReportExport quota lasts; the rest is
   reported pending with the time the quota resets (or, with `wait_for_quota`, waited for).
3. `track`: one tracker refreshes every job in flight with one `GET /Jobs` listing call per
   tick, the tick stretched to what the hourly bucket affords; postbacks wake it early.
4. `recover`: FAILED/CANCELLED jobs are replayed through the replay guard; a replay not allowed
   yet leaves the chunk `deferred`; a job the server forgot is submitted again.
5. `download`: results stream to `<out>/<report>/<start>_<end>.<ext>`, recorded in the ledger.
6. `results`: a manifest of every chunk's outcome; with `merge`, one file per export.

`state` holds what these parts share. Every task lives in one task group; one chunk's failure
never stops the others. A failure of the whole account does: credentials refused (401/403), the
host unreachable, TLS, or every call failing for longer than `RetryPolicy.outage_limit` stop the
run at once with `AccountUnavailable` (no further chunk is tried or charged; the manifest is
written). Cancellation leaves the ledger consistent (each write is one transaction) and the
folder too (files are published whole; the manifest is written on the way out), and the next run
resumes. Nothing waits in silence: every wait is announced as a `wait` event saying what and
until when.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import date
from pathlib import Path
from typing import Unpack

import anyio

from ...core.models import JobStatus
from ...destinations import FilesDestination, FilesInto, IntoURL, SavedChunk
from ...destinations.into import open_into
from ...errors import LedgerError
from ...ledger import LedgerEntry
from ...ledger.store import LedgerStore
from ...transport.api import ReportExportClient
from ...transport.postbacks import PostbackReceiver
from .download import Downloading, fill_unknown_rows
from .lease import Watching
from .model import (
    FINAL_CHUNK_STATUSES,
    BackfillChanges,
    BackfillOptions,
    BackfillResult,
    ChunkRun,
    ChunkStatus,
    ExportSpec,
    ProgressEvent,
)
from .plan import Planned, describe, log, make_plan
from .recover import Recovery
from .results import merge_done, write_manifest
from .state import RunState
from .submit import Submitting
from .track import Tracking

__all__ = [
    "FINAL_CHUNK_STATUSES",
    "BackfillChanges",
    "BackfillOptions",
    "BackfillResult",
    "ChunkRun",
    "ChunkStatus",
    "ExportSpec",
    "ProgressEvent",
    "backfill",
    "files_into",
    "run_planned",
    "whole_chunks",
]


def as_specs(exports: str | ExportSpec | Sequence[str | ExportSpec]) -> list[ExportSpec]:
    """A report id, a spec, or a list of either, as specs."""
    if isinstance(exports, str | ExportSpec):
        exports = [exports]
    return [ExportSpec(e) if isinstance(e, str) else e for e in exports]


async def backfill(
    client: ReportExportClient,
    ledger: LedgerStore,
    exports: str | ExportSpec | Sequence[str | ExportSpec],
    start: date,
    end: date,
    *,
    out_dir: str | Path,
    options: BackfillOptions | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    postbacks: PostbackReceiver | None = None,
    manifest: bool = True,
    into: str | IntoURL | None = None,
    **changes: Unpack[BackfillChanges],
) -> BackfillResult:
    """Pull `exports` over `[start, end]` into `out_dir`, as `options` (and keyword `changes`
    to them) say. See the module docstring; `Client.backfill` is the same with the client's own
    ledger.

    A report id the server has never accepted (no job of it in the ledger) is looked up in the
    account's catalog first (one `GET /Reports` a day at most, no ReportExport quota; see
    `reportexport_async.jobs.catalog`): an unknown or not API-accessible id is refused with
    `UnknownReport` before any ReportExport call. Such a report is also probed: one chunk is
    submitted alone, and its other chunks follow only once it is accepted, so an id the catalog
    could not vouch for (or `check_reports=False`) costs one call, never one per chunk.

    `chunk="auto"` picks each export's span from the rows per day its completed jobs showed,
    and records the chunks it chose in the ledger (per account and export) before the first
    submit; a dry run shows the same plan and records nothing. A later run keeps every recorded
    chunk that lies wholly inside its range and chunks only the days left uncovered afresh. A
    recorded chunk only partly inside the range is not used: its days inside it are chunked
    afresh.

    Chunks the quota cannot serve today end `pending`; chunks whose replay the guide does not
    allow yet end `deferred`. An account-wide failure raises `AccountUnavailable` once the
    manifest is written; its `result` is this run's outcome.

    `manifest=False` leaves the folder's manifest to the caller (`sync` writes one per run, with
    its own fields, from this run's outcome).

    `into` (`duckdb:///PATH`, `parquet:///PATH`) also loads every whole chunk into a typed
    destination beside the files (schema `main`), and brings it to equal the files (a chunk an
    earlier run did not load is loaded now); a failed load raises `LoadError` once the run is
    over (its `result` is the run's outcome; the files and the ledger are whole)."""
    api = client  # the raw calls: the product `Client` passes its `api` here
    options = (options or BackfillOptions()).but(**changes)
    destination = files_into(out_dir, into)
    calls_before = Counter(api.usage.calls)
    try:
        planned = await make_plan(api, ledger, as_specs(exports), start, end, destination, options)
        result = await run_planned(
            api, ledger, planned, destination, options, on_event=on_event, postbacks=postbacks,
            manifest=manifest, calls_before=calls_before,
        )  # fmt: skip
    finally:
        with anyio.CancelScope(shield=True):
            await destination.aclose()
    if result.load_error is not None:
        result.load_error.result = result
        raise result.load_error
    return result


def files_into(
    out_dir: str | Path, into: str | IntoURL | None, *, schema: str = "main"
) -> FilesDestination:
    """The files in `out_dir`, and with `into` a typed destination loaded from them in `schema`
    (`ConfigurationError` naming `into` for a bad URL or a missing extra: before any call)."""
    if into is None:
        return FilesDestination(out_dir)
    return FilesInto(out_dir, open_into(into), schema=schema)


async def run_planned(
    api: ReportExportClient,
    ledger: LedgerStore,
    planned: Planned,
    destination: FilesDestination,
    options: BackfillOptions,
    *,
    on_event: Callable[[ProgressEvent], None] | None = None,
    postbacks: PostbackReceiver | None = None,
    manifest: bool = True,
    refresh: Collection[str] = (),
    first: Collection[str] = (),
    hold: Collection[str] = (),
    calls_before: Counter[str] | None = None,
) -> BackfillResult:
    """Run a plan (a backfill's, or a planner's: `sync`) to its end: the one execution path of
    every chunk. A planner hands its verdicts over as fingerprints: `first` are submitted
    before the other new chunks (new days before history, while the quota lasts); `refresh`
    are done chunks whose own job is replayed through the replay guard
    (`options.replay_policy`, fresh data), then tracked and downloaded in this run like every
    other job; `hold` are new chunks left to a later run (today's quota is promised to other
    work): they end `pending` until the quota's reset. `calls_before`: the client's counts
    when the run began (its planning's calls are the run's too)."""
    plan = planned.plan
    state = RunState(
        api, ledger, plan, destination, options, on_event, postbacks_on=postbacks is not None
    )
    if calls_before is not None:
        state.calls_before = calls_before  # the plan's catalog call is the run's too
    # A download recorded after the plan read the entry is another worker's.
    state.known_downloads = {key: e.downloaded_at for key, e in planned.entries.items()}
    for key, run in state.runs.items():
        entry = planned.entries.get(key)
        if run.status == "done" and entry is not None:  # done before: the ledger's record
            run.records, run.size, run.sha256 = entry.records, entry.file_size, entry.file_sha256
    for spec in planned.duplicates:
        message = f"{describe(spec)} is given more than once: pulled once"
        log.info("%s", message)
        state.emit(ProgressEvent("duplicate", report_id=spec.report_id, message=message))
    state.emit(ProgressEvent("plan", message=f"{plan.cost}", plan=plan))
    if state.callback_error is not None:
        raise state.callback_error
    if options.dry_run:
        return BackfillResult(plan, tuple(state.runs.values()), None, True, None, state.calls())
    submitting = Submitting(state, set(planned.unproven))
    recovery = Recovery(state, submitting)
    tracking = Tracking(state, recovery)
    downloading = Downloading(state, recovery)
    watching = Watching(state, submitting)
    merged: tuple[Path, ...] = ()
    manifest_path: Path | None = None
    unsubscribe: Callable[[], None] | None = None
    if postbacks is not None:  # one receiver may serve any number of runs at once
        unsubscribe = postbacks.subscribe(tracking.on_postback)
    try:
        if planned.stopped is not None:
            state.account_wide(planned.stopped)  # nothing is tried; the manifest says why
        else:
            refreshes = [state.runs[key] for key in refresh if key in state.runs]
            await _hold(state, hold)
            await _run(
                state, submitting, tracking, downloading, watching, recovery, refreshes, first
            )
            await fill_unknown_rows(state)
            if manifest and not options.dry_run:  # (a sync brings its datasets up itself)
                await state.load(whole_chunks(state), reconcile=True)
            if options.merge:
                merged = await merge_done(state)
    finally:
        if unsubscribe is not None:
            unsubscribe()
        if manifest:
            with anyio.CancelScope(shield=True):
                entries = await _recorded(state)
                manifest_path = await anyio.to_thread.run_sync(write_manifest, state, entries)
    runs = state.runs.values()
    resets = [run.resets_at for run in runs if run.status == "pending" and run.resets_at]
    later = [run.resets_at for run in runs if run.status == "deferred" and run.resets_at]
    result = BackfillResult(
        plan,
        tuple(runs),
        manifest_path,
        False,
        min(resets, default=None),
        state.calls(),
        merged,
        tuple(state.postback_latency),
        deferred_until=min(later, default=None),
        stopped=state.stopped,
        load_error=state.load_error,
        load_failed=frozenset(state.load_failed),
    )
    if state.callback_error is not None:
        raise state.callback_error
    if state.stopped is not None:
        state.stopped.result = result
        raise state.stopped
    return result


def whole_chunks(state: RunState) -> list[SavedChunk]:
    """The run's done chunks (this run's and earlier ones') as saved, for a destination beside
    the files to be brought up to them."""
    whole = []
    for run in state.runs.values():
        if run.status == "done" and run.sha256 is not None:
            if run.planned.fingerprint in state.load_failed:
                continue  # refused once in this run already: the next run tries again
            planned = run.planned
            path = run.file or state.out / planned.path
            saved = SavedChunk(
                planned.fingerprint, planned.request, planned.chunk, path, run.sha256, run.job_id
            )
            whole.append(saved)
    return whole


async def _hold(state: RunState, hold: Collection[str]) -> None:
    """New chunks the planner leaves to a later run: `pending` until the quota's reset."""
    held = [run for key, run in state.runs.items() if key in hold and run.status == "planned"]
    if not held:
        return
    daily = await state.api.limiter.daily("ReportExport")  # the ledger's count: no call
    resets_at = None if daily is None else daily.resets_at.astimezone(state.api.limiter.timezone)
    for run in held:
        run.resets_at = resets_at
        state.set_status(run, "pending", "left for the next run: today's quota serves new days")


async def _recorded(state: RunState) -> dict[str, LedgerEntry]:
    """The ledger's records of the run's done chunks, for the manifest (none when the ledger
    cannot be read now: the manifest is written all the same)."""
    keys = [key for key, run in state.runs.items() if run.status == "done"]
    try:
        return await state.ledger.get_many(keys) if keys else {}
    except Exception as error:  # the manifest matters more than its times
        log.warning("the manifest goes without the ledger's times: %s", error)
        return {}


async def _run(
    state: RunState,
    submitting: Submitting,
    tracking: Tracking,
    downloading: Downloading,
    watching: Watching,
    recovery: Recovery,
    refreshes: Sequence[ChunkRun] = (),
    first: Collection[str] = (),
) -> None:
    """Re-attach to the known jobs, replay the chunks to refresh, then submit (`first` before
    the rest), track and download in one task group. A known job whose lease another live
    worker holds is watched instead (`lease`); every lease this run still holds is given back
    at its end, whatever ends it."""
    new = [state.runs[p.fingerprint] for p in state.plan.by_state("new")]
    new = [run for run in new if run.status == "planned"]  # not the held ones
    # `first` at the front (stable: plan order kept), so that the probe is one of them.
    new.sort(key=lambda run: run.planned.fingerprint not in first)
    limiter = state.api.limiter
    limiter.add_listener(state.on_limiter_wait)
    try:
        for planned in state.plan.by_state("attach"):
            run = state.runs[planned.fingerprint]
            entry, mine = await state.ledger.take_lease(planned.fingerprint)
            if not mine:
                state.watch(run)
                continue
            run.submitted_at = None if entry is None else (entry.submitted_at or entry.created_at)
            run.created_at = None if entry is None else entry.created_at
            if entry is not None and entry.status is JobStatus.COMPLETED:
                await state.queue_download(run)  # known complete: the file is what is missing
            else:
                state.track(run, "running")
        for run in refreshes:  # replays spend no ReportExport quota
            if state.stopped is None and run.status == "done":
                await recovery.refresh(run)
        async with anyio.create_task_group() as group:
            state.scope = group.cancel_scope
            watch_scope = anyio.CancelScope()

            async def watch() -> None:
                with watch_scope:
                    async with anyio.create_task_group() as watchers:
                        watchers.start_soon(watching.keep_through_waits)
                        watchers.start_soon(watching.run)

            async def track() -> None:
                try:
                    await tracking.run()
                finally:
                    watch_scope.cancel()  # the run is over: nothing left to watch

            group.start_soon(watch)
            group.start_soon(submitting.all, new, first)
            group.start_soon(track)
            for _ in range(state.options.download_concurrency):
                group.start_soon(downloading.run)
    finally:
        limiter.remove_listener(state.on_limiter_wait)
        with anyio.CancelScope(shield=True):
            try:
                await state.ledger.release_leases()
            except LedgerError as error:  # they run out by themselves
                log.warning("could not give back this run's leases: %s", error)
