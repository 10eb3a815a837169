"""One export, remembered: `fetch_export` gets a report's result into a file spending as few
calls as the guide allows, with the ledger's memory.

    async with Ledger() as ledger, ReportExportClient(config, limiter=...) as client:
        outcome = await fetch_export(client, ledger, request, Path("out/actions.csv"))

- A completed export whose file is present with the recorded size and sha256 costs no call.
- A known job is re-attached to, never submitted again (the guide's rule 1, docs/guide.md); a
  missing or damaged file is downloaded again by job id.
- The intent is recorded before the submit and the job id right after it (write-ahead). A crash
  between the two is covered by the service's own de-duplication: the next run submits the same
  parameters and gets the same job id back (docs/api-facts.md §1d).
- A job that ended FAILED or CANCELLED, a result that has expired (Download 404/410), or a caller
  asking for fresh data leads to a replay, through the replay guard (`core.replay`); a refused
  replay raises `ReplayRefused` naming the rule.
- A recorded job the server no longer knows (404 on `GET /Jobs/{Id}`) is forgotten and the export
  submitted again.

The orchestrator runs many of these with one shared tracker instead of one `wait` per job.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import anyio

from .api import ReportExportClient
from .core.fingerprint import Fingerprint, account_key, fingerprint
from .core.models import ClickExportRequest, ExportRequest, Job, JobStatus
from .core.quota import quota_day_bounds
from .core.replay import (
    ReplayDecision,
    ReplayPolicy,
    ReplayRequest,
    check_replay,
    require_replay,
)
from .downloads import DownloadResult, OnSaved
from .errors import HTTPStatusError, JobFailed, NotFound
from .ledger import LedgerEntry
from .ledger_store import LedgerStore

__all__ = [
    "ExportOutcome",
    "ReplayOutcome",
    "download_recorder",
    "fetch_export",
    "file_is_intact",
    "fingerprint_for",
    "replay_guarded",
    "replay_job",
    "submit_once",
]

Action = Literal["cached", "downloaded"]
_CHECK_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExportOutcome:
    """Where the result is and how it got there. `submitted` and `replayed` say whether this
    call spent a ReportExport (or a replay); `action` is `cached` when no call was made at all."""

    fingerprint: str
    job_id: str
    path: Path
    size: int
    sha256: str
    records: int | None
    action: Action
    submitted: bool
    replayed: bool


def fingerprint_for(
    client: ReportExportClient,
    request: ExportRequest | ClickExportRequest,
    today: date | None = None,
) -> Fingerprint:
    """The request's fingerprint for the client's account, on `today` (default: today's quota
    day on the client's clock)."""
    if today is None:
        today = quota_day_bounds(client.clock.now(), client.limiter.timezone)[0].date()
    return fingerprint(
        request,
        base_url=client.config.base_url,
        account_type=client.config.account_type,
        account_sid=client.config.account_sid,
        today=today,
    )


def _sha256_of(path: Path) -> tuple[int, str] | None:
    import hashlib

    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHECK_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size, digest.hexdigest()


async def file_is_intact(entry: LedgerEntry, dest: Path | None = None) -> bool:
    """The recorded file is at `dest` (or where it was recorded) with its size and sha256."""
    path = dest or entry.file_path
    if path is None or entry.file_size is None or entry.file_sha256 is None:
        return False
    if entry.file_path is not None and dest is not None and Path(entry.file_path) != dest:
        return False
    try:
        if path.stat().st_size != entry.file_size:  # cheap check first
            return False
    except OSError:
        return False
    found = await anyio.to_thread.run_sync(_sha256_of, path)
    return found == (entry.file_size, entry.file_sha256)


class ClaimedElsewhere(Exception):  # a signal between two parts, not an error
    """Another live worker holds the chunk's claim: it submits and follows it."""

    def __init__(self, owner: str | None) -> None:
        self.owner = owner
        super().__init__(f"claimed by {owner}")


# One lock per fingerprint in this process: two tasks asking for the same export share one
# submit. (Across processes the ledger's claim does the same.)
_locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)


async def fetch_export(
    client: ReportExportClient,
    ledger: LedgerStore,
    request: ExportRequest | ClickExportRequest,
    dest: str | Path,
    *,
    fresh: bool = False,
    force_replay: bool = False,
    replay_policy: ReplayPolicy | None = None,
    max_replays: int = 2,
    deadline: float | None = None,
    today: date | None = None,
) -> ExportOutcome:
    """Get the result of `request` into `dest`, spending as few calls as possible. `today` is
    the account's day when the caller knows it better than the client's clock (the server's)."""
    dest = Path(dest)
    print_ = fingerprint_for(client, request, today)
    async with _locks[print_.key]:
        try:
            return await _fetch(
                client,
                ledger,
                request,
                dest,
                print_,
                fresh=fresh,
                force_replay=force_replay,
                policy=replay_policy or ReplayPolicy(),
                max_replays=max_replays,
                deadline=deadline,
            )
        finally:
            # Whatever happened, this call no longer follows the chunk: another may at once.
            with anyio.CancelScope(shield=True):
                await ledger.release_lease(print_.key)


