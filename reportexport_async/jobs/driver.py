"""The driver: runs the life of one export (`core.lifecycle`) against the API and the ledger.

The table decides; the driver performs each action (claim, submit, track, download, replay,
forget), turns what happened into the table's next event, and is the one writer of the ledger for
that export. It spends calls only as the table says, so the guide's rules (docs/guide.md) hold
here because they hold in the table.

    life = await Driver(client, ledger, request, print_, dest, terms).run()

A life that ends without a file raises what the caller knows: `JobFailed` for a job that ended
FAILED or CANCELLED and may not be replayed (yet), `ReplayRefused` for a refresh the guard
refuses, the server's own error for a result that is gone or a job lost right after its submit.
The pieces (`claim`, `submit_claimed`, `replay_recorded`, `download_recorded`) also serve the
orchestrator, which follows many lives at once with one tracker.

Not written here: the daily and hourly quota counters, which the rate limiter keeps through its
counters store while it sends a call (a charge must be taken before the call leaves, across
processes, and refunded when the answer shows it was not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import anyio

from ..core.fingerprint import Fingerprint
from ..core.lifecycle import (
    Action,
    Attached,
    Claim,
    Claimed,
    ClaimedElsewhere,
    Defer,
    Download,
    DownloadGone,
    End,
    Event,
    Forget,
    Found,
    Inspect,
    JobUnknown,
    Life,
    Replay,
    Replayed,
    Saved,
    Status,
    Submit,
    Submitted,
    Terms,
    Track,
    WaitForClaim,
    begin,
    step,
)
from ..core.models import ClickExportRequest, ExportRequest, Job, JobStatus
from ..core.quota import quota_day_bounds
from ..core.replay import ReplayDecision
from ..destinations.files import file_is_intact
from ..errors import HTTPStatusError, JobFailed, NotFound, ReplayRefused
from ..ledger import LedgerEntry
from ..ledger.store import LedgerStore
from ..transport.api import ReportExportClient
from ..transport.downloads import DownloadResult, Receipt
from ..transport.server_clock import ServerClock

__all__ = [
    "Driver",
    "claim",
    "download_recorded",
    "file_is_intact",
    "judged",
    "refusal",
    "replay_recorded",
    "submit_claimed",
]


@dataclass
class Driver:
    """One export's life, from what the ledger knows to a saved file (or a stated end)."""

    client: ReportExportClient
    ledger: LedgerStore
    request: ExportRequest | ClickExportRequest
    print_: Fingerprint
    dest: Path
    terms: Terms
    deadline: float | None = None  # of each wait, in seconds of the client's clock
    job: Job | None = None  # the last the server said of the job followed
    saved: DownloadResult | None = None
    entry: LedgerEntry | None = None  # what the ledger knew at the start
    _error: BaseException | None = None  # the server's answer behind an `End`

    def _now(self) -> datetime:
        """Every judgement of time in this driver reads this one clock."""
        return self.client.clock.now()

    async def run(self) -> Life:
        life, actions = step(begin(self.terms), await self._found(), self._now())
        while not life.terminal:
            event: Event | None = None
            for action in actions:  # e.g. forget a job, then claim: the last one answers
                event = await self._do(life, action)
            assert event is not None, f"no answer to {actions}"
            life, actions = step(life, event, self._now())
        if life.end is not None:
            await self._ended(life.end)
        return life

    async def _found(self) -> Found:
        key = self.print_.key
        entry = self.entry = await self.ledger.get(key)
        if entry is None or entry.job_id is None:
            return Found()
        # Hash the file only when the table may take it as the result.
        intact = (
            entry.status is JobStatus.COMPLETED
            and not (self.terms.fresh or self.terms.force)
            and await file_is_intact(entry, self.dest)
        )
        day_start, _ = quota_day_bounds(self._now(), self.client.limiter.timezone)
        return Found(
            entry.job_id,
            entry.status,
            entry.submitted_at or entry.created_at,
            entry.completed_at,
            intact=intact,
            replays_today=0 if intact else await self.ledger.replays_since(key, day_start),
        )

    async def _do(self, life: Life, action: Action) -> Event | None:
        client, ledger, key = self.client, self.ledger, self.print_.key
        if isinstance(action, Claim):
            return await claim(ledger, self.request, self.print_, clock=client.clock)
        if isinstance(action, WaitForClaim):
            await client.clock.sleep(1.0)  # another live process is submitting it right now
            return await claim(ledger, self.request, self.print_, clock=client.clock)
        if isinstance(action, Submit):
            return Submitted(await submit_claimed(client, ledger, self.request, key))
        if isinstance(action, Forget):
            # The ledger keeps the old job in its history; a result that is gone is asked again.
            await ledger.forget_job(key, action.job_id)
            return None
        if isinstance(action, Track | Inspect):
            try:
                if isinstance(action, Track):
                    job = await client.wait(action.job_id, deadline=self.deadline)
                else:
                    job = await client.get_job(action.job_id)
            except NotFound as unknown:
                self._error = unknown
                return JobUnknown()
            self.job = job
            await ledger.record_status(key, job)
            return Status(job.status, job.completed_date)
        if isinstance(action, Download):
            try:
                self.saved = await download_recorded(client, ledger, key, action.job_id, self.dest)
            except HTTPStatusError as exc:
                if not (isinstance(exc, NotFound) or exc.status == 410):
                    raise
                # Results may be kept only 90 days (docs/api-facts.md §2): replay, never resubmit.
                self._error = exc
                return DownloadGone()
            return Saved()
        if isinstance(action, Replay):
            try:
                return Replayed(await replay_recorded(client, ledger, key, action))
            except NotFound as unknown:
                self._error = unknown
                return JobUnknown()
        if isinstance(action, Defer):  # the caller decides whether to wait: it is told when
            await self._refuse(action.job_id, life.status, action.decision)
        raise AssertionError(f"the driver does not perform {action}")  # pragma: no cover

    async def _ended(self, end: End) -> NoReturn:
        if end.decision is not None:
            await self._refuse(end.job_id, end.status, end.decision)
        if end.rule == "replays_exhausted":
            raise JobFailed(self._job(end.job_id, end.status), end.reason)
        assert self._error is not None, end
        raise self._error

    async def _refuse(
        self, job_id: str | None, status: JobStatus | None, decision: ReplayDecision
    ) -> NoReturn:
        job = self._job(job_id, status)
        raise await refusal(self.ledger, self.print_.key, job, decision, self.terms)

    def _job(self, job_id: str | None, status: JobStatus | None) -> Job:
        if self.job is not None and self.job.id == job_id:
            return self.job
        return _job_of(job_id, status)


