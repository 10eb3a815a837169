"""What the parts of a running backfill share: every chunk's run, the jobs in flight, the queue to
the downloaders, the events to the caller, and the one decision that ends the run early (an
account-wide failure)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

import anyio

from ...core.fingerprint import Fingerprint
from ...core.models import Job
from ...core.planning import Plan
from ...destinations import FilesDestination, SavedChunk
from ...errors import AccountUnavailable, LoadError, OutputError, ReportExportError
from ...ledger.store import LedgerStore
from ...transport.api import ReportExportClient
from ...transport.postbacks import Postback
from ...transport.ratelimit import LimiterWait
from .model import (
    NOTICE_EVERY,
    ROUND_PAUSE,
    ROUNDS,
    BackfillOptions,
    ChunkRun,
    ChunkStatus,
    ProgressEvent,
    when,
)

__all__ = ["RunState", "load_chunks"]

log = logging.getLogger("reportexport_async.jobs.orchestrator")


async def load_chunks(
    destination: FilesDestination,
    saved: Sequence[SavedChunk],
    emit: Callable[[ProgressEvent], None],
    failed: set[str] | None = None,
    *,
    reconcile: bool = False,
) -> LoadError | None:
    """Hand whole chunks to the destination (a typed one beside the files loads them), and
    say what was loaded where in `loaded` events. A failed load does not stop the others (the
    files and the ledger are whole; the next run loads it again): the first is returned, and
    the fingerprint of each goes into `failed`. `reconcile`: the chunks are not new, the
    destination is brought up to them (`Destination.reconcile`: the files alone do nothing)."""
    first: LoadError | None = None
    for one in saved:
        try:
            if reconcile:
                loaded = await destination.reconcile([one])
            else:
                loaded = await destination.saved(one)
        except LoadError as error:
            log.error("%s", error)
            first = first or error
            if failed is not None:
                failed.add(one.fingerprint)
            emit(
                ProgressEvent(
                    "loaded", status="failed", report_id=error.report, chunk=error.chunk,
                    message=str(error), target=error.target,
                )
            )  # fmt: skip
            continue
        for item in loaded:
            emit(
                ProgressEvent(
                    "loaded", status="done", report_id=item.report, chunk=item.chunk,
                    message=item.message, rows=item.rows, target=item.target, table=item.table,
                )
            )  # fmt: skip
    return first


class RunState:
    """The shared state of one backfill run and the small actions on it."""

    def __init__(
        self,
        api: ReportExportClient,
        ledger: LedgerStore,
        plan: Plan,
        destination: FilesDestination,
        options: BackfillOptions,
        on_event: Callable[[ProgressEvent], None] | None,
        *,
        postbacks_on: bool = False,
    ) -> None:
        self.api = api
        self.ledger = ledger
        self.plan = plan
        self.destination = destination
        self.out = destination.root  # canonical: the ledger records these paths
        #: Merged file name -> digest of its chunks, for the manifest.
        self.merged_sources: dict[str, str] = {}
        self.options = options
        self.on_event = on_event
        #: The client's counts when this backfill began: its own calls are the difference (a
        #: client may have made others before, or run several backfills).
        self.calls_before = Counter(api.usage.calls)
        self.runs: dict[str, ChunkRun] = {}
        for planned in plan.chunks:
            run = ChunkRun(planned, job_id=planned.job_id)
            if planned.state == "done":
                run.status = "done"
            self.runs[planned.fingerprint] = run
        self.in_flight: dict[str, ChunkRun] = {}
        #: Chunks another live worker holds (leases): watched until done or free to take over.
        self.watched: dict[str, ChunkRun] = {}
        self.watch_added = anyio.Event()
        #: When each chunk's file was recorded, as the plan read it (None: not yet).
        self.known_downloads: dict[str, datetime | None] = {}
        self.last_renewal = api.clock.now()
        #: The end of the longest wait for the hourly bucket announced so far, while it lasts
        #: (None: no such wait): the leases are renewed through it (`Watching.keep_through_waits`).
        self.waiting_until: datetime | None = None
        self.long_wait = anyio.Event()
        #: Chunks waiting for the time their replay is allowed (`wait_for_replays`).
        self.parked: list[tuple[datetime, ChunkRun, Job]] = []
        self.changed = anyio.Event()  # a job arrived, a download ended, submitting ended
        self.nudge = anyio.Event()  # a postback: cut the tracker's current pause short
        self.submitting = True
        self.downloads_waiting = 0
        self.quota_left: int | None = plan.cost.quota_left_today
        self.send, self.receive = anyio.create_memory_object_stream[ChunkRun](math.inf)
        #: Postback wake-ups: job id -> the postback, until the tracker looks.
        self.postbacks_on = postbacks_on
        self.nudged: dict[str, Postback] = {}
        self.early: dict[str, Postback] = {}  # for jobs not tracked yet (bounded)
        self.postback_latency: list[float] = []  # arrival to download start, real seconds
        #: set when the disk is full: no more submits or downloads in this run.
        self.disk_full: OutputError | None = None
        #: set when an account-wide failure stops the run.
        self.stopped: AccountUnavailable | None = None
        #: The first load into a destination beside the files that failed (the chunk's file
        #: and the ledger are whole; the next run loads it again): raised once the run ends.
        self.load_error: LoadError | None = None
        #: The chunks whose load failed in this run (not tried again before the next run).
        self.load_failed: set[str] = set()
        #: set when the caller's progress callback raised: the run stops, the error goes back.
        self.callback_error: Exception | None = None
        self.scope: anyio.CancelScope | None = None
        #: When a chunk last changed, and when a wait was last announced (client clock).
        self.last_change = api.clock.now()
        self.last_notice: dict[str, datetime] = {}

    # -- events --------------------------------------------------------------------------------

    def calls(self) -> dict[str, int]:
        """The API calls this backfill made, by endpoint."""
        now = self.api.usage.calls
        return {
            name: n - self.calls_before[name]
            for name, n in now.items()
            if n > self.calls_before[name]
        }

    def emit(self, event: ProgressEvent) -> None:
        """Give `event` to the caller's callback. A callback that raises stops the run once
        (cleanly: the manifest is written), and its exception reaches the caller as itself."""
        if self.on_event is None or self.callback_error is not None:
            return
        try:
            self.on_event(event)
        except Exception as error:  # the caller's code: stop, and hand it back unchanged
            self.callback_error = error
            log.error("the progress callback raised %r: the run stops", error)
            if self.scope is not None:
                self.scope.cancel()

    def notice(self, what: str, message: str, until: datetime | None, *, every: float) -> None:
        """A `wait` event, at most once every `every` seconds (client clock) for the same
        `what`."""
        now = self.api.clock.now()
        last = self.last_notice.get(what)
        if last is not None and (now - last).total_seconds() < every:
            return
        self.last_notice[what] = now
        log.info("%s", message)
        self.emit(ProgressEvent("wait", message=message, until=until))

    def on_limiter_wait(self, wait: LimiterWait) -> None:
        """The limiter is about to wait for the hourly bucket: say so, and keep the leases
        through a wait longer than a third of one (every task may be held by it)."""
        if (wait.until - self.api.clock.now()) * 3 >= self.ledger.lease:
            if self.waiting_until is None or wait.until > self.waiting_until:
                self.waiting_until = wait.until
            self.long_wait.set()
        self.notice(
            f"limiter {wait.until.isoformat()}",
            f"waiting for {wait.what} until {when(wait.until)}",
            wait.until,
            every=NOTICE_EVERY,
        )

    async def load(self, saved: Sequence[SavedChunk], *, reconcile: bool = False) -> None:
        """Hand whole chunks to the destination (`load_chunks`); the first failed load is kept,
        to be raised once the run is over."""
        error = await load_chunks(
            self.destination, saved, self.emit, self.load_failed, reconcile=reconcile
        )
        self.load_error = self.load_error or error

    def set_status(self, run: ChunkRun, status: ChunkStatus, message: str | None = None) -> None:
        if run.status == status and message is None:
            return
        run.status = status
        self.last_change = self.api.clock.now()
        if message is not None:
            final = ("failed", "stuck", "pending", "deferred")
            run.error = message if status in final else run.error
        if self.on_event is None:
            return  # nobody listens: no event (nor its snapshot of the calls) is built
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

    # -- moving chunks along -------------------------------------------------------------------

    def poke(self) -> None:
        self.changed.set()

    def track(self, run: ChunkRun, status: ChunkStatus) -> None:
        """The chunk has a job in flight: the tracker follows it from now on."""
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
            and not self.watched
        )

    def watch(self, run: ChunkRun) -> None:
        """Another live worker holds the chunk: follow it through the ledger, at no API cost."""
        self.watched[run.planned.fingerprint] = run
        self.set_status(run, "elsewhere")
        self.watch_added.set()

    async def keep_leases(self) -> None:
        """Renew this worker's leases when a third of their time has passed; called as the work
        goes on (submits, tracker ticks, downloads), so a live worker keeps its chunks."""
        now = self.api.clock.now()
        if (now - self.last_renewal) * 3 >= self.ledger.lease:
            self.last_renewal = now
            await self.ledger.renew_leases()

    # -- failures ------------------------------------------------------------------------------

    def account_wide(self, error: ReportExportError, pause: float = 0.0) -> bool:
        """Stop the run when `error` concerns the whole account, or when every call has failed
        for longer than the outage limit (counting `pause` more seconds). True when the run is
        stopping: the caller returns at once."""
        if self.stopped is not None:
            return True
        stop = self.api.session.outage.account_wide(error, pause)
        if stop is None:
            return False
        self.stopped = stop
        log.error("run stopped: %s", stop)
        self.emit(ProgressEvent("stopped", message=str(stop), calls=self.calls()))
        if self.scope is not None:
            self.scope.cancel()
        return True

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
        await self.api.clock.sleep(pause)
        return True


def print_of(run: ChunkRun) -> Fingerprint:
    """The chunk's fingerprint, as the ledger knows it."""
    return Fingerprint(run.planned.fingerprint, run.planned.canonical)
