"""Planning a backfill, before any call: every input checked, the chunks chosen (`auto` chunks
recorded in the ledger), duplicate exports merged, and each chunk found done (its file intact),
known (a job to re-attach to) or new (one submit)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import PurePosixPath

from ...core.chunking import Chunk, auto_span, chunk_range, chunks_with_record, record_after
from ...core.fingerprint import export_key, fingerprint
from ...core.models import ExportRequest, JobStatus, checked
from ...core.planning import (
    Known,
    Plan,
    default_range_path,
    export_folder,
    output_key,
    plan_chunks,
)
from ...core.quota import DailyQuota, quota_day_bounds
from ...core.responses import account_problem
from ...destinations import FilesDestination
from ...errors import ConfigurationError, LedgerError, ReportExportError
from ...ledger import LedgerEntry
from ...ledger.store import LedgerStore
from ...transport.api import ReportExportClient
from ..catalog import check_reports
from ..catalog import unproven as unproven_ids
from .model import BackfillOptions, ExportSpec

__all__ = [
    "Planned",
    "account_today",
    "check_range",
    "describe",
    "make_plan",
    "plan_default_ranges",
]

log = logging.getLogger("reportexport_async.jobs.orchestrator")

#: Plans of `auto` chunks made again when other runs recorded theirs meanwhile, before giving up.
RECORD_ATTEMPTS = 5


@dataclass(frozen=True)
class Planned:
    """The plan, the exports it covers (duplicates merged), the duplicates, and the ledger's
    entries of the chunks it knows."""

    plan: Plan
    exports: list[ExportSpec]
    duplicates: list[ExportSpec]
    entries: dict[str, LedgerEntry]
    #: The report ids the server has never accepted for the account: probed with one chunk.
    unproven: list[str] = field(default_factory=list)
    #: An account-wide failure met while planning (credentials refused at the catalog call).
    stopped: ReportExportError | None = None


def _check_day(name: str, value: object) -> None:
    """`start` and `end` are `datetime.date` values (not datetimes, not text), before any use."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return
    hint = " (parse text with date.fromisoformat)" if isinstance(value, str) else ""
    raise ConfigurationError(
        name,
        f"must be a datetime.date such as date(2025, 1, 31), got {type(value).__name__} "
        f"{value!r}{hint}",
    )


def check_range(start: date, end: date, today: date) -> None:
    """`start` and `end` are days, in order, and not after the account's `today` (there is no
    data yet): checked before any call."""
    _check_day("start", start)
    _check_day("end", end)
    if end < start:
        raise ConfigurationError("start", f"the range starts ({start}) after it ends ({end})")
    if end > today:
        raise ConfigurationError(
            "end", f"{end} is in the future (today is {today}); there is no data yet"
        )


async def account_today(api: ReportExportClient) -> date:
    """The account's day now (its time zone as learned; no call)."""
    zone = await api.limiter.account_timezone()
    return quota_day_bounds(api.clock.now(), zone)[0].date()


async def _rows_per_day(ledger: LedgerStore, report_id: str, account: str) -> float | None:
    """Rows per day of a report, from the RecordsProcessed of the account's completed exports."""
    rows = days = 0
    for entry in await ledger.entries(report_id=report_id, account=account):
        if (
            entry.status is JobStatus.COMPLETED
            and entry.records is not None
            and entry.range_start is not None
            and entry.range_end is not None
        ):
            rows += entry.records
            days += (entry.range_end - entry.range_start).days + 1
    return rows / days if days else None


