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

from ..core.fingerprint import Fingerprint, fingerprint
from ..core.lifecycle import ClaimedElsewhere as ClaimedElsewhereEvent
from ..core.lifecycle import (
    Defer,
    End,
    Forget,
    Found,
    JobUnknown,
    Phase,
    Replay,
    Submit,
    Terms,
    Track,
    begin,
    step,
)
from ..core.models import ClickExportRequest, ExportRequest, Job
from ..core.quota import quota_day_bounds
from ..core.replay import (
    ReplayDecision,
    ReplayPolicy,
    ReplayRequest,
    check_replay,
    require_replay,
)
from ..destinations.base import Loaded
from ..destinations.files import canonical
from ..errors import NotFound
from ..ledger import LedgerEntry
from ..ledger.store import LedgerStore
from ..transport.api import ReportExportClient
from .driver import (
    Driver,
    claim,
    file_is_intact,
    judged,
    refusal,
    replay_recorded,
    submit_claimed,
)

__all__ = [
    "ExportOutcome",
    "ReplayOutcome",
    "fetch_export",
    "file_is_intact",
    "fingerprint_for",
    "replay_guarded",
    "replay_job",
    "submit_once",
]

Action = Literal["cached", "downloaded"]


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
    #: With `into`: what was loaded where (empty when the destination held this file already).
    loaded: tuple[Loaded, ...] = ()


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
    the account's day when the caller knows it better than the client's clock (the server's).
    `dest` is compared and recorded in its canonical spelling (`destinations.canonical`): the
    same file through another spelling of its path is the same export, and costs no call. The
    outcome's `path` is `dest` as given."""
    given, dest = Path(dest), canonical(dest)
    print_ = fingerprint_for(client, request, today)
    async with _locks[print_.key]:
        try:
            outcome = await _fetch(
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
            return dataclasses.replace(outcome, path=given)
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
    terms = Terms(
        print_.key,
        range_end=request.end if isinstance(request, ExportRequest) else request.date,
        fresh=fresh,
        force=force_replay,
        max_replays=max_replays,
        policy=policy,
        tz=client.limiter.timezone,
    )
    driver = Driver(client, ledger, request, print_, dest, terms, deadline=deadline)
    life = await driver.run()
    assert life.phase is Phase.SAVED
    assert life.job_id is not None
    if life.cached:
        entry = driver.entry
        assert entry is not None
        assert entry.file_size is not None
        assert entry.file_sha256
        return ExportOutcome(
            print_.key, life.job_id, dest, entry.file_size, entry.file_sha256, entry.records,
            "cached", submitted=False, replayed=False,
        )  # fmt: skip
    saved = driver.saved
    assert saved is not None
    records = driver.job.records_processed if driver.job is not None else None
    if records is None and driver.entry is not None and driver.entry.job_id == life.job_id:
        records = driver.entry.records
    return ExportOutcome(
        print_.key, life.job_id, saved.path, saved.size, saved.sha256, records, "downloaded",
        submitted=life.made_here, replayed=life.replays + life.refreshes > 0,
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
    # The first moves of the lifecycle table: claim, then submit (or follow another's job).
    life, _ = step(begin(Terms(print_.key)), Found(), client.clock.now())
    while True:
        found = await claim(
            ledger, request, print_, clock=client.clock, wait_for_others=wait_for_others
        )
        life, actions = step(life, found, client.clock.now())
        (action,) = actions
        if isinstance(action, Submit):
            return await submit_claimed(client, ledger, request, print_.key)
        if isinstance(action, Track):
            return action.job_id  # another task or process submitted it meanwhile
        assert isinstance(found, ClaimedElsewhereEvent)
        if not wait_for_others:
            raise ClaimedElsewhere(found.owner)
        await client.clock.sleep(1.0)  # another live process is submitting it right now


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
    """Replay through the guard (the lifecycle table's judgement); returns the job id to follow
    from now on. A job the server no longer knows is forgotten (and `NotFound` raised).
    `day_start` is when the account's day began on the client's clock, when the caller knows it
    better than the client's clock (the server's day)."""
    now = client.clock.now()
    tz = client.limiter.timezone
    if day_start is None:
        day_start, _ = quota_day_bounds(now, tz)
    terms = Terms(key, range_end=entry.range_end, fresh=fresh, force=force, policy=policy, tz=tz)
    replays_today = await ledger.replays_since(key, day_start)
    life, actions = judged(terms, entry, job, now, expired=expired, replays_today=replays_today)
    (action,) = actions
    if isinstance(action, Replay):
        try:
            return await replay_recorded(client, ledger, key, action)
        except NotFound:
            # The server no longer knows the job: the table forgets it, so that the next run
            # submits the export again (the history keeps the old job).
            _, after = step(life, JobUnknown(), now)
            for forget in (a for a in after if isinstance(a, Forget)):
                await ledger.forget_job(key, forget.job_id)
            raise
    if isinstance(action, Defer | End) and action.decision is not None:
        raise await refusal(ledger, key, job, action.decision, terms)
    # The table follows the job instead (still running, or completed and no refresh asked
    # for): the guard says why no replay.
    asked = ReplayRequest(
        job.id, job.status, entry.submitted_at or entry.created_at, now,
        range_end=entry.range_end, replays_today=replays_today, tz=tz,
    )  # fmt: skip
    raise await refusal(ledger, key, job, check_replay(asked, policy), terms)


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
    # Job ids are the server's: another account may use the same.
    account = client.config.account_key
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