async def _fetch(
    client: ReportExportClient,
    ledger: LedgerStore,
    request: ExportRequest | ClickExportRequest,
    dest: Path,
    print_: Fingerprint,
    *,
    fresh: bool,
    force_replay: bool,
    policy: ReplayPolicy,
    max_replays: int,
    deadline: float | None,
) -> ExportOutcome:
    key = print_.key
    entry = await ledger.get(key)
    if (
        entry is not None
        and entry.job_id is not None
        and entry.status is JobStatus.COMPLETED
        and not fresh
        and not force_replay
        and await file_is_intact(entry, dest)
    ):
        assert entry.file_size is not None
        assert entry.file_sha256 is not None
        return ExportOutcome(
            key, entry.job_id, dest, entry.file_size, entry.file_sha256, entry.records,
            "cached", submitted=False, replayed=False,
        )  # fmt: skip
    submitted = False
    replayed = False
    job_id = entry.job_id if entry is not None else None
    if job_id is None:
        job_id = await submit_once(client, ledger, request, print_)
        submitted = True
    elif fresh or force_replay:
        assert entry is not None
        job = await client.get_job(job_id)
        await ledger.record_status(key, job)
        job_id = await replay_guarded(
            client, ledger, key, await _entry(ledger, key), job,
            fresh=fresh, force=force_replay, expired=False, policy=policy,
        )  # fmt: skip
        replayed = True
    replays = 0
    while True:
        try:
            job = await client.wait(job_id, deadline=deadline)
        except NotFound:
            if submitted:
                raise  # the job this call just made: not a forgotten one
            # The server no longer knows the recorded job: a result that is gone may be asked
            # for again (the ledger keeps the old job in its history).
            await ledger.forget_job(key, job_id)
            job_id = await submit_once(client, ledger, request, print_)
            submitted = True
            continue
        await ledger.record_status(key, job)
        if job.status is not JobStatus.COMPLETED:
            if replays >= max_replays:
                raise JobFailed(
                    job, f"job {job.id} ended {job.status.value} after {replays} replays"
                )
            job_id = await replay_guarded(
                client, ledger, key, await _entry(ledger, key), job,
                fresh=False, force=False, expired=False, policy=policy,
            )  # fmt: skip
            replays += 1
            replayed = True
            continue
        try:
            result = await client.download(job_id, dest, on_saved=download_recorder(ledger, key))
        except HTTPStatusError as exc:
            if not (isinstance(exc, NotFound) or exc.status == 410) or replays >= max_replays:
                raise
            # Results may be kept only 90 days (docs/api-facts.md §2): replay, never resubmit.
            job_id = await replay_guarded(
                client, ledger, key, await _entry(ledger, key), job,
                fresh=False, force=False, expired=True, policy=policy,
            )  # fmt: skip
            replays += 1
            replayed = True
            continue
        return _outcome(key, job, result, submitted=submitted, replayed=replayed)


def download_recorder(ledger: LedgerStore, key: str) -> OnSaved:
    """Records a download in the ledger the moment its file is in place, shielded with its
    rename: a cancellation (Ctrl-C, a run that stops) never leaves a file the ledger does not
    know."""

    async def record(result: DownloadResult) -> None:
        await ledger.record_download(key, result.job_id, result.path, result.size, result.sha256)

    return record


def _outcome(
    key: str, job: Job, result: DownloadResult, *, submitted: bool, replayed: bool
) -> ExportOutcome:
    return ExportOutcome(
        key, job.id, result.path, result.size, result.sha256, job.records_processed,
        "downloaded", submitted=submitted, replayed=replayed,
    )  # fmt: skip


async def _entry(ledger: LedgerStore, key: str) -> LedgerEntry:
    entry = await ledger.get(key)
    assert entry is not None, "the entry was written before"
    return entry


async def submit_once(
    client: ReportExportClient,
    ledger: LedgerStore,
    request: ExportRequest | ClickExportRequest,
    print_: Fingerprint,
    *,
    wait_for_others: bool = True,
) -> str:
    """Write-ahead submit: intent, the call, the job id. Waits for another worker's claim; with
    `wait_for_others=False`, raises `ClaimedElsewhere` instead (the caller watches the chunk).
    A job another worker recorded is returned; without waiting, only once its lease is this
    worker's (the caller then follows the job)."""
    is_report = isinstance(request, ExportRequest)
    while True:
        entry, mine = await ledger.claim(
            print_.key,
            print_.canonical,
            endpoint="ReportExport" if is_report else "ClickExport",
            report_id=request.report_id if isinstance(request, ExportRequest) else None,
            range_start=request.start if isinstance(request, ExportRequest) else request.date,
            range_end=request.end if isinstance(request, ExportRequest) else request.date,
            result_format=request.result_format,
        )
        if entry.job_id is not None:
            if not wait_for_others and entry.claimed_by != ledger.owner:
                raise ClaimedElsewhere(entry.claimed_by)
            return entry.job_id  # another task or process submitted it meanwhile
        if mine:
            break
        if not wait_for_others:
            raise ClaimedElsewhere(entry.claimed_by)
        await client.clock.sleep(1.0)  # another live process is submitting it right now
    try:
        ticket = await client.export(request)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ledger.release_claim(print_.key)
        raise
    # No wait between the answer and its record: a cancellation (the session lets a submit
    # finish) lands after the job id is in the ledger, for the next run to re-attach to.
    with anyio.CancelScope(shield=True):
        await ledger.record_submitted(print_.key, ticket.job_id)
    return ticket.job_id


