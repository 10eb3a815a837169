"""Keeping datasets current, one run a day: `sync(client, datasets)` (and `Client.sync`).

    async with Client.from_env(ledger="ledger.sqlite") as client:
        dataset = Dataset("actions", ("mp_action_listing_fast",), out=Path("data"),
                          first_day=date(2025, 1, 1), merge=True)
        result = await client.sync(dataset)

A `Dataset` is reports from a first day to the last complete day, in chunks, in one output folder.
Each run, with the rules of `core.freshness`:

1. which day it is comes from the server's clock (`client.clock`, the `Date` of its answers, in
   the account's time zone); a run that is not a dry run asks the server first, with one call
   that spends no quota, when no answer of the last few minutes says it;
2. every chunk is judged: never fetched (`new` for the latest days, `history` before them), in
   flight from an earlier run (`resume`), `refresh` (its own job is replayed through the replay
   guard, at most once a day; never a new submit with the same parameters), `deferred` (the
   latest day waits for the refresh hour), `fresh` (fetched today) or `final` (fetched after its
   days had settled: it costs nothing ever again);
3. the plan is handed to the orchestrator, whose one run per dataset does every call
   (`orchestrator.run_planned`): what today's quota cannot serve is history, so new days are
   submitted first (those of every dataset before any history), refreshes are replays (they
   spend no ReportExport quota), then history. What does not fit stays `pending` for the next
   run (nothing is lost: the ledger remembers every job). `sync` reads the ledger, never
   writes it;
4. the merged file per report (`merge`) is replaced atomically, and `<out>/manifest.json` records
   each chunk's fetch time, job id, rows, sha256 and whether it is final.

A dataset without `first_day` is the report's default date range: one job per calendar day of the
account (the guide's rule 5, docs/guide.md), refreshed once later in the day when fetched before
the refresh hour.

`sync` is a function of (client, datasets) returning a `SyncResult`, so a caller with several
accounts runs it once per account's client.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .catalog import check_reports
from .core.chunking import Chunk, parse_chunk_rule
from .core.freshness import (
    DEFAULT_REFRESH_HOUR,
    DEFAULT_SETTLE_DAYS,
    ChunkFreshness,
    FreshnessPolicy,
    Verdict,
    account_day,
    judge_fetched,
    judge_unfetched,
)
from .core.models import ExportRequest, JobStatus, checked
from .core.quota import DailyQuota, quota_day_bounds
from .core.replay import ReplayPolicy
from .core.responses import account_problem
from .destinations import (
    FilesDestination,
    IntoURL,
    Manifest,
    ManifestChunk,
    SavedChunk,
    file_is_intact,
    merge_each,
    parse_into,
)
from .errors import (
    AccountUnavailable,
    ConfigurationError,
    LoadError,
    ReportExportError,
)
from .ledger import LedgerEntry
from .orchestrator import (
    BackfillOptions,
    BackfillResult,
    ExportSpec,
    ProgressEvent,
    files_into,
    run_planned,
)
from .orchestrator.plan import make_plan, plan_default_ranges
from .orchestrator.state import load_chunks

if TYPE_CHECKING:  # pragma: no cover
    from .api import ReportExportClient
    from .client import Client
    from .postbacks import PostbackReceiver

__all__ = ["Dataset", "DatasetResult", "SyncChunk", "SyncOptions", "SyncResult", "sync"]

log = logging.getLogger("reportexport_async.sync")

#: The chunk verdicts a summary counts, and the outcomes of a run.
KINDS: tuple[ChunkFreshness, ...] = (
    "new",
    "history",
    "resume",
    "refresh",
    "deferred",
    "fresh",
    "final",
)


@dataclass(frozen=True)
class Dataset:
    """One dataset kept current: `reports` (same filters and format) from `first_day` (None: the
    reports' default date range) to the last complete day, in `chunk`s (`Nd`, `week` or
    `month`), in the folder `out`. `settle_days`: how long a day's data keeps changing;
    `refresh_hour`: the hour of the account's day from which the latest day is refreshed;
    `merge`: also keep `<out>/<report>.<ext>` whole. `into` (`duckdb:///PATH`,
    `parquet:///PATH`, relative to the working folder): also load every chunk into a typed
    destination beside the files, in a schema named after the dataset."""

    name: str
    reports: tuple[str, ...]
    out: Path
    first_day: date | None = None
    chunk: str = "1d"
    result_format: str = "CSV"
    filters: Mapping[str, str] = field(default_factory=dict)
    merge: bool = False
    settle_days: int = DEFAULT_SETTLE_DAYS
    refresh_hour: int = DEFAULT_REFRESH_HOUR
    into: str | IntoURL | None = None

    def __post_init__(self) -> None:
        def bad(setting: str, problem: str) -> ConfigurationError:
            return ConfigurationError(setting, problem, dataset=self.name)

        if isinstance(self.into, str):  # its path judged now, from the working folder
            try:
                object.__setattr__(self, "into", parse_into(self.into))
            except ConfigurationError as error:
                raise bad("into", error.problem) from None

        if isinstance(self.reports, str):
            object.__setattr__(self, "reports", (self.reports,))
        object.__setattr__(self, "reports", tuple(self.reports))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "result_format", str(self.result_format).upper())
        if not self.reports or not all(isinstance(r, str) and r for r in self.reports):
            raise bad("reports", "give at least one report id")
        if self.first_day is not None and (
            not isinstance(self.first_day, date) or isinstance(self.first_day, datetime)
        ):
            raise bad("first_day", f"must be a date such as 2025-01-31, got {self.first_day!r}")
        try:
            rule = parse_chunk_rule(self.chunk)
        except ValueError as exc:
            raise bad("chunk", str(exc)) from None
        if rule.kind == "auto":
            raise bad(
                "chunk",
                "'auto' changes its chunks as rows are learned, which would export settled days "
                "again; use Nd (e.g. 1d, 7d), week or month",
            )
        if not isinstance(self.settle_days, int) or self.settle_days < 0:
            raise bad(
                "settle_days", f"the settle window must be 0 days or more, got {self.settle_days!r}"
            )
        if not isinstance(self.refresh_hour, int) or not 0 <= self.refresh_hour <= 23:
            raise bad("refresh_hour", f"must be an hour from 0 to 23, got {self.refresh_hour!r}")
        day = Chunk(date(2000, 1, 1), date(2000, 1, 1))
        for spec in self.specs():  # the request is valid (format, filters) before any call
            # The request's field as the dataset names it (its report ids are `reports`).
            rename = {"report_id": "reports", "": "dataset"}
            checked(partial(spec.request, day), rename=rename, dataset=self.name)

    @property
    def policy(self) -> FreshnessPolicy:
        return FreshnessPolicy(self.settle_days, self.refresh_hour)

    def specs(self) -> list[ExportSpec]:
        return [ExportSpec(r, dict(self.filters), self.result_format) for r in self.reports]


@dataclass(frozen=True)
class SyncOptions:
    """`dry_run`: the plan and its cost by kind, no call. `wait_for_quota`: wait for the daily
    quota's reset instead of leaving chunks pending. `concurrency`: submits and downloads at a
    time. `check_reports`: look report ids never accepted before up in the account's catalog
    before any call that spends (one call, no quota; False: the server judges them)."""

    dry_run: bool = False
    wait_for_quota: bool = False
    concurrency: int = 4
    check_reports: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency", "must be at least 1")


@dataclass(frozen=True)
class SyncChunk:
    """One chunk after a run: the verdict (`kind`) and its `outcome` (`done`, `pending`,
    `failed`, `deferred`, `stuck`, or `planned` in a dry run), what the ledger holds of it."""

    report_id: str
    start: date | None
    end: date | None
    fingerprint: str
    kind: ChunkFreshness
    outcome: str
    reason: str
    path: Path
    until: datetime | None = None
    job_id: str | None = None
    #: When its data was made (its job's completion, on the server's clock) and downloaded.
    fetched_at: datetime | None = None
    downloaded_at: datetime | None = None
    rows: int | None = None
    size: int | None = None
    sha256: str | None = None
    final: bool = False

    def to_manifest(
        self, destination: FilesDestination, filters: Mapping[str, str]
    ) -> ManifestChunk:
        return ManifestChunk(
            report=self.report_id,
            filters=dict(filters),
            start=self.start,
            end=self.end,
            fingerprint=self.fingerprint,
            kind=self.kind,
            status=self.outcome,
            error=self.reason,
            until=self.until,
            job_id=self.job_id,
            fetched_at=self.fetched_at,
            downloaded_at=self.downloaded_at,
            rows=self.rows,
            bytes=self.size,
            sha256=self.sha256,
            final=self.final,
            path=destination.relative(self.path),
        )


@dataclass(frozen=True)
class DatasetResult:
    dataset: Dataset
    today: date
    last_day: date
    chunks: tuple[SyncChunk, ...]
    dry_run: bool
    merged: tuple[Path, ...] = ()
    manifest_path: Path | None = None
    pending_resets_at: datetime | None = None
    deferred_until: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Chunks by verdict (`new`, `history`, `resume`, `refresh`, `deferred`, `fresh`,
        `final`), and by outcome (`pending`, `failed`, `stuck`) when not done."""
        counter: Counter[str] = Counter(c.kind for c in self.chunks)
        counts: dict[str, int] = {kind: counter[kind] for kind in KINDS}
        outcomes = Counter(c.outcome for c in self.chunks)
        for name in ("pending", "failed", "stuck"):
            counts[name] = outcomes[name]
        return counts

    @property
    def cost(self) -> dict[str, int]:
        """What the run spends (a dry run: would spend) by kind: submits of new days, replays of
        the settle window, submits of history, and jobs in flight to finish."""
        counts = self.counts
        return {
            "new_submits": counts["new"],
            "refresh_replays": counts["refresh"],
            "history_submits": counts["history"],
            "resumed": counts["resume"],
        }


