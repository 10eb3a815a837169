"""Planning a backfill, before any call: every input checked, the chunks chosen (`auto` chunks
recorded in the ledger), duplicate exports merged, and each chunk found done (its file intact),
known (a job to re-attach to) or new (one submit)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import ValidationError

from ..api import ReportExportClient
from ..core.chunking import Chunk, auto_span, chunk_range, chunks_with_record, record_after
from ..core.fingerprint import account_key, export_key, fingerprint
from ..core.models import ExportRequest, JobStatus, validation_problem
from ..core.planning import (
    Known,
    Plan,
    export_folder,
    output_key,
    plan_chunks,
    unknown_reports,
)
from ..core.quota import quota_day_bounds
from ..destinations import FilesDestination
from ..errors import ConfigurationError, LedgerError, ReportExportError
from ..ledger import LedgerEntry
from ..ledger_store import LedgerStore
from .model import BackfillOptions, ExportSpec

__all__ = ["Planned", "check_catalog", "describe", "make_plan", "unproven_reports"]

log = logging.getLogger("reportexport_async.orchestrator")

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


async def unproven_reports(
    ledger: LedgerStore, plan: Plan, account: str | None = None
) -> list[str]:
    """The report ids about to be submitted that the server has never accepted for `account`
    (no job of theirs in the ledger)."""
    unproven = []
    for report_id in dict.fromkeys(p.report_id for p in plan.by_state("new")):
        if not any(
            entry.job_id for entry in await ledger.entries(report_id=report_id, account=account)
        ):
            unproven.append(report_id)
    return unproven


async def check_catalog(api: ReportExportClient, unproven: Sequence[str]) -> None:
    """`check_reports`: one `GET /Reports` before the first submit, so an unknown or not
    API-accessible report id is refused before any ReportExport call. A catalog that cannot be
    read leaves the judgement to the server (the probe submit's answer)."""
    if not unproven:
        return
    try:
        catalog = await api.reports()
    except ReportExportError as error:
        log.warning("the report catalog could not be read (%s); the server will judge", error)
        return
    problems = unknown_reports(unproven, catalog) if catalog else {}
    if problems:
        raise ConfigurationError("report_id", "; ".join(problems.values()))


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
    _check_day("start", start)
    _check_day("end", end)
    if end < start:
        raise ConfigurationError("start", f"the range starts ({start}) after it ends ({end})")
    now = api.clock.now()
    zone = await api.limiter.account_timezone()  # the account's day, as learned
    current_day = options.today or quota_day_bounds(now, zone)[0].date()
    if end > current_day:
        raise ConfigurationError(
            "end", f"{end} is in the future (today is {current_day}); there is no data yet"
        )
    rule = options.rule
    requests: list[ExportRequest] = []
    for spec in exports:  # every request is valid before any call (ExportRequest validates)
        try:
            requests.append(spec.request(Chunk(start, start)))
        except ValidationError as exc:
            where, _, problem = validation_problem(exc)
            raise ConfigurationError(where or f"export {spec.report_id!r}", problem) from None
    distinct, duplicates = _distinct(exports, requests)
    if not options.dry_run:
        out.check()
    daily = await api.limiter.daily("ReportExport")  # the ledger's count: no call
    share = None if daily is None else daily.remaining // len(distinct)  # an export's quota
    config = api.config
    account = account_key(config.base_url, config.account_type, config.account_sid)
    items: list[tuple[ExportRequest, Chunk, str, str]] = []
    for spec in distinct:
        if rule.kind == "auto":
            pieces = await _auto_chunks(
                ledger, account, spec, start, end,
                row_target=options.row_target, submits_left=share, record=not options.dry_run,
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
    known: dict[str, Known] = {}
    entries: dict[str, LedgerEntry] = {}
    recorded = await ledger.get_many([key for _, _, key, _ in items])
    for request, piece, key, _ in items:
        entry = recorded.get(key)
        if entry is None:
            continue
        entries[key] = entry
        intact = entry.status is JobStatus.COMPLETED and await out.is_intact(
            entry, out.path_for(request, piece)
        )
        known[key] = Known(entry.job_id, entry.status, intact)
    plan = plan_chunks(
        items,
        known,
        quota_left_today=None if daily is None else daily.remaining,
        daily_limit=None if daily is None else daily.limit,
    )
    return Planned(plan, distinct, duplicates, entries)
