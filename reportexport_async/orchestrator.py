"""The orchestrator: quota-aware date-range backfills and concurrent multi-report pulls.

    async with Ledger() as ledger:
        limiter = RateLimiter(store=ledger)
        async with ReportExportClient(config, limiter=limiter) as client:
            result = await backfill(client, ledger, [ExportSpec("mp_action_listing_fast")],
                                    date(2025, 1, 1), date(2025, 12, 31), out_dir="out")

Step by step (DESIGN "A backfill, step by step"):

1. Everything is checked before any call: dates, report ids, the chunk rule, the output folder.
2. A plan: every export x chunk gets its fingerprint; the ledger says whether it is done (file
   intact: no call), known (re-attach to its job: no submit) or new (one submit).
3. New chunks are submitted while today's ReportExport quota lasts; the rest is reported pending
   with the time the quota resets (or, with `wait_for_quota`, waited for).
4. One tracker refreshes every job in flight with one `GET /Jobs` listing call per tick (a page per
   1,000 jobs), the tick stretched to what the hourly bucket affords. COMPLETED jobs go to the
   downloaders; FAILED/CANCELLED ones are replayed through the guard (at most `max_replays`);
   a replay the guard does not allow yet (too soon after the submit) leaves its chunk `deferred`
   until that time (or, with `wait_for_replays`, waits for it); ERROR ones are waited on; a job
   past `stuck_after` is reported stuck, never resubmitted; a job the server no longer knows
   (404) is forgotten and its chunk submitted again.
5. Downloads run concurrently, streamed to `<out>/<report>/<start>_<end>.<ext>` (names from the
   plan, never from the server); the ledger records path, size and sha256.
6. A manifest lists every chunk's outcome; with `merge`, each fully done export is streamed into
   `<out>/<report>.<ext>` in date order.

Every task lives in one task group; one chunk's failure never stops the others. A failure of the
whole account does: credentials refused (401/403), the host unreachable, TLS, or every call
failing for longer than `RetryPolicy.outage_limit` stop the run at once with `AccountUnavailable`
(no further chunk is tried or charged; the manifest is written). Cancellation leaves the ledger
consistent (each write is one transaction) and the folder too (downloads go to `.part` first; the
manifest is written on the way out), and the next run resumes.

Nothing waits in silence: a wait for the hourly limit, the quota's reset or a replay's time, and
jobs that stay in flight for long, are announced as `wait` events saying what and until when.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import ValidationError

from .client import ReportExportClient
from .core.chunking import (
    Chunk,
    ChunkRule,
    auto_span,
    chunk_range,
    chunks_with_record,
    parse_chunk_rule,
    record_after,
)
from .core.fingerprint import Fingerprint, account_key, export_key, fingerprint
from .core.models import ExportRequest, Job, JobStatus, validation_problem
from .core.planning import (
    Known,
    Plan,
    PlannedChunk,
    chunk_path,
    export_folder,
    output_key,
    plan_chunks,
    unknown_reports,
)
from .core.quota import quota_day_bounds
from .core.replay import ReplayPolicy
from .core.responses import account_problem, report_refused, worth_another_round
from .core.tracking import TickPolicy, tick_interval
from .errors import (
    AccountUnavailable,
    ConfigurationError,
    HTTPStatusError,
    JobFailed,
    JobNotReady,
    LedgerError,
    NotFound,
    OutputError,
    QuotaExhausted,
    ReplayRefused,
    ReportExportError,
)
from .exports import download_recorder, file_is_intact, replay_guarded, submit_once
from .ledger import Ledger, LedgerEntry
from .postbacks import Postback, PostbackReceiver
from .ratelimit import LimiterWait

__all__ = [
    "BackfillResult",
    "ChunkRun",
    "ExportSpec",
    "ProgressEvent",
    "backfill",
    "merge_files",
]

log = logging.getLogger("reportexport_async.orchestrator")

ChunkStatus = Literal[
    "planned",
    "submitted",
    "running",
    "downloading",
    "done",
    "failed",
    "pending",
    "deferred",
    "stuck",
]
#: `pending`: waits for the daily quota's reset; `deferred`: waits for a moment the guide sets
#: (a replay is allowed only an hour after the submit); both carry `resets_at`, the time to run
#: again.
FINAL_CHUNK_STATUSES = ("done", "failed", "pending", "deferred", "stuck")
#: A chunk whose submit or download still fails after the session's retries (an outage, not a
#: bad request) gets this many rounds in all, the n-th after a pause of n x `ROUND_PAUSE`.
ROUNDS = 3
ROUND_PAUSE = 60.0  # seconds (client clock)
#: While jobs stay in flight with nothing finishing, say so this often (seconds, client clock).
NOTICE_EVERY = 300.0
#: Plans of `auto` chunks made again when other runs recorded theirs meanwhile, before giving up.
RECORD_ATTEMPTS = 5


@dataclass(frozen=True)
class ExportSpec:
    """One report to pull over the backfill's range: its id, filters and result format."""

    report_id: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    result_format: str = "CSV"

    def request(self, chunk: Chunk) -> ExportRequest:
        return ExportRequest(
            report_id=self.report_id,
            start=chunk.start,
            end=chunk.end,
            filters=dict(self.filters),
            result_format=self.result_format,
        )


@dataclass
class ChunkRun:
    """One chunk's progress and outcome."""

    planned: PlannedChunk
    status: ChunkStatus = "planned"
    job_id: str | None = None
    submitted_at: datetime | None = None
    records: int | None = None
    size: int | None = None
    sha256: str | None = None
    replays: int = 0
    submit_rounds: int = 1
    download_rounds: int = 1
    error: str | None = None
    resets_at: datetime | None = None
    probe: Postback | None = None  # set when a postback sent this chunk to the downloaders

    @property
    def label(self) -> str:
        return f"{self.planned.report_id} {self.planned.chunk}"

    def to_manifest(self, out_dir: Path) -> dict[str, Any]:
        return {
            "report": self.planned.report_id,
            "filters": {k: str(v) for k, v in self.planned.request.filters.items()},
            "start": self.planned.chunk.start.isoformat(),
            "end": self.planned.chunk.end.isoformat(),
            "fingerprint": self.planned.fingerprint,
            "job_id": self.job_id,
            "status": self.status,
            "rows": self.records,
            "bytes": self.size,
            "sha256": self.sha256,
            "path": str(out_dir / self.planned.path),
            "replays": self.replays,
            "error": self.error,
            "resets_at": None if self.resets_at is None else self.resets_at.isoformat(),
        }