@dataclass(frozen=True)
class SyncResult:
    datasets: tuple[DatasetResult, ...]
    #: The API calls this run made, by endpoint.
    calls: Mapping[str, int]
    #: Seconds the server's clock was ahead of this machine's (every moment is the server's).
    server_offset: float
    #: Today's ReportExport quota left when the run ended (for a dry run: when it was planned;
    #: None: no daily limit).
    quota_left: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for result in self.datasets:
            total.update(result.counts)
        return {name: total[name] for name in (*KINDS, "pending", "failed", "stuck")}

    @property
    def complete(self) -> bool:
        return all(c.outcome in ("done", "deferred") for r in self.datasets for c in r.chunks)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Item:
    """One chunk (or one default-range export) of a dataset being synced."""

    spec: ExportSpec
    request: ExportRequest
    chunk: Chunk | None  # None: the default range
    key: str
    path: Path
    verdict: Verdict
    entry: LedgerEntry | None


@dataclass
class _Plan:
    dataset: Dataset
    today: date
    last_day: date
    items: list[_Item]
    destination: FilesDestination

    def of(self, *kinds: ChunkFreshness) -> list[_Item]:
        return [item for item in self.items if item.verdict.kind in kinds]


class _Day:
    """Which day it is for the account: the client's clock is the server's (its stamps in the
    ledger too)."""

    def __init__(self, client: Client, zone: tzinfo) -> None:
        self.client = client
        self.zone = zone
        #: Every destination the run's plans opened (closed when the run ends).
        self.destinations: list[FilesDestination] = []

    def now(self) -> datetime:
        return self.client.clock.now()

    def today(self) -> date:
        return account_day(self.now(), self.zone)


