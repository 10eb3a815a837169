"""What a sync run leaves: each chunk's outcome as the ledger holds it, the merged file per report
and the dataset's one manifest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import anyio

from ...core.freshness import account_day
from ...core.models import JobStatus
from ...destinations import Manifest, file_is_intact, merge_each
from ...errors import AccountUnavailable
from ..orchestrator import BackfillResult
from .model import DatasetResult, SyncChunk, SyncClient, SyncOptions
from .plan import Day, Item, Plan, fetched_at

__all__ = ["finish_dataset"]


async def finish_dataset(
    client: SyncClient,
    plan: Plan,
    day: Day,
    results: Mapping[str, BackfillResult],
    options: SyncOptions,
    calls: Mapping[str, int],
    stopped: AccountUnavailable | None = None,
) -> DatasetResult:
    """What each chunk holds now (from the ledger), the merged files and the run's one manifest
    (a run stopped by an account-wide failure writes it too, with `stopped`, and merges
    nothing)."""
    dataset = plan.dataset
    chunks: list[SyncChunk] = []
    pending: list[datetime] = []
    later: list[datetime] = []
    for item in plan.items:
        entry = await client.ledger.get(item.key)
        outcome = "planned"  # a dry run's, or left alone (below)
        until = item.verdict.until
        run = None
        result = results.get(item.key)
        if result is not None:
            run = next(r for r in result.chunks if r.planned.fingerprint == item.key)
            outcome = run.status
            if run.status == "pending" and run.resets_at:
                pending.append(run.resets_at)
                until = run.resets_at
            elif run.status == "deferred" and run.resets_at:
                later.append(run.resets_at)
                until = run.resets_at
        elif not options.dry_run:
            outcome = "deferred" if item.verdict.kind == "deferred" else "done"
        if item.verdict.kind == "deferred" and item.verdict.until is not None:
            later.append(item.verdict.until)
        # Chunks judged whole and left alone (a backfill skips them too): checked when judged.
        untouched = item.verdict.kind in ("final", "fresh", "deferred")
        intact = (
            entry is not None
            and entry.status is JobStatus.COMPLETED
            and (untouched or await file_is_intact(entry, item.path))
        )
        if not options.dry_run and outcome == "done" and not intact:
            outcome = "failed"
        fetched = None if entry is None else fetched_at(entry)
        final = bool(
            intact
            and item.chunk is not None
            and fetched is not None
            and (account_day(fetched, day.zone) - item.chunk.end).days > dataset.settle_days
        )
        reason = run.error if run is not None and run.error else None
        chunks.append(
            SyncChunk(
                report_id=item.spec.report_id,
                start=None if item.chunk is None else item.chunk.start,
                end=None if item.chunk is None else item.chunk.end,
                fingerprint=item.key,
                kind=item.verdict.kind,
                outcome=outcome,
                reason=reason or item.verdict.reason,
                path=item.path,
                until=until,
                job_id=None if entry is None else entry.job_id,
                fetched_at=fetched if intact else None,
                downloaded_at=None if entry is None or not intact else entry.downloaded_at,
                rows=None if entry is None or not intact else entry.records,
                size=None if entry is None or not intact else entry.file_size,
                sha256=None if entry is None or not intact else entry.file_sha256,
                final=final,
            )
        )
    if options.dry_run:
        return DatasetResult(dataset, plan.today, plan.last_day, tuple(chunks), True)
    sources = dict(plan.destination.previous_merged())
    merged = await _merge(plan, chunks, sources) if dataset.merge and stopped is None else ()
    document = _manifest(plan, chunks, client, sources, calls, stopped)
    manifest = await anyio.to_thread.run_sync(plan.destination.write_manifest, document)
    return DatasetResult(
        dataset,
        plan.today,
        plan.last_day,
        tuple(chunks),
        False,
        merged,
        manifest,
        min(pending, default=None),
        min(later, default=None),
    )


async def _merge(
    plan: Plan, chunks: Sequence[SyncChunk], sources: dict[str, str]
) -> tuple[Path, ...]:
    """`<out>/<report>.<ext>` from every chunk of the report, in date order, when every chunk's
    file is whole; the destination writes it only when its chunks changed since it was made
    (their digest, kept in the manifest as `merged`, so a run that stopped before merging is
    made good by the next). `sources` gets each merged file's digest. Returns the files written."""
    by_report: dict[str, list[tuple[Item, SyncChunk]]] = {}
    for item, chunk in zip(plan.items, chunks, strict=True):
        by_report.setdefault(item.spec.report_id, []).append((item, chunk))
    groups = [
        (pairs[0][0].request, [(item.path, chunk.sha256) for item, chunk in pairs])
        for pairs in by_report.values()
    ]
    return await merge_each(plan.destination, groups, sources)


def _manifest(
    plan: Plan,
    chunks: Sequence[SyncChunk],
    client: SyncClient,
    sources: Mapping[str, str],
    calls: Mapping[str, int],
    stopped: AccountUnavailable | None,
) -> Manifest:
    """The run's manifest of this dataset: the one schema, with the sync's fields."""
    dataset = plan.dataset
    filters = {key: str(value) for key, value in dataset.filters.items()}
    return Manifest(
        run="sync",
        generated_at=client.clock.now(),
        account_type=client.config.account_type.value,
        folder=str(plan.destination.root),
        stopped=None if stopped is None else str(stopped),
        counts=dict(Counter(chunk.outcome for chunk in chunks)),
        calls=dict(calls),
        merged=dict(sources),
        dataset=dataset.name,
        account_day=plan.today,
        last_complete_day=plan.last_day,
        settle_days=dataset.settle_days,
        refresh_hour=dataset.refresh_hour,
        server_clock_offset_seconds=round(client.clock.offset, 3),
        verdicts={kind: n for kind, n in Counter(chunk.kind for chunk in chunks).items()},
        chunks=[chunk.to_manifest(plan.destination, filters) for chunk in chunks],
    )
