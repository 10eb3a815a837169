"""Recovering a chunk whose job went wrong, as the lifecycle table (`core.lifecycle`) says: a
FAILED or CANCELLED job (or an expired result) is replayed when the replay guard allows it; a
replay the guard does not allow yet leaves the chunk `deferred` until that time (or waits, with
`wait_for_replays`); a job the server no longer knows is forgotten and its chunk submitted
again. The table decides; this module performs (with the driver's pieces) and keeps the batch's
bookkeeping."""

from __future__ import annotations

import logging
from datetime import datetime

from ..core.lifecycle import (
    Action,
    Defer,
    End,
    Forget,
    Found,
    JobUnknown,
    Life,
    Replay,
    Terms,
    begin,
    step,
)
from ..core.models import Job
from ..core.quota import quota_day_bounds
from ..driver import judged, refusal, replay_recorded
from ..errors import NotFound, ReportExportError
from .model import ChunkRun, when
from .state import RunState
from .submit import Submitting

__all__ = ["Recovery"]

log = logging.getLogger("reportexport_async.orchestrator")


class Recovery:
    def __init__(self, state: RunState, submitting: Submitting) -> None:
        self.state = state
        self.submitting = submitting

    def terms(self, run: ChunkRun) -> Terms:
        """A backfill's terms: its replay policy and bound; a job unknown to the server is
        submitted again even when this run made it (it may have made it before a crash)."""
        options = self.state.options
        return Terms(
            run.planned.fingerprint,
            range_end=run.planned.chunk.end,
            max_replays=options.max_replays,
            policy=options.replay_policy,
            tz=self.state.api.limiter.timezone,
            trust_own_jobs=False,
        )

    def following(self, run: ChunkRun, now: datetime) -> Life:
        """The chunk's life as the run remembers it: its job in flight, tracked."""
        assert run.job_id is not None
        found = Found(run.job_id, submitted_at=run.submitted_at, replays=run.replays)
        return step(begin(self.terms(run)), found, now)[0]

    async def after_failure(self, run: ChunkRun, job: Job, *, expired: bool = False) -> None:
        """FAILED/CANCELLED (or an expired result): what the table says, at most
        `max_replays` replays."""
        state = self.state
        key = run.planned.fingerprint
        entry = await state.ledger.get(key)
        assert entry is not None
        now = state.api.clock.now()
        day_start, _ = quota_day_bounds(now, state.api.limiter.timezone)
        terms = self.terms(run)
        _, actions = judged(
            terms, entry, job, now, expired=expired, replays=run.replays,
            replays_today=await state.ledger.replays_since(key, day_start),
        )  # fmt: skip
        (action,) = actions
        if isinstance(action, End):
            if action.decision is None:  # replays exhausted (or the result gone after them)
                state.set_status(run, "failed", f"job {job.id} ended {job.status.value}")
                return
            refused = await refusal(state.ledger, key, job, action.decision, terms)
            state.set_status(run, "failed", str(refused))
            return
        if isinstance(action, Defer):
            await refusal(state.ledger, key, job, action.decision, terms)
            self.not_yet(run, job, action.until)
            return
        await self.replay(run, job, action)

    async def replay(self, run: ChunkRun, job: Job, action: Action) -> None:
        state = self.state
        assert isinstance(action, Replay)
        try:
            new_id = await replay_recorded(state.api, state.ledger, run.planned.fingerprint, action)
        except NotFound:
            await self.job_unknown(run, job.id)
            return
        except ReportExportError as error:
            if not state.account_wide(error):
                state.set_status(run, "failed", f"replay failed: {error}")
            return
        run.replays += 1
        run.job_id = new_id
        run.submitted_at = state.api.clock.now()
        state.track(run, "submitted")

    def not_yet(self, run: ChunkRun, job: Job, allowed: datetime) -> None:
        """The guard allows a replay only from `allowed`: wait for it (`wait_for_replays`,
        saying so), or end the chunk `deferred` until then."""
        state = self.state
        why = f"job {job.id} ended {job.status.value}; a replay is allowed from {when(allowed)}"
        if state.options.wait_for_replays:
            state.parked.append((allowed, run, job))
            state.notice(
                f"replay {job.id}",
                f"waiting until {when(allowed)} to replay job {job.id} of {run.label}",
                allowed,
                every=0.0,
            )
            state.set_status(run, "running", f"{why}: waiting")
            return
        run.resets_at = allowed
        state.set_status(run, "deferred", f"{why} (never right after a submit): run again then")

    async def result_gone(self, run: ChunkRun, job_id: str) -> None:
        """The Download answered 404/410: an expired result is replayed through the guard; a
        job the server does not know at all is submitted again."""
        state = self.state
        try:
            job = await state.api.get_job(job_id)
        except NotFound:
            await self.job_unknown(run, job_id)
            return
        except ReportExportError as error:
            if not state.account_wide(error):
                state.set_status(run, "failed", f"download failed: {error}")
            return
        await self.after_failure(run, job, expired=True)

    async def job_unknown(self, run: ChunkRun, job_id: str) -> None:
        """The server answered 404 for a job the ledger knew: the table forgets it and claims
        the chunk again (the submit is the submitters', within today's quota)."""
        state = self.state
        log.warning("job %s of %s is unknown to the server; submitting it again", job_id, run.label)
        state.in_flight.pop(job_id, None)
        run.job_id = job_id
        _, actions = step(
            self.following(run, state.api.clock.now()), JobUnknown(), state.api.clock.now()
        )
        for action in actions:
            if isinstance(action, Forget):
                await state.ledger.forget_job(run.planned.fingerprint, action.job_id)
        state.set_status(run, "planned", f"job {job_id} is unknown to the server")
        await self.submitting.again(run)