async def sync(
    client: Client,
    datasets: Dataset | Sequence[Dataset],
    *,
    options: SyncOptions | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    postbacks: PostbackReceiver | None = None,
) -> SyncResult:
    """Bring `datasets` up to the last complete day, and refresh what is still settling. See the
    module docstring. Every input is checked before any call (`ConfigurationError`)."""
    options = options or SyncOptions()
    sets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    _check_datasets(sets)
    api = client.api
    calls_before = Counter(api.usage.calls)
    zone = await api.limiter.account_timezone()
    day = _Day(client, zone)
    try:
        return await _sync(client, sets, day, options, on_event, postbacks, calls_before)
    finally:
        with anyio.CancelScope(shield=True):
            for destination in day.destinations:
                await destination.aclose()


async def _sync(
    client: Client,
    sets: list[Dataset],
    day: _Day,
    options: SyncOptions,
    on_event: Callable[[ProgressEvent], None] | None,
    postbacks: PostbackReceiver | None,
    calls_before: Counter[str],
) -> SyncResult:
    api = client.api
    plans = [await _plan(client, d, day) for d in sets]  # checks first_day, no call
    if not options.dry_run:
        for plan in plans:
            try:
                plan.destination.check()  # before any call
            except ConfigurationError as error:
                raise ConfigurationError("out", error.problem, dataset=plan.dataset.name) from None
    emit = on_event or (lambda event: None)
    results: dict[str, BackfillResult] = {}
    try:
        if not options.dry_run:
            plans = await _on_the_servers_day(client, sets, plans, day, options)
        daily = await api.limiter.daily("ReportExport")  # the ledger's count: no call
        for plan in plans:
            for item in plan.items:
                emit(_verdict_event(item))
        if not options.dry_run:
            # The plans' work, in their quota order: new days, refreshes (replays spend no
            # ReportExport quota), history; chunks in flight are followed to their end.
            held = _held_history(plans, daily, options)
            for plan, hold in zip(plans, held, strict=True):
                if plan.of("new", "history", "resume", "refresh"):
                    await _backfill(client, plan, options, on_event, postbacks, results, emit, hold)
    except AccountUnavailable as stopped:
        # The folder's one manifest is written all the same, saying why the run stopped.
        with anyio.CancelScope(shield=True):
            for plan in plans:
                try:
                    await _finish(
                        client, plan, day, results, options, _spent(api, calls_before), stopped
                    )
                except ReportExportError as error:
                    log.warning("no manifest for %s: %s", plan.dataset.name, error)
        raise
    calls = _spent(api, calls_before)
    done = []
    for plan in plans:
        done.append(await _finish(client, plan, day, results, options, calls))
    failed = None
    if not options.dry_run:
        daily = await api.limiter.daily("ReportExport")  # what the run spent: no call
        failed = next((r.load_error for r in results.values() if r.load_error), None)
        for plan, result in zip(plans, done, strict=True):
            refused = {k for r in results.values() for k in r.load_failed}
            failed = await _bring_up(plan, result, emit, refused) or failed
    remaining = None if daily is None else daily.remaining
    outcome = SyncResult(tuple(done), calls, client.clock.offset, remaining)
    if failed is not None:
        failed.result = outcome
        raise failed
    return outcome