@dataclass(frozen=True)
class ProgressEvent:
    """What changed. `kind` is `duplicate` (an export given more than once, pulled once; before
    the plan), `plan`, `chunk` (a chunk's status changed), `bytes` (a download finished),
    `quota` (the quota stopped submits), `retry` (a chunk's submit or download gets another
    round after an outage), `wait` (the run waits: `message` says for what, `until` until when),
    `error` (a tracker refresh failed) or `stopped` (an account-wide failure stopped the run)."""

    kind: str
    status: str | None = None
    report_id: str | None = None
    chunk: str | None = None
    job_id: str | None = None
    bytes: int = 0
    calls: Mapping[str, int] = field(default_factory=dict)
    quota_left: int | None = None
    message: str | None = None
    #: The `plan` event carries the whole plan (every chunk and its state), so a display knows
    #: the totals per report and the chunks that are already done before anything moves.
    plan: Plan | None = None
    #: `wait` events: when the wait ends (or the next look, for jobs in flight).
    until: datetime | None = None


@dataclass(frozen=True)
class BackfillResult:
    plan: Plan
    chunks: tuple[ChunkRun, ...]
    manifest_path: Path | None
    dry_run: bool
    pending_resets_at: datetime | None
    #: The API calls this backfill made, by endpoint (not the client's earlier ones).
    calls: Mapping[str, int]
    merged: tuple[Path, ...] = ()
    #: Real seconds from a postback's arrival to the start of the download it caused.
    postback_latency: tuple[float, ...] = ()
    #: The earliest time a `deferred` chunk may go on (run the same backfill again then).
    deferred_until: datetime | None = None
    #: The account-wide failure that stopped the run (it is also raised, carrying this result).
    stopped: AccountUnavailable | None = None

    @property
    def counts(self) -> dict[str, int]:
        counter: Counter[str] = Counter(run.status for run in self.chunks)
        names = ("done", "failed", "pending", "deferred", "stuck")
        return {name: counter[name] for name in names}

    @property
    def complete(self) -> bool:
        return all(run.status == "done" for run in self.chunks)


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


async def _unproven_reports(ledger: Ledger, plan: Plan) -> list[str]:
    """The report ids about to be submitted that the server has never accepted (no job of
    theirs in the ledger)."""
    unproven = []
    for report_id in dict.fromkeys(p.report_id for p in plan.by_state("new")):
        if not any(entry.job_id for entry in await ledger.entries(report_id=report_id)):
            unproven.append(report_id)
    return unproven


async def _check_catalog(client: ReportExportClient, unproven: Sequence[str]) -> None:
    """`check_reports`: one `GET /Reports` before the first submit, so an unknown or not
    API-accessible report id is refused before any ReportExport call. A catalog that cannot be
    read leaves the judgement to the server (the probe submit's answer)."""
    if not unproven:
        return
    try:
        catalog = await client.reports()
    except ReportExportError as error:
        log.warning("the report catalog could not be read (%s); the server will judge", error)
        return
    problems = unknown_reports(unproven, catalog) if catalog else {}
    if problems:
        raise ConfigurationError("report_id", "; ".join(problems.values()))