async def replay_guarded(
    client: ReportExportClient,
    ledger: LedgerStore,
    key: str,
    entry: LedgerEntry,
    job: Job,
    *,
    fresh: bool,
    force: bool,
    expired: bool,
    policy: ReplayPolicy,
    day_start: datetime | None = None,
) -> str:
    """Replay through the guard; returns the job id to follow from now on. `day_start` is when
    the account's day began on the client's clock, when the caller knows it better than the
    client's clock (the server's day)."""
    now = client.clock.now()
    tz = client.limiter.timezone
    if day_start is None:
        day_start, _ = quota_day_bounds(now, tz)
    decision_input = ReplayRequest(
        job_id=job.id,
        status=job.status,
        submitted_at=entry.submitted_at or entry.created_at,
        now=now,
        range_end=entry.range_end,
        last_completed_at=entry.completed_at,
        replays_today=await ledger.replays_since(key, day_start),
        fresh=fresh,
        force=force,
        expired=expired,
        tz=tz,
    )
    try:
        decision = require_replay(decision_input, policy)
    except Exception as refused:
        await ledger.record_event(
            key, "replay_refused", job.id, {"reason": str(refused), "status": job.status.value}
        )
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and not fresh and not force:
            raise JobFailed(job, f"job {job.id} ended {job.status.value}; {refused}") from refused
        raise
    replayed = await client.replay(job.id)
    await ledger.record_replay(key, job.id, replayed, rule=decision.rule)
    return replayed.id


@dataclass(frozen=True)
class ReplayOutcome:
    """A replay asked for by hand (`reportexport jobs replay`). `replayed` is the job replayed,
    `job_id` the one to follow from now on (the agency API makes a new one); `decision` is the
    guard's rule that allowed it; `unforced` is what the guard says without `force` when that
    refused, i.e. why `force` was needed."""

    replayed: str
    job_id: str
    decision: ReplayDecision
    unforced: ReplayDecision | None
    fingerprint: str | None


async def replay_job(
    client: ReportExportClient,
    ledger: LedgerStore,
    job_id: str,
    *,
    force: bool = False,
    fresh: bool = False,
    policy: ReplayPolicy | None = None,
) -> ReplayOutcome:
    """Replay one job by id, through the replay guard (the guide's rule 4, docs/guide.md).

    A job the ledger knows goes through `replay_guarded` (its submit time, today's replays, the
    range; the replay is recorded). A job the ledger does not know is judged on what the API says
    of it (its `CreatedDate`; no replay today is known). `force` passes only the rules the guard
    lets a caller override (`once_per_day`, `not_justified`), never `in_progress`,
    `service_retries` or `too_soon`. Raises `ReplayRefused` (or `JobFailed` for a failed job whose
    replay is refused) naming the rule.
    """
    rules = policy or ReplayPolicy()
    job = await client.get_job(job_id)
    config = client.config  # job ids are the server's: another account may use the same
    account = account_key(config.base_url, config.account_type, config.account_sid)
    entry = await ledger.find(job_id, account=account)
    now = client.clock.now()
    tz = client.limiter.timezone
    if entry is not None:
        await ledger.record_status(entry.fingerprint, job)
        entry = await _entry(ledger, entry.fingerprint)
        day_start, _ = quota_day_bounds(now, tz)
        asked = ReplayRequest(
            job_id=job.id,
            status=job.status,
            submitted_at=entry.submitted_at or entry.created_at,
            now=now,
            range_end=entry.range_end,
            last_completed_at=entry.completed_at,
            replays_today=await ledger.replays_since(entry.fingerprint, day_start),
            fresh=fresh,
            force=force,
            tz=tz,
        )
    else:
        asked = ReplayRequest(
            job_id=job.id,
            status=job.status,
            # Without a creation time the job counts as just submitted: `too_soon` refuses.
            submitted_at=job.created_date or now,
            now=now,
            last_completed_at=job.completed_date,
            fresh=fresh,
            force=force,
            tz=tz,
        )
    decision = require_replay(asked, rules)
    unforced = None
    if force:
        without = check_replay(dataclasses.replace(asked, force=False), rules)
        unforced = None if without.allowed else without
    if entry is not None:
        new_id = await replay_guarded(
            client, ledger, entry.fingerprint, entry, job,
            fresh=fresh, force=force, expired=False, policy=rules,
        )  # fmt: skip
        return ReplayOutcome(job.id, new_id, decision, unforced, entry.fingerprint)
    replayed = await client.replay(job.id)
    return ReplayOutcome(job.id, replayed.id, decision, unforced, None)
