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
   (`jobs.orchestrator.run_planned`): what today's quota cannot serve is history, so new days are
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

Here is the run; `model` holds the values (`Dataset`, the options, the results), `plan` judges
every chunk (no call) and `finish` reads the outcomes back, merges and writes the manifest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ...core.freshness import Verdict
from ...core.replay import ReplayPolicy
from ...core.responses import account_problem
from ...destinations import SavedChunk
from ...errors import AccountUnavailable, ConfigurationError, LoadError, ReportExportError
from ..catalog import check_reports
from ..orchestrator import BackfillOptions, BackfillResult, ProgressEvent, run_planned
from ..orchestrator.plan import make_plan, plan_default_ranges
from ..orchestrator.state import load_chunks
from .finish import finish_dataset
from .model import KINDS as KINDS  # the verdicts, for the command line's summaries
from .model import Dataset, DatasetResult, SyncChunk, SyncClient, SyncOptions, SyncResult
from .plan import Day, Plan, held_history, plan_dataset, verdict_event

if TYPE_CHECKING:  # pragma: no cover
    from ...transport.api import ReportExportClient
    from ...transport.postbacks import PostbackReceiver

__all__ = ["Dataset", "DatasetResult", "SyncChunk", "SyncOptions", "SyncResult", "sync"]

log = logging.getLogger("reportexport_async.jobs.sync")


async def sync(
    client: SyncClient,
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
    day = Day(client, zone)
    try:
        return await _sync(client, sets, day, options, on_event, postbacks, calls_before)
    finally:
        with anyio.CancelScope(shield=True):
            for destination in day.destinations:
                await destination.aclose()


async def _sync(
    client: SyncClient,
    sets: list[Dataset],
    day: Day,
    options: SyncOptions,
    on_event: Callable[[ProgressEvent], None] | None,
    postbacks: PostbackReceiver | None,
    calls_before: Counter[str],
) -> SyncResult:
    api = client.api
    plans = [await plan_dataset(client, d, day) for d in sets]  # checks first_day, no call
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
                emit(verdict_event(item))
        if not options.dry_run:
            # The plans' work, in their quota order: new days, refreshes (replays spend no
            # ReportExport quota), history; chunks in flight are followed to their end.
            held = held_history(plans, daily, options)
            for plan, hold in zip(plans, held, strict=True):
                if plan.of("new", "history", "resume", "refresh"):
                    await _backfill(client, plan, options, on_event, postbacks, results, emit, hold)
    except AccountUnavailable as stopped:
        # The folder's one manifest is written all the same, saying why the run stopped.
        with anyio.CancelScope(shield=True):
            for plan in plans:
                try:
                    await finish_dataset(
                        client, plan, day, results, options, _spent(api, calls_before), stopped
                    )
                except ReportExportError as error:
                    log.warning("no manifest for %s: %s", plan.dataset.name, error)
        raise
    calls = _spent(api, calls_before)
    done = []
    for plan in plans:
        done.append(await finish_dataset(client, plan, day, results, options, calls))
    failed = None
    if not options.dry_run:
        daily = await api.limiter.daily("ReportExport")  # what the run spent: no call
        failed = next((r.load_error for r in results.values() if r.load_error), None)
        refused = {key for r in results.values() for key in r.load_failed}
        for plan, result in zip(plans, done, strict=True):
            failed = await _bring_up(plan, result, emit, refused) or failed
    remaining = None if daily is None else daily.remaining
    outcome = SyncResult(tuple(done), calls, client.clock.offset, remaining)
    if failed is not None:
        failed.result = outcome
        raise failed
    return outcome


async def _bring_up(
    plan: Plan,
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
    client: SyncClient, sets: Sequence[Dataset], plans: list[Plan], day: Day, options: SyncOptions
) -> list[Plan]:
    """The plans, made again if the server says another day has begun. Any run may spend (a new
    day may have begun): the server's time comes from an answer of the last few minutes (the
    catalog's, say) or one call that spends no quota. Refused credentials or an unreachable host
    here stop the run (`AccountUnavailable`) before anything is spent."""
    judged_on = day.today()
    try:
        await _check_report_ids(client, plans, options)  # before the first submit, no quota
        await client.clock.fresh_now()
        if day.today() != judged_on:
            plans = [await plan_dataset(client, d, day) for d in sets]
            await _check_report_ids(client, plans, options)  # cached when looked up above
    except ReportExportError as error:
        problem = account_problem(error)
        if problem is None:
            raise
        raise AccountUnavailable(problem, error) from error
    return plans


async def _check_report_ids(
    client: SyncClient, plans: Sequence[Plan], options: SyncOptions
) -> None:
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


async def _backfill(
    client: SyncClient,
    plan: Plan,
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


def _keep(
    plan: Plan,
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
        emit(verdict_event(item))