async def _bring_up(
    plan: _Plan,
    result: DatasetResult,
    emit: Callable[[ProgressEvent], None],
    refused: set[str],
) -> LoadError | None:
    """A destination beside the files brought to equal them: every whole chunk of the dataset
    it lacks, or holds from another file, loaded (a load an earlier run did not commit); not
    the `refused` ones, whose load failed in this run already."""
    whole = [
        SavedChunk(item.key, item.request, item.chunk, item.path, chunk.sha256, chunk.job_id)
        for item, chunk in zip(plan.items, result.chunks, strict=True)
        if chunk.sha256 is not None and chunk.outcome == "done" and item.key not in refused
    ]
    return await load_chunks(plan.destination, whole, emit, reconcile=True)


async def _on_the_servers_day(
    client: Client, sets: Sequence[Dataset], plans: list[_Plan], day: _Day, options: SyncOptions
) -> list[_Plan]:
    """The plans, made again if the server says another day has begun. Any run may spend (a new
    day may have begun): the server's time comes from an answer of the last few minutes (the
    catalog's, say) or one call that spends no quota. Refused credentials or an unreachable host
    here stop the run (`AccountUnavailable`) before anything is spent."""
    judged_on = day.today()
    try:
        await _check_report_ids(client, plans, options)  # before the first submit, no quota
        await client.clock.fresh_now()
        if day.today() != judged_on:
            plans = [await _plan(client, d, day) for d in sets]
            await _check_report_ids(client, plans, options)  # cached when looked up above
    except ReportExportError as error:
        problem = account_problem(error)
        if problem is None:
            raise
        raise AccountUnavailable(problem, error) from error
    return plans


