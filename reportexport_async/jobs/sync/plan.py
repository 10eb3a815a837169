"""A sync's plan: every chunk of a dataset judged from the ledger and the files (no call), the
account's day it is judged on, and the history today's quota leaves for the next run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from ...core.chunking import Chunk
from ...core.freshness import ChunkFreshness, Verdict, account_day, judge_fetched, judge_unfetched
from ...core.models import ExportRequest, JobStatus
from ...core.quota import DailyQuota, quota_day_bounds
from ...destinations import FilesDestination, file_is_intact
from ...errors import ConfigurationError
from ...ledger import LedgerEntry
from ..orchestrator import BackfillOptions, ExportSpec, ProgressEvent, files_into
from ..orchestrator.plan import make_plan, plan_default_ranges
from .model import Dataset, SyncClient, SyncOptions

__all__ = [
    "Day",
    "Item",
    "Plan",
    "fetched_at",
    "held_history",
    "plan_dataset",
    "verdict_event",
]


@dataclass
class Item:
    """One chunk (or one default-range export) of a dataset being synced."""

    spec: ExportSpec
    request: ExportRequest
    chunk: Chunk | None  # None: the default range
    key: str
    path: Path
    verdict: Verdict
    entry: LedgerEntry | None


@dataclass
class Plan:
    dataset: Dataset
    today: date
    last_day: date
    items: list[Item]
    destination: FilesDestination

    def of(self, *kinds: ChunkFreshness) -> list[Item]:
        return [item for item in self.items if item.verdict.kind in kinds]


class Day:
    """Which day it is for the account: the client's clock is the server's (its stamps in the
    ledger too)."""

    def __init__(self, client: SyncClient, zone: tzinfo) -> None:
        self.client = client
        self.zone = zone
        #: Every destination the run's plans opened (closed when the run ends).
        self.destinations: list[FilesDestination] = []

    def now(self) -> datetime:
        return self.client.clock.now()

    def today(self) -> date:
        return account_day(self.now(), self.zone)


async def plan_dataset(client: SyncClient, dataset: Dataset, day: Day) -> Plan:
    """Judge every chunk of `dataset` from the ledger and the files: no call."""
    api, ledger = client.api, client.ledger
    today = day.today()
    last_day = today - timedelta(days=1)
    first = dataset.first_day
    if first is not None and first > last_day:
        raise ConfigurationError(
            "first_day",
            f"{first} is in the future: the last complete day of the account is {last_day} (the "
            f"server's day is {today})",
            dataset=dataset.name,
        )
    day_start = quota_day_bounds(day.now(), day.zone)[0]
    items: list[Item] = []
    destination = files_into(dataset.out, dataset.into, schema=dataset.name)
    day.destinations.append(destination)
    if first is None:  # one export per report per account day
        planned = await plan_default_ranges(api, ledger, dataset.specs(), today, destination)
    else:
        options = BackfillOptions(chunk=dataset.chunk, dry_run=True, today=today)
        try:
            planned = await make_plan(
                api, ledger, dataset.specs(), first, last_day, destination, options
            )
        except ConfigurationError as error:  # the planner's `out_dir` is the dataset's `out`
            if error.setting != "out_dir":
                raise
            raise ConfigurationError("out", error.problem, dataset=dataset.name) from None
    for chunk in planned.plan.chunks:
        spec = ExportSpec(chunk.report_id, dict(dataset.filters), dataset.result_format)
        entry = planned.entries.get(chunk.fingerprint)
        path = destination.root / chunk.path
        if chunk.state == "new":
            verdict = judge_unfetched(chunk.chunk, last_day, dataset.policy)
        elif chunk.state == "attach" and first is not None:
            verdict = Verdict("resume", f"job {chunk.job_id} in flight: followed to its end")
        else:
            verdict = await _judge(
                client, entry, path, chunk.chunk, dataset, day, day_start, last_day
            )
        piece = None if first is None else chunk.chunk  # None: the default range
        items.append(Item(spec, chunk.request, piece, chunk.fingerprint, path, verdict, entry))
    return Plan(dataset, today, last_day, items, destination)


async def _judge(
    client: SyncClient,
    entry: LedgerEntry | None,
    path: Path,
    chunk: Chunk,
    dataset: Dataset,
    day: Day,
    day_start: datetime,
    last_day: date,
) -> Verdict:
    """A chunk the ledger may know: unfetched, in flight, or judged by its freshness."""
    if entry is None or entry.job_id is None:
        return judge_unfetched(chunk, last_day, dataset.policy)
    intact = entry.status is JobStatus.COMPLETED and await file_is_intact(entry, path)
    if not intact:
        return Verdict("resume", f"job {entry.job_id}: its result is not on disk yet")
    fetched = fetched_at(entry)
    assert fetched is not None  # a completed entry
    replays = await client.ledger.replays_since(entry.fingerprint, day_start)
    return judge_fetched(
        chunk,
        fetched_at=fetched,
        replayed_today=replays > 0,
        now=day.now(),
        zone=day.zone,
        last_day=last_day,
        policy=dataset.policy,
    )


def fetched_at(entry: LedgerEntry) -> datetime | None:
    """When the chunk's data was made, on the server's clock: its job's completion as the server
    reported it, else (never seen completed) its download or intent (the ledger's stamps)."""
    return entry.completed_at or entry.downloaded_at or entry.created_at


def verdict_event(item: Item) -> ProgressEvent:
    return ProgressEvent(
        "sync",
        status=item.verdict.kind,
        report_id=item.spec.report_id,
        chunk=None if item.chunk is None else str(item.chunk),
        job_id=None if item.entry is None else item.entry.job_id,
        message=item.verdict.reason,
        until=item.verdict.until,
    )


def held_history(
    plans: Sequence[Plan], daily: DailyQuota | None, options: SyncOptions
) -> list[set[str]]:
    """Each plan's history that today's quota cannot serve once every dataset's new days are
    submitted (each dataset runs in turn, so its history would go before the next one's new
    days): left pending for the next run. Nothing is held with one dataset (its run submits
    its new days first), without a daily limit, or when the run waits for the quota."""
    if daily is None or len(plans) < 2 or options.wait_for_quota:
        return [set() for _ in plans]
    budget = daily.remaining - sum(len(plan.of("new")) for plan in plans)
    held = []
    for plan in plans:
        history = plan.of("history")  # in the order the run would submit it
        served = max(0, min(len(history), budget))
        budget -= served
        held.append({item.key for item in history[served:]})
    return held