def _check_out_dir(out_dir: Path) -> None:
    """The output folder exists (or can be made) and can be written, before any call."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            "out_dir", f"{str(out_dir)!r} cannot be written ({exc.strerror or exc})"
        ) from exc


async def _rows_per_day(ledger: Ledger, report_id: str) -> float | None:
    """Rows per day of a report, from the RecordsProcessed of its completed exports."""
    rows = days = 0
    for entry in await ledger.entries(report_id=report_id):
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
    ledger: Ledger,
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
        rows = await _rows_per_day(ledger, spec.report_id)
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


def _describe(spec: ExportSpec) -> str:
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
                f"{_describe(other)} and {_describe(spec)} would write to the same files "
                f"({export_folder(request)}/*.{request.result_format.lower()}); "
                "pull them in separate backfills with different output folders",
            )
        kept[key] = spec
        files[output_key(request)] = spec
    return list(kept.values()), duplicates


async def backfill(
    client: ReportExportClient,
    ledger: Ledger,
    exports: Sequence[ExportSpec],
    start: date,
    end: date,
    *,
    out_dir: str | Path,
    chunk: str | ChunkRule = "7d",
    row_target: int = 1_000_000,
    download_concurrency: int = 4,
    submit_concurrency: int = 4,
    dry_run: bool = False,
    wait_for_quota: bool = False,
    merge: bool = False,
    max_replays: int = 2,
    stuck_after: timedelta = timedelta(hours=6),
    replay_policy: ReplayPolicy | None = None,
    tick: TickPolicy | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    postbacks: PostbackReceiver | None = None,
    today: date | None = None,
    check_reports: bool = False,
    wait_for_replays: bool = False,
) -> BackfillResult:
    """Pull `exports` over `[start, end]` into `out_dir`. See the module docstring.

    A report the server has never accepted (no job of it in the ledger) is probed first: one
    chunk is submitted alone, and the report's other chunks follow only once it is accepted, so
    an unknown report id costs one call, never one per chunk, and a known one costs nothing
    extra. With `check_reports`, such report ids are also looked up in the account's catalog
    (one `GET /Reports`) and refused with a `ConfigurationError` before any ReportExport call.

    `chunk="auto"` picks each export's span from the rows per day its completed jobs showed,
    and records the chunks it chose in the ledger (per account and export) before the first
    submit; a dry run shows the same plan and records nothing. A later run keeps every recorded
    chunk that lies wholly inside its range and chunks only the days left uncovered afresh, so
    the same range again costs no call and a longer one submits only its new days. A recorded
    chunk only partly inside the range is not used: its days inside it are chunked afresh, and
    the record then holds the new chunks for those days.

    Chunks the quota cannot serve today end `pending` (with `wait_for_quota`, the run waits for
    the reset); chunks whose replay the guide does not allow yet end `deferred` (with
    `wait_for_replays`, the run waits). An account-wide failure raises `AccountUnavailable`
    once the manifest is written; its `result` is this run's outcome."""
    out = Path(out_dir)
    if not exports:
        raise ConfigurationError("exports", "give at least one report")
    _check_day("start", start)
    _check_day("end", end)
    if end < start:
        raise ConfigurationError("start", f"the range starts ({start}) after it ends ({end})")
    now = client.clock.now()
    zone = await client.limiter.account_timezone()  # the account's day, as learned
    current_day = today or quota_day_bounds(now, zone)[0].date()
    if end > current_day:
        raise ConfigurationError(
            "end", f"{end} is in the future (today is {current_day}); there is no data yet"
        )
    if download_concurrency < 1 or submit_concurrency < 1 or max_replays < 0:
        raise ConfigurationError("concurrency", "concurrency limits must be at least 1")
    try:
        rule = parse_chunk_rule(chunk) if isinstance(chunk, str) else chunk
    except ValueError as exc:
        raise ConfigurationError("chunk", str(exc)) from None
    requests: list[ExportRequest] = []
    for spec in exports:  # every request is valid before any call (ExportRequest validates)
        try:
            requests.append(spec.request(Chunk(start, start)))
        except ValidationError as exc:
            where, _, problem = validation_problem(exc)
            raise ConfigurationError(where or f"export {spec.report_id!r}", problem) from None
    exports, duplicates = _distinct(exports, requests)
    if not dry_run:
        _check_out_dir(out)
    daily = await client.limiter.daily("ReportExport")  # the ledger's count: no call
    share = None if daily is None else daily.remaining // len(exports)  # an export's quota
    account = account_key(
        client.config.base_url, client.config.account_type, client.config.account_sid
    )
    items: list[tuple[ExportRequest, Chunk, str, str]] = []
    for spec in exports:
        if rule.kind == "auto":
            pieces = await _auto_chunks(
                ledger, account, spec, start, end,
                row_target=row_target, submits_left=share, record=not dry_run,
            )  # fmt: skip
        else:
            pieces = chunk_range(start, end, rule)
        for piece in pieces:
            request = spec.request(piece)
            print_ = fingerprint(
                request,
                base_url=client.config.base_url,
                account_type=client.config.account_type,
                account_sid=client.config.account_sid,
                today=current_day,
            )
            items.append((request, piece, print_.key, print_.canonical))
    known: dict[str, Known] = {}
    entries: dict[str, LedgerEntry] = {}
    for request, piece, key, _ in items:
        entry = await ledger.get(key)
        if entry is None:
            continue
        entries[key] = entry
        intact = entry.status is JobStatus.COMPLETED and await file_is_intact(
            entry, out / chunk_path(request, piece)
        )
        known[key] = Known(entry.job_id, entry.status, intact)
    plan = plan_chunks(
        items,
        known,
        quota_left_today=None if daily is None else daily.remaining,
        daily_limit=None if daily is None else daily.limit,
    )
    runner = _Backfill(
        client,
        ledger,
        plan,
        out,
        download_concurrency=download_concurrency,
        submit_concurrency=submit_concurrency,
        wait_for_quota=wait_for_quota,
        max_replays=max_replays,
        stuck_after=stuck_after,
        replay_policy=replay_policy or ReplayPolicy(),
        tick=tick or TickPolicy(),
        on_event=on_event,
        wait_for_replays=wait_for_replays,
    )
    for key, run in runner.runs.items():
        entry = entries.get(key)
        if run.status == "done" and entry is not None:  # done before: the ledger's record
            run.records, run.size, run.sha256 = entry.records, entry.file_size, entry.file_sha256
    for spec in duplicates:
        message = f"{_describe(spec)} is given more than once: pulled once"
        log.info("%s", message)
        runner.emit(ProgressEvent("duplicate", report_id=spec.report_id, message=message))
    runner.emit(ProgressEvent("plan", message=f"{plan.cost}", plan=plan))
    if dry_run:
        return BackfillResult(plan, tuple(runner.runs.values()), None, True, None, runner.calls())
    unproven = await _unproven_reports(ledger, plan)
    if check_reports:
        await _check_catalog(client, unproven)
    runner.unproven = set(unproven)
    merged: tuple[Path, ...] = ()
    if postbacks is not None:
        runner.postbacks_on = True
        unsubscribe = postbacks.subscribe(runner.on_postback)
    try:
        await runner.run()
        if merge:
            merged = await runner.merge_all(exports)
    finally:
        if postbacks is not None:
            unsubscribe()
        with anyio.CancelScope(shield=True):
            manifest = await anyio.to_thread.run_sync(runner.write_manifest)
    resets = [run.resets_at for run in runner.runs.values() if run.status == "pending"]
    later = [run.resets_at for run in runner.runs.values() if run.status == "deferred"]
    result = BackfillResult(
        plan,
        tuple(runner.runs.values()),
        manifest,
        False,
        min((r for r in resets if r is not None), default=None),
        runner.calls(),
        merged,
        tuple(runner.postback_latency),
        deferred_until=min((r for r in later if r is not None), default=None),
        stopped=runner.stopped,
    )
    if runner.stopped is not None:
        runner.stopped.result = result
        raise runner.stopped
    return result