async def _check_report_ids(client: Client, plans: Sequence[_Plan], options: SyncOptions) -> None:
    """Report ids never accepted, of the datasets that may spend, looked up in the account's
    catalog: one call at most, no quota."""
    if not options.check_reports:
        return
    for plan in plans:
        if plan.of("new", "history", "resume", "refresh"):
            await check_reports(
                client.api, client.ledger, plan.dataset.reports, setting="reports",
                dataset=plan.dataset.name,
            )  # fmt: skip


def _spent(api: ReportExportClient, before: Counter[str]) -> dict[str, int]:
    """The calls made since `before`, by endpoint."""
    return {name: n - before[name] for name, n in api.usage.calls.items() if n > before[name]}


def _check_datasets(sets: Sequence[Dataset]) -> None:
    if not sets:
        raise ConfigurationError("datasets", "give at least one dataset")
    names: set[str] = set()
    folders: dict[Path, str] = {}
    for dataset in sets:
        if not isinstance(dataset, Dataset):
            raise ConfigurationError("datasets", f"expected Dataset values, got {dataset!r}")
        if dataset.name in names:
            raise ConfigurationError("datasets", f"dataset {dataset.name!r} is given twice")
        names.add(dataset.name)
        folder = dataset.out.resolve()
        if folder in folders:
            raise ConfigurationError(
                "out",
                f"datasets {folders[folder]!r} and {dataset.name!r} share the folder "
                f"{str(dataset.out)!r}; give each dataset its own",
            )
        folders[folder] = dataset.name


async def _plan(client: Client, dataset: Dataset, day: _Day) -> _Plan:
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
    items: list[_Item] = []
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
        items.append(_Item(spec, chunk.request, piece, chunk.fingerprint, path, verdict, entry))
    return _Plan(dataset, today, last_day, items, destination)


async def _judge(
    client: Client,
    entry: LedgerEntry | None,
    path: Path,
    chunk: Chunk,
    dataset: Dataset,
    day: _Day,
    day_start: datetime,
    last_day: date,
) -> Verdict:
    """A chunk the ledger may know: unfetched, in flight, or judged by its freshness."""
    if entry is None or entry.job_id is None:
        return judge_unfetched(chunk, last_day, dataset.policy)
    intact = entry.status is JobStatus.COMPLETED and await file_is_intact(entry, path)
    if not intact:
        return Verdict("resume", f"job {entry.job_id}: its result is not on disk yet")
    fetched = _fetched_at(entry)
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


def _fetched_at(entry: LedgerEntry) -> datetime | None:
    """When the chunk's data was made, on the server's clock: its job's completion as the server
    reported it, else (never seen completed) its download or intent (the ledger's stamps)."""
    return entry.completed_at or entry.downloaded_at or entry.created_at


def _verdict_event(item: _Item) -> ProgressEvent:
    return ProgressEvent(
        "sync",
        status=item.verdict.kind,
        report_id=item.spec.report_id,
        chunk=None if item.chunk is None else str(item.chunk),
        job_id=None if item.entry is None else item.entry.job_id,
        message=item.verdict.reason,
        until=item.verdict.until,
    )