def _job_of(job_id: str | None, status: JobStatus | None) -> Job:
    return Job.model_validate({"Id": job_id or "", "Status": (status or JobStatus.UNKNOWN).value})


async def refusal(
    ledger: LedgerStore, key: str, job: Job, decision: ReplayDecision, terms: Terms
) -> JobFailed | ReplayRefused:
    """The guard refused a replay: remember it, and return what the caller knows (`JobFailed`
    for a failed job nobody asked to refresh, else `ReplayRefused`) naming the rule."""
    refused = ReplayRefused(job.id, rule=decision.rule, reason=decision.reason)
    await ledger.record_event(
        key, "replay_refused", job.id, {"reason": str(refused), "status": job.status.value}
    )
    failed = job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
    if failed and not terms.fresh and not terms.force:
        failure = JobFailed(job, f"job {job.id} ended {job.status.value}; {refused}")
        failure.__cause__ = refused
        return failure
    return refused


def judged(
    terms: Terms,
    entry: LedgerEntry,
    job: Job,
    now: datetime,
    *,
    expired: bool = False,
    replays: int = 0,
    replays_today: int = 0,
) -> tuple[Life, tuple[Action, ...]]:
    """The table's answer for a job the ledger knows and the server just described: its life
    resumed from the ledger (`Found`), then the news (its status, or a result that is gone).
    Pure: the caller performs the actions."""
    found = Found(
        job.id,
        submitted_at=entry.submitted_at or entry.created_at,
        completed_at=entry.completed_at,
        replays=replays,
        replays_today=replays_today,
    )
    life, _ = step(begin(terms), found, now)
    if expired:
        life, _ = step(life, Status(JobStatus.COMPLETED), now)
        return step(life, DownloadGone(job.status), now)
    return step(life, Status(job.status, job.completed_date), now)


async def claim(
    ledger: LedgerStore,
    request: ExportRequest | ClickExportRequest,
    print_: Fingerprint,
    *,
    clock: ServerClock,
    wait_for_others: bool = True,
) -> Claimed | ClaimedElsewhere | Attached:
    """Claim the chunk (the intent, written ahead of the submit). A job another worker recorded
    is `Attached` (without waiting for others: only once its lease is this worker's). `clock`
    is the spending client's: the server is asked through its own open session (a ledger
    shared by several accounts' clients keeps the first one's clock, whose session may be
    closed by now)."""
    if clock.ask_before_spending:
        await clock.fresh_now()  # the intent's stamp, like every stamp, on the server's time
    is_report = isinstance(request, ExportRequest)
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
            return ClaimedElsewhere(entry.claimed_by)
        return Attached(entry.job_id, entry.submitted_at)
    return Claimed() if mine else ClaimedElsewhere(entry.claimed_by)


async def submit_claimed(
    client: ReportExportClient,
    ledger: LedgerStore,
    request: ExportRequest | ClickExportRequest,
    key: str,
) -> str:
    """The submit of a claimed chunk, its job id recorded at once; a failed submit releases the
    claim so that the next attempt may claim at once."""
    try:
        ticket = await client.export(request)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ledger.release_claim(key)
        raise
    # No wait between the answer and its record: a cancellation (the session lets a submit
    # finish) lands after the job id is in the ledger, for the next run to re-attach to.
    with anyio.CancelScope(shield=True):
        await ledger.record_submitted(key, ticket.job_id)
    return ticket.job_id


async def replay_recorded(
    client: ReportExportClient, ledger: LedgerStore, key: str, replay: Replay
) -> str:
    """The replay the table asked for, recorded with the guard's rule; the job id to follow."""
    replayed = await client.replay(replay.job_id)
    await ledger.record_replay(key, replay.job_id, replayed, rule=replay.rule)
    return replayed.id


async def download_recorded(
    client: ReportExportClient,
    ledger: LedgerStore,
    key: str,
    job_id: str,
    dest: Path,
    *,
    wait: bool = True,
) -> DownloadResult:
    """The download, then its record in the ledger (path, size, sha256). The download hands its
    result over in the rename's shield (a `Receipt`); the record is made here, shielded, also
    when a cancellation (Ctrl-C, a run that stops) arrives after the rename: never a file the
    ledger does not know."""
    receipt = Receipt()
    try:
        return await client.download(job_id, dest, wait=wait, receipt=receipt)
    finally:
        saved = receipt.result
        if saved is not None:
            with anyio.CancelScope(shield=True):
                await ledger.record_download(
                    key, saved.job_id, saved.path, saved.size, saved.sha256
                )