class _Backfill:
    def __init__(
        self,
        client: ReportExportClient,
        ledger: Ledger,
        plan: Plan,
        out: Path,
        *,
        download_concurrency: int,
        submit_concurrency: int,
        wait_for_quota: bool,
        max_replays: int,
        stuck_after: timedelta,
        replay_policy: ReplayPolicy,
        tick: TickPolicy,
        on_event: Callable[[ProgressEvent], None] | None,
        wait_for_replays: bool = False,
    ) -> None:
        self.client = client
        self.wait_for_replays = wait_for_replays
        self.ledger = ledger
        self.plan = plan
        self.out = out
        self.download_concurrency = download_concurrency
        self.submit_concurrency = submit_concurrency
        self.wait_for_quota = wait_for_quota
        self.max_replays = max_replays
        self.stuck_after = stuck_after
        self.replay_policy = replay_policy
        self.tick = tick
        self.on_event = on_event
        #: The client's counts when this backfill began: its own calls are the difference (a
        #: client may have made others before, or run several backfills).
        self.calls_before = Counter(client.usage.calls)
        self.runs: dict[str, ChunkRun] = {}
        for planned in plan.chunks:
            run = ChunkRun(planned, job_id=planned.job_id)
            if planned.state == "done":
                run.status = "done"
            self.runs[planned.fingerprint] = run
        self.in_flight: dict[str, ChunkRun] = {}
        self.parked: list[tuple[datetime, ChunkRun, Job]] = []
        self.changed = anyio.Event()  # a job arrived, a download ended, submitting ended
        self.nudge = anyio.Event()  # a postback: cut the current pause short
        self.submitting = True
        self.downloads_waiting = 0
        self.quota_left: int | None = plan.cost.quota_left_today
        self.quota_wait = anyio.Lock()  # held by the submitter waiting for the quota's reset
        self.send, self.receive = anyio.create_memory_object_stream[ChunkRun](math.inf)
        #: Postback wake-ups (issue 6): job id -> the postback, until the tracker looks.
        self.postbacks_on = False
        self.nudged: dict[str, Postback] = {}
        self.early: dict[str, Postback] = {}  # for jobs not tracked yet (bounded)
        self.postback_latency: list[float] = []  # arrival to download start, real seconds
        self.quiet = 0  # refreshes in a row in which no job finished
        self.next_refresh: datetime | None = None  # when the safety net looks next
        #: report id -> why the server refused it: its other chunks are not submitted.
        self.refused: dict[str, str] = {}
        #: Report ids the server has never accepted: one chunk of each is submitted first.
        self.unproven: set[str] = set()
        #: set when the disk is full: no more submits or downloads in this run.
        self.disk_full: OutputError | None = None
        #: set when an account-wide failure stops the run.
        self.stopped: AccountUnavailable | None = None
        self.scope: anyio.CancelScope | None = None
        #: When a chunk last changed, and when a wait was last announced (client clock).
        self.last_change = client.clock.now()
        self.last_notice: dict[str, datetime] = {}

    # -- events ------------------------------------------------------------------------------------

    def calls(self) -> dict[str, int]:
        """The API calls this backfill made, by endpoint."""
        now = self.client.usage.calls
        return {
            name: n - self.calls_before[name]
            for name, n in now.items()
            if n > self.calls_before[name]
        }

    def emit(self, event: ProgressEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def notice(self, what: str, message: str, until: datetime | None, *, every: float) -> None:
        """A `wait` event, at most once every `every` seconds (client clock) for the same `what`,
        unless the time waited for moved."""
        now = self.client.clock.now()
        last = self.last_notice.get(what)
        if last is not None and (now - last).total_seconds() < every:
            return
        self.last_notice[what] = now
        log.info("%s", message)
        self.emit(ProgressEvent("wait", message=message, until=until))

    def on_limiter_wait(self, wait: LimiterWait) -> None:
        """The limiter is about to wait for the hourly bucket: say so."""
        self.notice(
            f"limiter {wait.until.isoformat()}",
            f"waiting for {wait.what} until {_when(wait.until)}",
            wait.until,
            every=NOTICE_EVERY,
        )

    def account_wide(self, error: ReportExportError, pause: float = 0.0) -> bool:
        """Stop the run when `error` concerns the whole account, or when every call has failed
        for longer than the outage limit (counting `pause` more seconds). True when the run is
        stopping: the caller returns at once."""
        if self.stopped is not None:
            return True
        problem = account_problem(error)
        stop: AccountUnavailable | None = None
        if isinstance(error, AccountUnavailable):
            stop = error
        elif problem is not None:
            stop = AccountUnavailable(problem, error)
        else:
            try:
                self.client.session.check_outage(error, pause)
            except AccountUnavailable as outage:
                stop = outage
        if stop is None:
            return False
        self.stopped = stop
        log.error("run stopped: %s", stop)
        self.emit(ProgressEvent("stopped", message=str(stop), calls=self.calls()))
        if self.scope is not None:
            self.scope.cancel()
        return True

    def set_status(self, run: ChunkRun, status: ChunkStatus, message: str | None = None) -> None:
        if run.status == status and message is None:
            return
        run.status = status
        self.last_change = self.client.clock.now()
        if message is not None:
            final = ("failed", "stuck", "pending", "deferred")
            run.error = message if status in final else run.error
        self.emit(
            ProgressEvent(
                "chunk",
                status=status,
                report_id=run.planned.report_id,
                chunk=str(run.planned.chunk),
                job_id=run.job_id,
                bytes=run.size or 0,
                calls=self.calls(),
                quota_left=self.quota_left,
                message=message,
            )
        )

    def poke(self) -> None:
        self.changed.set()

    def on_postback(self, postback: Postback) -> None:
        """A wake-up, never a fact: the tracker answers it by trying the download."""
        if postback.job_id in self.in_flight:
            self.nudged[postback.job_id] = postback
            self.nudge.set()
            self.poke()
        elif len(self.early) < 10_000:
            self.early[postback.job_id] = postback  # maybe a job whose submit has not returned

    # -- the run -----------------------------------------------------------------------------------

    async def run(self) -> None:
        new = [self.runs[p.fingerprint] for p in self.plan.by_state("new")]
        for planned in self.plan.by_state("attach"):
            run = self.runs[planned.fingerprint]
            entry = await self.ledger.get(planned.fingerprint)
            run.submitted_at = None if entry is None else (entry.submitted_at or entry.created_at)
            if entry is not None and entry.status is JobStatus.COMPLETED:
                await self.queue_download(run)  # known complete: the file is what is missing
            else:
                self.track(run, "running")
        queue = list(new)
        self.client.limiter.add_listener(self.on_limiter_wait)
        try:
            async with anyio.create_task_group() as group:
                self.scope = group.cancel_scope
                group.start_soon(self.submitting_all, queue)
                group.start_soon(self.tracker)
                for _ in range(self.download_concurrency):
                    group.start_soon(self.downloader)
        finally:
            self.client.limiter.remove_listener(self.on_limiter_wait)

    async def submitting_all(self, queue: list[ChunkRun]) -> None:
        """`submit_concurrency` submitters share the queue; then submitting is over. The first
        chunk of each unproven report goes first, alone among its report's chunks: if the server
        refuses the report, its other chunks fail without a call. With every report proven, the
        first chunk still goes first, alone."""
        probes: list[ChunkRun] = []
        for run in list(queue):  # in plan order
            report_id = run.planned.report_id
            if report_id in self.unproven and all(p.planned.report_id != report_id for p in probes):
                queue.remove(run)
                probes.append(run)
        if not probes and queue:
            # The run's first submit goes alone too: wrong credentials or a dead host then cost
            # one call, not one per submitter, before the run stops.
            probes.append(queue.pop(0))
        try:
            for phase in (probes, queue):
                async with anyio.create_task_group() as group:
                    for _ in range(min(self.submit_concurrency, len(phase))):
                        group.start_soon(self.submitter, phase)
        finally:
            self.submitting = False
            self.poke()

    async def submitter(self, queue: list[ChunkRun]) -> None:
        while queue:
            run = queue.pop(0)
            refused = self.refused.get(run.planned.report_id)
            if refused is not None or self.disk_full is not None:
                why = (
                    f"the server refused report {run.planned.report_id!r} ({refused})"
                    if refused is not None
                    else str(self.disk_full)
                )
                self.set_status(run, "failed", f"not submitted: {why}")
                continue
            spent = self.quota_left is not None and self.quota_left <= 0
            if spent and not await self.quota_gate(run, queue):
                return
            try:
                job_id = await submit_once(
                    self.client, self.ledger, run.planned.request, _print(run)
                )
            except QuotaExhausted as exhausted:
                self.quota_left = 0
                if not await self.quota_gate(run, queue, exhausted.resets_at):
                    return
                queue.insert(0, run)  # the quota has reset: this chunk goes first
                continue
            except ReportExportError as error:
                if self.account_wide(error):
                    queue.insert(0, run)
                    return
                if report_refused(error):
                    self.refused.setdefault(run.planned.report_id, str(error))
                elif worth_another_round(error) and run.submit_rounds < ROUNDS:
                    # An outage: this chunk goes to the back of the queue, after a pause. A
                    # submit whose answer was lost is answered with the same job (API-FACTS §1d).
                    if not await self.another_round(run, "submit", error, run.submit_rounds):
                        queue.insert(0, run)
                        return
                    run.submit_rounds += 1
                    queue.append(run)
                    continue
                self.set_status(run, "failed", f"submit failed: {error}")
                continue
            self.submitted(run, job_id)

    def submitted(self, run: ChunkRun, job_id: str) -> None:
        """A submit answered with `job_id`: one unit less of today's quota, and track it."""
        if self.quota_left is not None:
            # Submits in flight when another one found the quota spent: never below 0.
            self.quota_left = max(0, self.quota_left - 1)
        run.job_id = job_id
        run.submitted_at = self.client.clock.now()
        self.track(run, "submitted")

    async def quota_gate(
        self, run: ChunkRun, queue: list[ChunkRun], resets_at: datetime | None = None
    ) -> bool:
        """The daily quota is spent: wait for the reset (`wait_for_quota`), or report this chunk
        and the rest as pending. True when submitting may go on."""
        if resets_at is None:
            daily = await self.client.limiter.daily("ReportExport")
            if daily is None or daily.remaining > 0:
                # `quota_left` was stale (another submitter saw the reset): submit on.
                self.quota_left = None if daily is None else daily.remaining
                return True
            resets_at = daily.resets_at
        resets_at = resets_at.astimezone(self.client.limiter.timezone)  # the account's clock
        if self.wait_for_quota:
            # One submitter waits for the reset; the others wait for it (a clock that moves
            # with every sleep, like the sandbox's, must not be moved once per submitter).
            async with self.quota_wait:
                left = (resets_at - self.client.clock.now()).total_seconds()
                if left > 0:
                    message = (
                        f"waiting for the daily ReportExport quota's reset at {_when(resets_at)}"
                    )
                    self.notice("quota", message, resets_at, every=0.0)
                    await self.client.clock.sleep(left)
            daily = await self.client.limiter.daily("ReportExport")
            self.quota_left = None if daily is None else daily.remaining
            return True
        pending = [run, *queue]
        queue.clear()
        for item in pending:
            if item.status == "planned":
                item.resets_at = resets_at
                self.set_status(
                    item, "pending", f"daily ReportExport quota spent; resets {resets_at}"
                )
        self.emit(
            ProgressEvent(
                "quota", message=f"{len(pending)} chunks pending until {_when(resets_at)}"
            )
        )
        return False

    async def resubmit(self, run: ChunkRun) -> None:
        """Submit a chunk again whose job the server no longer knows (the guide: a result that
        is gone may be requested again), within today's quota."""
        run.job_id = None
        run.submitted_at = None
        try:
            job_id = await submit_once(self.client, self.ledger, run.planned.request, _print(run))
        except QuotaExhausted as exhausted:
            self.quota_left = 0
            run.resets_at = exhausted.resets_at
            self.set_status(
                run,
                "pending",
                f"daily ReportExport quota spent; resets {_when(exhausted.resets_at)}",
            )
            return
        except ReportExportError as error:
            if not self.account_wide(error):
                self.set_status(run, "failed", f"submit failed: {error}")
            return
        self.submitted(run, job_id)

    async def job_unknown(self, run: ChunkRun, job_id: str) -> None:
        """The server answered 404 for a job the ledger knew: forget it, and submit again."""
        log.warning("job %s of %s is unknown to the server; submitting it again", job_id, run.label)
        self.in_flight.pop(job_id, None)
        await self.ledger.forget_job(run.planned.fingerprint, job_id)
        self.set_status(run, "planned", f"job {job_id} is unknown to the server")
        await self.resubmit(run)

    def track(self, run: ChunkRun, status: ChunkStatus) -> None:
        assert run.job_id is not None
        self.in_flight[run.job_id] = run
        self.set_status(run, status)
        early = self.early.pop(run.job_id, None)
        if early is not None:
            self.nudged[run.job_id] = early
            self.nudge.set()
        self.poke()

    async def queue_download(self, run: ChunkRun) -> None:
        self.downloads_waiting += 1
        self.set_status(run, "downloading")
        await self.send.send(run)

    def finished(self) -> bool:
        return (
            not self.submitting
            and not self.in_flight
            and not self.parked
            and self.downloads_waiting == 0
        )

    # -- the tracker -------------------------------------------------------------------------------

    async def tracker(self) -> None:
        try:
            while not self.finished():
                if not self.in_flight and not self.parked and not self.nudged:
                    await self.changed.wait()
                    self.changed = anyio.Event()
                    continue
                await self.pause()
                await self.answer_postbacks()
                due = self.next_refresh is None or self.client.clock.now() >= self.next_refresh
                if due or self.parked_due():
                    # The safety net keeps its own pace: postbacks for some jobs never put off
                    # the refresh that finds the jobs whose postbacks were lost.
                    self.next_refresh = None
                    await self.refresh()
        finally:
            self.send.close()

    async def answer_postbacks(self) -> None:
        """Each job a postback named is tried once by downloading: 202 puts it back."""
        nudged, self.nudged = self.nudged, {}
        for job_id, postback in nudged.items():
            run = self.in_flight.pop(job_id, None)
            if run is None:
                continue  # already done or downloading: nothing to do, no call
            run.probe = postback
            await self.queue_download(run)

    def parked_due(self) -> bool:
        now = self.client.clock.now()
        return any(due <= now for due, _, _ in self.parked)

    async def pause(self) -> None:
        """Sleep until the next refresh is due (one tick on the client's clock), or less when a
        postback arrives."""
        if self.nudged:
            return
        now = self.client.clock.now()
        if self.next_refresh is None:
            window = self.client.limiter.hourly
            interval = tick_interval(
                len(self.in_flight),
                remaining=None if window is None else window.remaining,
                seconds_to_reset=None
                if window is None
                else max(0.0, (window.resets_at - now).total_seconds()),
                reserve=self.downloads_waiting + (4 if self.submitting else 0),
                policy=self.tick,
                postbacks=self.postbacks_on,
                quiet=self.quiet,
                youngest_age=self.youngest_age(now),
            )
            self.next_refresh = now + timedelta(seconds=interval)
        wait = (self.next_refresh - now).total_seconds()
        if self.parked:
            soonest = min(due for due, _, _ in self.parked)
            wait = min(wait, (soonest - now).total_seconds())
        wait = max(0.0, wait)
        self.announce_flight(now, now + timedelta(seconds=wait))
        self.nudge = anyio.Event()
        async with anyio.create_task_group() as group:

            async def sleeper() -> None:
                await self.client.clock.sleep(wait)
                group.cancel_scope.cancel()

            async def waker() -> None:
                await self.nudge.wait()
                group.cancel_scope.cancel()

            group.start_soon(sleeper)
            group.start_soon(waker)

    def announce_flight(self, now: datetime, next_look: datetime) -> None:
        """Jobs in flight and nothing finished for a while: say what the run waits for."""
        if not self.in_flight and not self.parked:
            return
        if (now - self.last_change).total_seconds() < NOTICE_EVERY:
            return
        states = Counter(run.status for run in self.in_flight.values())
        what = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        parts = [f"{len(self.in_flight)} jobs in flight ({what})"] if self.in_flight else []
        if self.parked:
            soonest = min(due for due, _, _ in self.parked)
            parts.append(f"{len(self.parked)} replays allowed from {_when(soonest)}")
        self.notice(
            "flight",
            f"waiting for {'; '.join(parts)}; next look at {_when(next_look)}",
            next_look,
            every=NOTICE_EVERY,
        )

    def youngest_age(self, now: datetime) -> float | None:
        """Seconds since the newest submit (or replay) among the jobs in flight."""
        submitted = [run.submitted_at for run in self.in_flight.values() if run.submitted_at]
        return (now - max(submitted)).total_seconds() if submitted else None

    async def refresh(self) -> None:
        """One listing call for every job in flight (a single job: one GET of it)."""
        now = self.client.clock.now()
        due = [item for item in self.parked if item[0] <= now]
        self.parked = [item for item in self.parked if item[0] > now]
        for _, run, job in due:
            await self.after_failure(run, job)
        if not self.in_flight:
            return
        seen: dict[str, Job] = {}
        unknown: list[str] = []
        try:
            since = min(
                (run.submitted_at for run in self.in_flight.values() if run.submitted_at),
                default=now,
            )
            tz = self.client.limiter.timezone
            after = since.astimezone(tz).date()
            if len(self.in_flight) > self.listing_pages(after):
                async for job in self.client.iter_jobs(created_after=after):
                    if job.id in self.in_flight:
                        seen[job.id] = job
            # Few jobs left among many listed: one GET each is cheaper than the listing; and a
            # job the listing missed is asked for by id.
            for job_id in [j for j in self.in_flight if j not in seen]:
                try:
                    seen[job_id] = await self.client.get_job(job_id)
                except NotFound:
                    unknown.append(job_id)
        except ReportExportError as error:
            # A failed refresh is retried next tick; only an account-wide failure stops the run.
            if not self.account_wide(error):
                self.emit(ProgressEvent("error", message=f"refresh failed: {error}"))
            return
        for job_id in unknown:
            lost = self.in_flight.get(job_id)
            if lost is not None:
                await self.job_unknown(lost, job_id)
        before = len(self.in_flight)
        tracked = [(self.in_flight[i], job) for i, job in seen.items() if i in self.in_flight]
        # One ledger transaction for the whole refresh, then the decisions.
        await self.ledger.record_statuses([(run.planned.fingerprint, job) for run, job in tracked])
        for run, job in tracked:
            await self.update(run, job, now)
        self.quiet = self.quiet + 1 if len(self.in_flight) == before else 0

    def listing_pages(self, after: date) -> int:
        """Pages a listing from `after` would take, counting the jobs this run knows of (other
        tools' jobs only add to it)."""
        tz = self.client.limiter.timezone
        listed = sum(
            1
            for run in self.runs.values()
            if run.submitted_at is not None and run.submitted_at.astimezone(tz).date() >= after
        )
        return max(1, math.ceil(listed / self.tick.page_size))

    async def update(self, run: ChunkRun, job: Job, now: datetime) -> None:
        """Act on a job's state (the ledger has recorded it already)."""
        run.records = job.records_processed
        status = job.status
        if status is JobStatus.COMPLETED:
            del self.in_flight[job.id]
            await self.queue_download(run)
        elif status in (JobStatus.FAILED, JobStatus.CANCELLED):
            del self.in_flight[job.id]
            await self.after_failure(run, job)
        elif run.submitted_at is not None and now - run.submitted_at > self.stuck_after:
            del self.in_flight[job.id]
            self.set_status(run, "stuck", f"still {status.value} after {self.stuck_after}")
        else:
            self.set_status(run, "running")

    async def after_failure(self, run: ChunkRun, job: Job, *, expired: bool = False) -> None:
        """FAILED/CANCELLED (or an expired result): replay through the guard, at most
        `max_replays` times; a `too_soon` refusal parks the chunk until the guard allows it."""
        if run.replays >= self.max_replays:
            self.set_status(run, "failed", f"job {job.id} ended {job.status.value}")
            return
        entry = await self.ledger.get(run.planned.fingerprint)
        assert entry is not None
        try:
            new_id = await replay_guarded(
                self.client,
                self.ledger,
                run.planned.fingerprint,
                entry,
                job,
                fresh=False,
                force=False,
                expired=expired,
                policy=self.replay_policy,
            )
        except (JobFailed, ReplayRefused) as refused:
            cause = refused.__cause__ if isinstance(refused, JobFailed) else refused
            if isinstance(cause, ReplayRefused) and cause.rule == "too_soon":
                base = entry.submitted_at or entry.created_at
                allowed = base + self.replay_policy.min_age
                why = f"job {job.id} ended {job.status.value}; a replay is allowed from"
                if self.expired_or_failed_wait(run, job, allowed):
                    self.set_status(run, "running", f"{why} {_when(allowed)}: waiting")
                    return
                run.resets_at = allowed
                self.set_status(
                    run,
                    "deferred",
                    f"{why} {_when(allowed)} (never right after a submit): run again then",
                )
                return
            self.set_status(run, "failed", str(refused))
            return
        except NotFound:
            await self.job_unknown(run, job.id)
            return
        except ReportExportError as error:
            if not self.account_wide(error):
                self.set_status(run, "failed", f"replay failed: {error}")
            return
        run.replays += 1
        run.job_id = new_id
        run.submitted_at = self.client.clock.now()
        self.track(run, "submitted")

    def expired_or_failed_wait(self, run: ChunkRun, job: Job, allowed: datetime) -> bool:
        """With `wait_for_replays`, park the chunk until its replay is allowed (and say so);
        False when the run does not wait."""
        if not self.wait_for_replays:
            return False
        self.parked.append((allowed, run, job))
        self.notice(
            f"replay {job.id}",
            f"waiting until {_when(allowed)} to replay job {job.id} of {run.label}",
            allowed,
            every=0.0,
        )
        return True

    # -- downloads ---------------------------------------------------------------------------------

    async def downloader(self) -> None:
        async with self.receive.clone() as receive:
            async for run in receive:
                try:
                    await self.download(run)
                finally:
                    self.downloads_waiting -= 1
                    self.poke()

    async def download(self, run: ChunkRun) -> None:
        assert run.job_id is not None
        dest = self.out / run.planned.path
        if self.disk_full is not None:  # no call spent on a download that cannot be written
            self.set_status(run, "failed", f"not downloaded: {self.disk_full}")
            return
        probe, run.probe = run.probe, None
        if probe is not None:
            self.postback_latency.append(time.monotonic() - probe.arrived)
        while True:
            failure: ReportExportError
            try:
                try:
                    await anyio.to_thread.run_sync(
                        lambda: dest.parent.mkdir(parents=True, exist_ok=True)
                    )
                except OSError as exc:
                    raise OutputError(dest.parent, exc) from exc
                result = await self.client.download(
                    run.job_id,
                    dest,
                    wait=probe is None,
                    on_saved=download_recorder(self.ledger, run.planned.fingerprint),
                )
                break
            except JobNotReady:
                # An early or forged postback: one call spent, nothing recorded; keep tracking.
                self.in_flight[run.job_id] = run
                self.set_status(run, "running")
                return
            except JobFailed as failed:
                await self.after_failure(run, failed.job)
                return
            except HTTPStatusError as error:
                if isinstance(error, NotFound) or error.status == 410:
                    await self.result_gone(run, run.job_id)
                    return
                failure = error
            except ReportExportError as error:
                failure = error
            if self.account_wide(failure):
                return
            if isinstance(failure, OutputError) and failure.disk_full:
                self.disk_full = failure
            elif worth_another_round(failure) and run.download_rounds < ROUNDS:
                if not await self.another_round(run, "download", failure, run.download_rounds):
                    return
                run.download_rounds += 1
                if self.disk_full is None:
                    continue
            self.set_status(run, "failed", f"download failed: {failure}")
            return
        run.size = result.size
        run.sha256 = result.sha256
        self.set_status(run, "done")

    async def result_gone(self, run: ChunkRun, job_id: str) -> None:
        """The Download answered 404/410: an expired result is replayed through the guard; a
        job the server does not know at all is submitted again."""
        try:
            job = await self.client.get_job(job_id)
        except NotFound:
            await self.job_unknown(run, job_id)
            return
        except ReportExportError as error:
            if not self.account_wide(error):
                self.set_status(run, "failed", f"download failed: {error}")
            return
        await self.after_failure(run, job, expired=True)

    async def another_round(
        self, run: ChunkRun, what: str, error: ReportExportError, rounds: int
    ) -> bool:
        """Pause before a chunk's next round of `what` (its retries ran out on an outage).
        False when the outage has lasted too long: the run is stopping."""
        pause = ROUND_PAUSE * rounds
        if self.account_wide(error, pause):
            return False
        log.info("%s of %s failed (%s); round %d of %d in %.0fs", what, run.label, error,
                 rounds + 1, ROUNDS, pause)  # fmt: skip
        self.emit(
            ProgressEvent(
                "retry", report_id=run.planned.report_id, chunk=str(run.planned.chunk),
                job_id=run.job_id, message=f"{what} failed ({error}); trying again in {pause:.0f}s",
            )
        )  # fmt: skip
        await self.client.clock.sleep(pause)
        return True

    # -- after the run -----------------------------------------------------------------------------

    def write_manifest(self) -> Path:
        """`<out>/manifest.json`, atomically (`.part`, fsync, rename); `OutputError` if the disk
        refuses it (the previous manifest, if any, stays whole)."""
        path = self.out / "manifest.json"
        part = path.with_name(path.name + ".part")
        try:
            self._write_manifest(path, part)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise OutputError(path, exc) from exc
        return path

    def _write_manifest(self, path: Path, part: Path) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        counts = Counter(run.status for run in self.runs.values())
        document = {
            "generated_at": self.client.clock.now().isoformat(),
            "account_type": self.client.config.account_type.value,
            "stopped": None if self.stopped is None else str(self.stopped),
            "counts": dict(counts),
            "calls": self.calls(),
            "chunks": [run.to_manifest(self.out) for run in self.runs.values()],
        }
        with open(part, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)

    async def merge_all(self, exports: Sequence[ExportSpec]) -> tuple[Path, ...]:
        merged: list[Path] = []
        # One report in two formats shares a folder: each format merges into its own file.
        by_target: dict[tuple[Path, str], list[ChunkRun]] = {}
        for run in self.runs.values():
            key = (Path(run.planned.path.parent), run.planned.request.result_format)
            by_target.setdefault(key, []).append(run)
        for (folder, fmt), runs in by_target.items():
            if not all(run.status == "done" for run in runs):
                continue
            runs.sort(key=lambda run: run.planned.chunk.start)
            target = self.out / f"{folder}.{fmt.lower()}"
            files = [self.out / run.planned.path for run in runs]
            try:
                await anyio.to_thread.run_sync(merge_files, files, target, fmt)
            except OSError as exc:
                raise OutputError(target, exc) from exc
            merged.append(target)
        return tuple(merged)


def _when(moment: datetime) -> str:
    """A moment for messages: to the second, with its UTC offset."""
    return moment.replace(microsecond=0).isoformat()


def _print(run: ChunkRun) -> Fingerprint:
    return Fingerprint(run.planned.fingerprint, run.planned.canonical)


_XML_OPEN = b"<Records>"
_XML_CLOSE = b"</Records>"


def merge_files(files: Sequence[Path], target: Path, fmt: str) -> None:
    """Stream chunk files into one (`.part`, fsync, rename): CSV with a single header, JSON as one
    array, XML as one `<Records>` list; in the order given. Blocking: run it in a thread."""
    part = target.with_name(target.name + ".part")
    try:
        with open(part, "wb") as out:
            if fmt == "CSV":
                for index, path in enumerate(files):
                    with open(path, "rb") as source:
                        header = source.readline()
                        if index == 0:
                            out.write(header)
                        _copy(source, out)
            elif fmt == "JSON":
                out.write(b"[\n")
                first = True
                for path in files:
                    body = path.read_bytes().strip()
                    inner = body[1:-1].strip() if body.startswith(b"[") else body
                    if inner:
                        if not first:
                            out.write(b",\n")
                        out.write(inner)
                        first = False
                out.write(b"\n]\n")
            else:
                head = b""
                tail = b"\n"
                for index, path in enumerate(files):
                    body = path.read_bytes()
                    start = body.find(_XML_OPEN)
                    stop = body.rfind(_XML_CLOSE)
                    if start < 0 or stop < 0:
                        raise ValueError(f"{path} is not an XML result with <Records>")
                    if index == 0:
                        head = body[: start + len(_XML_OPEN)]
                        tail = body[stop:]
                        out.write(head)
                    out.write(body[start + len(_XML_OPEN) : stop])
                out.write(tail)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _copy(source: Any, out: Any) -> None:
    while chunk := source.read(1 << 20):
        out.write(chunk)
