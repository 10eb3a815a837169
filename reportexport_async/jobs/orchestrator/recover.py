"""Recovering a chunk whose job went wrong, as the lifecycle table (`core.lifecycle`) says: a
FAILED or CANCELLED job (or an expired result) is replayed when the replay guard allows it; a
replay the guard does not allow yet leaves the chunk `deferred` until that time (or waits, with
`wait_for_replays`); a job the server no longer knows is forgotten and its chunk submitted
again. The table decides; this module performs (with the driver's pieces) and keeps the batch's
bookkeeping."""

from __future__ import annotations

import logging
from datetime import datetime

from ...core.lifecycle import (
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
from ...core.models import Job, JobStatus
from ...core.quota import quota_day_bounds
from ...errors import JobFailed, NotFound, ReplayRefused, ReportExportError
from ..driver import judged, refusal, replay_recorded
from ..exports import replay_guarded
from .model import ChunkRun, when
from .state import RunState
from .submit import Submitting

__all__ = ["Recovery"]

log = logging.getLogger("reportexport_async.jobs.orchestrator")


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

    async def refresh(self, run: ChunkRun) -> None:
        """A done chunk whose days may still change: its own job is replayed through the replay
        guard (fresh data, never a new submit), then tracked and downloaded like any job. A
        refresh the guard refuses leaves the chunk as it was, with the rule (`run.refused`;
        `too_soon`: `resets_at` is when it is allowed); a job the server forgot is submitted
        again."""
        state = self.state
        key = run.planned.fingerprint
        entry = await state.ledger.get(key)
        if entry is None or entry.job_id is None:
            return
        job = Job.model_validate(
            {"Id": entry.job_id, "Status": (entry.status or JobStatus.COMPLETED).value}
        )
        policy = state.options.replay_policy
        try:
            new_id = await replay_guarded(
                state.api, state.ledger, key, entry, job,
                fresh=True, force=False, expired=False, policy=policy,
            )  # fmt: skip
        except (ReplayRefused, JobFailed) as refused:
            cause = refused if isinstance(refused, ReplayRefused) else refused.__cause__
            run.refused = cause.rule if isinstance(cause, ReplayRefused) else "refused"
            if run.refused == "too_soon":
                run.resets_at = (entry.submitted_at or entry.created_at) + policy.min_age
            elif run.refused != "once_per_day":
                run.error = str(refused)
            return
        except NotFound:  # forgotten by the guard's table: the chunk is submitted again
            state.set_status(run, "planned", f"job {job.id} is unknown to the server")
            await self.submitting.again(run)
            return
        except ReportExportError as error:
            if not state.account_wide(error):
                run.refused, run.error = "error", f"replay failed: {error}"
            return
        run.job_id = new_id
        run.submitted_at = state.api.clock.now()
        run.created_at = entry.created_at
        state.track(run, "submitted")

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