async def _auto_chunks(
    ledger: LedgerStore,
    account: str,
    spec: ExportSpec,
    start: date,
    end: date,
    *,
    row_target: int,
    submits_left: int | None,
    record: bool,
) -> list[Chunk]:
    """The `auto` chunks of one export over `[start, end]`: the chunks recorded for it that lie
    wholly inside the range, and the other days in the span its rows per day suggest
    (`core.chunking.chunks_with_record`). With `record` (a real run, not a dry run), the chunks
    are recorded before any submit, so a rerun or a run after a crash plans the same chunks."""
    export = export_key(spec.request(Chunk(start, start)))
    for _ in range(RECORD_ATTEMPTS):
        recorded = await ledger.auto_chunks(account, export)
        rows = await _rows_per_day(ledger, spec.report_id, account)
        span = auto_span(
            rows, row_target=row_target, start=start, end=end, submits_left=submits_left
        )
        pieces = chunks_with_record(recorded, start, end, auto_days=span)
        if not record:
            return pieces
        after = record_after(recorded, pieces)
        if after == recorded:
            return pieces
        if await ledger.record_auto_chunks(account, export, after, expected=recorded):
            return pieces
        # Another run recorded chunks for this export meanwhile: plan again from its record.
    raise LedgerError(
        f"the auto chunks of {spec.report_id!r} in {ledger.path} kept changing while this run "
        "planned them (other runs of the same export?); run it again"
    )


def describe(spec: ExportSpec) -> str:
    filters = ", ".join(f"{k}={v}" for k, v in sorted(spec.filters.items()))
    return f"export {spec.report_id!r}" + (f" ({filters})" if filters else "")


def _distinct(
    exports: Sequence[ExportSpec], requests: Sequence[ExportRequest]
) -> tuple[list[ExportSpec], list[ExportSpec]]:
    """The exports without repeats, in their first order, and the repeats. A repeat would plan,
    count and download every chunk twice (the ledger only keeps its submits single); two
    different exports that would write the same files are refused before any call."""
    kept: dict[str, ExportSpec] = {}
    files: dict[str, ExportSpec] = {}
    duplicates: list[ExportSpec] = []
    for spec, request in zip(exports, requests, strict=True):
        key = export_key(request)
        if key in kept:
            duplicates.append(spec)
            continue
        other = files.get(output_key(request))
        if other is not None:
            raise ConfigurationError(
                "exports",
                f"{describe(other)} and {describe(spec)} would write to the same files "
                f"({export_folder(request)}/*.{request.result_format.lower()}); "
                "pull them in separate backfills with different output folders",
            )
        kept[key] = spec
        files[output_key(request)] = spec
    return list(kept.values()), duplicates


async def make_plan(
    api: ReportExportClient,
    ledger: LedgerStore,
    exports: Sequence[ExportSpec],
    start: date,
    end: date,
    out: FilesDestination,
    options: BackfillOptions,
) -> Planned:
    """Check everything, choose the chunks and find what the ledger knows of each: no call."""
    if not exports:
        raise ConfigurationError("exports", "give at least one report")
    current_day = options.today or await account_today(api)
    check_range(start, end, current_day)
    rule = options.rule
    requests: list[ExportRequest] = []
    for spec in exports:  # every request is valid before any call (ExportRequest validates)
        whole = {"": f"export {spec.report_id!r}"}  # a problem of the whole request
        requests.append(checked(partial(spec.request, Chunk(start, start)), rename=whole))
    distinct, duplicates = _distinct(exports, requests)
    unproven: list[str] = []
    stopped: ReportExportError | None = None
    if options.dry_run:
        out.check(create=False)  # and make nothing: a dry run leaves no trace
    else:
        out.check()
        # Before anything is recorded or spent: one catalog call at most, none for known ids.
        ids = [spec.report_id for spec in distinct]
        try:
            if options.check_reports:
                unproven = await check_reports(api, ledger, ids, setting="report_id")
            else:
                unproven = await unproven_ids(api, ledger, ids)
        except ReportExportError as error:
            if account_problem(error) is None:
                raise
            stopped = error  # the run stops before it begins, with its manifest
    record = not options.dry_run and stopped is None
    daily = await api.limiter.daily("ReportExport")  # the ledger's count: no call
    share = None if daily is None else daily.remaining // len(distinct)  # an export's quota
    config = api.config
    account = config.account_key
    items: list[tuple[ExportRequest, Chunk, str, str]] = []
    for spec in distinct:
        if rule.kind == "auto":
            pieces = await _auto_chunks(
                ledger, account, spec, start, end,
                row_target=options.row_target, submits_left=share, record=record,
            )  # fmt: skip
        else:
            pieces = chunk_range(start, end, rule)
        for piece in pieces:
            request = spec.request(piece)
            print_ = fingerprint(
                request,
                base_url=config.base_url,
                account_type=config.account_type,
                account_sid=config.account_sid,
                today=current_day,
            )
            items.append((request, piece, print_.key, print_.canonical))
    plan, entries = await _known_plan(ledger, items, out, daily)
    if (
        record
        and api.clock.ask_before_spending
        and (plan.by_state("new") or plan.by_state("attach"))
    ):
        # A run with work hears the server's time before it stamps or schedules anything (one
        # call that spends no quota, none when an answer of the last minutes told it): its
        # deadlines are never set on this machine's clock and then read on the server's.
        try:
            await api.clock.fresh_now()
        except ReportExportError as error:
            if account_problem(error) is None:
                raise
            stopped = error
    return Planned(plan, distinct, duplicates, entries, unproven, stopped)


