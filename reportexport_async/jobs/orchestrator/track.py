"""Tracking: one tracker follows every job in flight with one `GET /Jobs` listing call per tick
(a page per 1,000 jobs; a few jobs: one `GET /Jobs/{Id}` each), the tick stretched to what the
hourly bucket affords. A postback cuts the pause short for its job (a wake-up, never a fact: the
job is tried by downloading it). COMPLETED jobs go to the downloaders, FAILED/CANCELLED ones to
recovery; ERROR ones are waited on (the service re-runs them); a job past `stuck_after` is
reported stuck, never submitted again."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, timedelta

import anyio

from ...core.lifecycle import Download, Status, Track, step
from ...core.models import Job
from ...core.tracking import tick_interval
from ...errors import NotFound, ReportExportError
from ...transport.api import ListingMark
from ...transport.postbacks import Postback
from .model import NOTICE_EVERY, ChunkRun, ProgressEvent, when
from .recover import Recovery
from .state import RunState

__all__ = ["Tracking"]


class Tracking:
    def __init__(self, state: RunState, recovery: Recovery) -> None:
        self.state = state
        self.recovery = recovery
        self.quiet = 0  # refreshes in a row in which no job finished
        self.next_refresh: datetime | None = None  # when the safety net looks next
        #: Where the last listing found its first job in flight, for listings from `mark_after`:
        #: the next one starts there, not at the oldest page (jobs long finished).
        self.mark = ListingMark()
        self.mark_after: date | None = None

    def on_postback(self, postback: Postback) -> None:
        """A wake-up, never a fact: the tracker answers it by trying the download."""
        state = self.state
        if postback.job_id in state.in_flight:
            state.nudged[postback.job_id] = postback
            state.nudge.set()
            state.poke()
        elif len(state.early) < 10_000:
            state.early[postback.job_id] = postback  # maybe a job whose submit has not returned

    async def run(self) -> None:
        state = self.state
        try:
            while not state.finished():
                if not state.in_flight and not state.parked and not state.nudged:
                    await state.changed.wait()
                    state.changed = anyio.Event()
                    continue
                await self.pause()
                await self.answer_postbacks()
                now = state.api.clock.now()
                due = self.next_refresh is None or now >= self.next_refresh
                await state.keep_leases()
                if due or any(at <= now for at, _, _ in state.parked):
                    # The safety net keeps its own pace: postbacks for some jobs never put off
                    # the refresh that finds the jobs whose postbacks were lost.
                    self.next_refresh = None
                    await self.refresh()
        finally:
            state.send.close()

    async def answer_postbacks(self) -> None:
        """Each job a postback named is tried once by downloading: 202 puts it back."""
        state = self.state
        nudged, state.nudged = state.nudged, {}
        for job_id, postback in nudged.items():
            run = state.in_flight.pop(job_id, None)
            if run is None:
                continue  # already done or downloading: nothing to do, no call
            run.probe = postback
            await state.queue_download(run)

    async def pause(self) -> None:
        """Sleep until the next refresh is due (one tick on the client's clock), or less when a
        postback arrives."""
        state = self.state
        if state.nudged:
            return
        now = state.api.clock.now()
        if self.next_refresh is None:
            window = state.api.limiter.hourly
            interval = tick_interval(
                len(state.in_flight),
                remaining=None if window is None else window.remaining,
                seconds_to_reset=None
                if window is None
                else max(0.0, (window.resets_at - now).total_seconds()),
                reserve=state.downloads_waiting + (4 if state.submitting else 0),
                policy=state.options.tick,
                postbacks=state.postbacks_on,
                quiet=self.quiet,
                youngest_age=self.youngest_age(now),
            )
            self.next_refresh = now + timedelta(seconds=interval)
        wait = (self.next_refresh - now).total_seconds()
        if state.parked:
            soonest = min(due for due, _, _ in state.parked)
            wait = min(wait, (soonest - now).total_seconds())
        wait = max(0.0, wait)
        self.announce(now, now + timedelta(seconds=wait))
        # Wake at least every third of a lease to renew it (no call: the refresh stays due when
        # it was due), so that a live worker never loses its chunks to a long tick.
        wait = min(wait, state.ledger.lease.total_seconds() / 3)
        if not state.postbacks_on:  # nothing can cut the pause short: a plain sleep
            await state.api.clock.sleep(wait)
            return
        state.nudge = anyio.Event()
        async with anyio.create_task_group() as group:

            async def sleeper() -> None:
                await state.api.clock.sleep(wait)
                group.cancel_scope.cancel()

            async def waker() -> None:
                await state.nudge.wait()
                group.cancel_scope.cancel()

            group.start_soon(sleeper)
            group.start_soon(waker)

    def announce(self, now: datetime, next_look: datetime) -> None:
        """Jobs in flight and nothing finished for a while: say what the run waits for."""
        state = self.state
        if not state.in_flight and not state.parked:
            return
        if (now - state.last_change).total_seconds() < NOTICE_EVERY:
            return
        states = Counter(run.status for run in state.in_flight.values())
        what = ", ".join(f"{n} {status}" for status, n in sorted(states.items()))
        parts = [f"{len(state.in_flight)} jobs in flight ({what})"] if state.in_flight else []
        if state.parked:
            soonest = min(due for due, _, _ in state.parked)
            parts.append(f"{len(state.parked)} replays allowed from {when(soonest)}")
        state.notice(
            "flight",
            f"waiting for {'; '.join(parts)}; next look at {when(next_look)}",
            next_look,
            every=NOTICE_EVERY,
        )

    def youngest_age(self, now: datetime) -> float | None:
        """Seconds since the newest submit (or replay) among the jobs in flight."""
        submitted = [run.submitted_at for run in self.state.in_flight.values() if run.submitted_at]
        return (now - max(submitted)).total_seconds() if submitted else None

    async def refresh(self) -> None:
        """One listing call for every job in flight (a single job: one GET of it)."""
        state = self.state
        api = state.api
        now = api.clock.now()
        due = [item for item in state.parked if item[0] <= now]
        state.parked = [item for item in state.parked if item[0] > now]
        for _, run, job in due:
            await self.recovery.after_failure(run, job)
        if not state.in_flight:
            return
        seen: dict[str, Job] = {}
        unknown: list[str] = []
        try:
            # A replayed job keeps its creation date: list from there, or it is asked for alone.
            made = [run.created_at or run.submitted_at for run in state.in_flight.values()]
            since = min((moment for moment in made if moment is not None), default=now)
            after = since.astimezone(api.limiter.timezone).date()
            # The jobs in flight now; those submitted during this refresh wait for the next.
            wanted = dict.fromkeys(state.in_flight)  # in the order they were tracked
            if len(wanted) > self.listing_pages(after):
                # Only these jobs are read, and the listing ends once all of them were seen.
                if after != self.mark_after:
                    self.mark, self.mark_after = ListingMark(), after
                listing = api.iter_jobs(created_after=after, only=wanted.keys(), mark=self.mark)
                async for job in listing:
                    if job.id in state.in_flight:
                        seen[job.id] = job
            # Few jobs left among many listed: one GET each is cheaper than the listing; and a
            # job the listing missed is asked for by id.
            for job_id in [j for j in wanted if j not in seen and j in state.in_flight]:
                try:
                    seen[job_id] = await api.get_job(job_id)
                except NotFound:
                    unknown.append(job_id)
        except ReportExportError as error:
            # A failed refresh is retried next tick; only an account-wide failure stops the run.
            if not state.account_wide(error):
                state.emit(ProgressEvent("error", message=f"refresh failed: {error}"))
            return
        for job_id in unknown:
            lost = state.in_flight.get(job_id)
            if lost is not None:
                await self.recovery.job_unknown(lost, job_id)
        before = len(state.in_flight)
        tracked = [(state.in_flight[i], job) for i, job in seen.items() if i in state.in_flight]
        # One ledger transaction for the whole refresh, then the decisions.
        await state.ledger.record_statuses([(run.planned.fingerprint, job) for run, job in tracked])
        for run, job in tracked:
            await self.update(run, job, now)
        self.quiet = self.quiet + 1 if len(state.in_flight) == before else 0

    def listing_pages(self, after: date) -> int:
        """Pages a listing from `after` would take, counting the jobs this run knows of (other
        tools' jobs only add to it)."""
        state = self.state
        pages_at_most = max(1, math.ceil(len(state.runs) / state.options.tick.page_size))
        if len(state.in_flight) > pages_at_most:
            return pages_at_most  # more jobs in flight than pages, whichever were submitted when
        tz = state.api.limiter.timezone
        listed = sum(
            1
            for run in state.runs.values()
            if run.submitted_at is not None and run.submitted_at.astimezone(tz).date() >= after
        )
        return max(1, math.ceil(listed / state.options.tick.page_size))

    async def update(self, run: ChunkRun, job: Job, now: datetime) -> None:
        """Act on a job's state (the ledger has recorded it already), as the table says."""
        state = self.state
        stuck_after = state.options.stuck_after
        run.records = job.records_processed
        following = self.recovery.following(run, now)
        _, actions = step(following, Status(job.status, job.completed_date), now)
        if isinstance(actions[-1], Download):
            del state.in_flight[job.id]
            await state.queue_download(run)
        elif not isinstance(actions[-1], Track):
            # FAILED or CANCELLED: replay, defer or end, judged with the ledger's memory.
            del state.in_flight[job.id]
            await self.recovery.after_failure(run, job)
        elif run.submitted_at is not None and now - run.submitted_at > stuck_after:
            del state.in_flight[job.id]
            state.set_status(run, "stuck", f"still {job.status.value} after {stuck_after}")
        else:
            state.set_status(run, "running")