async def _backfill(
    client: Client,
    plan: _Plan,
    options: SyncOptions,
    on_event: Callable[[ProgressEvent], None] | None,
    postbacks: PostbackReceiver | None,
    results: dict[str, BackfillResult],
    emit: Callable[[ProgressEvent], None],
    hold: set[str],
) -> None:
    """The orchestrator runs the plan: it submits the new days first, then history (but not
    `hold`: today's quota is the other datasets' new days'), follows
    what is in flight, and replays each chunk due for a refresh through the replay guard (its
    own job, at most once a day); chunks that are done cost nothing. Its outcomes are kept per
    fingerprint."""
    dataset = plan.dataset
    backfill_options = BackfillOptions(
        chunk=dataset.chunk,
        wait_for_quota=options.wait_for_quota,
        submit_concurrency=options.concurrency,
        download_concurrency=options.concurrency,
        check_reports=options.check_reports,
        replay_policy=ReplayPolicy(settle_days=dataset.settle_days),
        today=plan.today,
    )
    api, ledger, destination = client.api, client.ledger, plan.destination
    calls_before = Counter(api.usage.calls)
    try:
        if dataset.first_day is None:  # checked: the folder and the report ids
            planned = await plan_default_ranges(
                api, ledger, dataset.specs(), plan.today, destination
            )
        else:
            planned = await make_plan(
                api, ledger, dataset.specs(), dataset.first_day, plan.last_day, destination,
                backfill_options,
            )  # fmt: skip
        result = await run_planned(
            api, ledger, planned, destination, backfill_options, on_event=on_event,
            postbacks=postbacks, manifest=False, calls_before=calls_before,
            refresh={item.key for item in plan.of("refresh")},
            first={item.key for item in plan.of("new")}, hold=hold,
        )  # fmt: skip
    except AccountUnavailable as stopped:
        if isinstance(stopped.result, BackfillResult):
            _keep(plan, stopped.result, results, emit)
        raise
    _keep(plan, result, results, emit)


def _held_history(
    plans: Sequence[_Plan], daily: DailyQuota | None, options: SyncOptions
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


def _keep(
    plan: _Plan,
    result: BackfillResult,
    results: dict[str, BackfillResult],
    emit: Callable[[ProgressEvent], None],
) -> None:
    """The run's outcomes by fingerprint; a refresh the replay guard refused changes the
    chunk's verdict: `deferred` until the replay is allowed, or `fresh` when it was replayed
    today already."""
    min_age = ReplayPolicy(settle_days=plan.dataset.settle_days).min_age
    runs = {run.planned.fingerprint: run for run in result.chunks}
    for key in runs:
        results[key] = result
    for item in plan.of("refresh"):
        run = runs.get(item.key)
        if run is None or run.refused is None:
            continue
        if run.refused == "too_soon":
            reason = f"never replayed within {min_age} of its submit"
            item.verdict = Verdict("deferred", reason, run.resets_at)
        elif run.refused == "once_per_day":
            item.verdict = Verdict("fresh", "already replayed today")
        emit(_verdict_event(item))


async def _finish(
    client: Client,
    plan: _Plan,
    day: _Day,
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
        fetched = None if entry is None else _fetched_at(entry)
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
    plan: _Plan, chunks: Sequence[SyncChunk], sources: dict[str, str]
) -> tuple[Path, ...]:
    """`<out>/<report>.<ext>` from every chunk of the report, in date order, when every chunk's
    file is whole; the destination writes it only when its chunks changed since it was made
    (their digest, kept in the manifest as `merged`, so a run that stopped before merging is
    made good by the next). `sources` gets each merged file's digest. Returns the files written."""
    by_report: dict[str, list[tuple[_Item, SyncChunk]]] = {}
    for item, chunk in zip(plan.items, chunks, strict=True):
        by_report.setdefault(item.spec.report_id, []).append((item, chunk))
    groups = [
        (pairs[0][0].request, [(item.path, chunk.sha256) for item, chunk in pairs])
        for pairs in by_report.values()
    ]
    return await merge_each(plan.destination, groups, sources)


def _manifest(
    plan: _Plan,
    chunks: Sequence[SyncChunk],
    client: Client,
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