async def plan_default_ranges(
    api: ReportExportClient,
    ledger: LedgerStore,
    exports: Sequence[ExportSpec],
    day: date,
    out: FilesDestination,
) -> Planned:
    """Exports of the reports' default date range on the account's `day`, one chunk each
    (`Chunk(day, day)` names it; its file is `<report>/default-range_<day>.<ext>`): a new job
    only on a new day of the account (the guide's rule 5, docs/guide.md). Found done, known or
    new in the ledger: no call (the caller checks the folder and the report ids first)."""
    config = api.config
    items: list[tuple[ExportRequest, Chunk, str, str]] = []
    paths: dict[str, PurePosixPath] = {}
    for spec in exports:
        request = ExportRequest(
            report_id=spec.report_id, filters=dict(spec.filters), result_format=spec.result_format
        )
        print_ = fingerprint(
            request, base_url=config.base_url, account_type=config.account_type,
            account_sid=config.account_sid, today=day,
        )  # fmt: skip
        items.append((request, Chunk(day, day), print_.key, print_.canonical))
        paths[print_.key] = default_range_path(request, day)
    daily = await api.limiter.daily("ReportExport")  # the ledger's count: no call
    plan, entries = await _known_plan(ledger, items, out, daily, paths)
    unproven = await unproven_ids(api, ledger, [spec.report_id for spec in exports])
    return Planned(plan, list(exports), [], entries, unproven)


async def _known_plan(
    ledger: LedgerStore,
    items: Sequence[tuple[ExportRequest, Chunk, str, str]],
    out: FilesDestination,
    daily: DailyQuota | None,
    paths: Mapping[str, PurePosixPath] | None = None,
) -> tuple[Plan, dict[str, LedgerEntry]]:
    """The plan of `items` (their files at `paths` when not named after their chunks) from what
    the ledger knows of each, and the ledger's entries."""
    paths = paths or {}
    known: dict[str, Known] = {}
    entries: dict[str, LedgerEntry] = {}
    recorded = await ledger.get_many([key for _, _, key, _ in items])
    for request, piece, key, _ in items:
        entry = recorded.get(key)
        if entry is None:
            continue
        entries[key] = entry
        path = out.root / paths[key] if key in paths else out.path_for(request, piece)
        intact = entry.status is JobStatus.COMPLETED and await out.is_intact(entry, path)
        known[key] = Known(entry.job_id, entry.status, intact)
    plan = plan_chunks(
        items,
        known,
        quota_left_today=None if daily is None else daily.remaining,
        daily_limit=None if daily is None else daily.limit,
    )
    if paths:
        chunks = [
            dataclasses.replace(c, path=paths.get(c.fingerprint, c.path)) for c in plan.chunks
        ]
        plan = dataclasses.replace(plan, chunks=tuple(chunks))
    return plan, entries
