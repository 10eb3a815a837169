"""Recovering a chunk whose job went wrong: a FAILED or CANCELLED job (or an expired result) is
replayed through the replay guard; a replay the guard does not allow yet leaves the chunk
`deferred` until that time (or waits, with `wait_for_replays`); a job the server no longer knows
is forgotten and its chunk submitted again."""

from __future__ import annotations

import logging
from datetime import datetime

from ..core.models import Job
from ..errors import JobFailed, NotFound, ReplayRefused, ReportExportError
from ..exports import replay_guarded
from .model import ChunkRun, when
from .state import RunState
from .submit import Submitting

__all__ = ["Recovery"]

log = logging.getLogger("reportexport_async.orchestrator")


class Recovery:
    def __init__(self, state: RunState, submitting: Submitting) -> None:
        self.state = state
        self.submitting = submitting

    async def after_failure(self, run: ChunkRun, job: Job, *, expired: bool = False) -> None:
        """FAILED/CANCELLED (or an expired result): replay through the guard, at most
        `max_replays` times."""
        state = self.state
        options = state.options
        if run.replays >= options.max_replays:
            state.set_status(run, "failed", f"job {job.id} ended {job.status.value}")
            return
        entry = await state.ledger.get(run.planned.fingerprint)
        assert entry is not None
        try:
            new_id = await replay_guarded(
                state.api,
                state.ledger,
                run.planned.fingerprint,
                entry,
                job,
                fresh=False,
                force=False,
                expired=expired,
                policy=options.replay_policy,
            )
        except (JobFailed, ReplayRefused) as refused:
            cause = refused.__cause__ if isinstance(refused, JobFailed) else refused
            if isinstance(cause, ReplayRefused) and cause.rule == "too_soon":
                base = entry.submitted_at or entry.created_at
                self.not_yet(run, job, base + options.replay_policy.min_age)
                return
            state.set_status(run, "failed", str(refused))
            return
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
        """The server answered 404 for a job the ledger knew: forget it, and submit again."""
        state = self.state
        log.warning("job %s of %s is unknown to the server; submitting it again", job_id, run.label)
        state.in_flight.pop(job_id, None)
        await state.ledger.forget_job(run.planned.fingerprint, job_id)
        state.set_status(run, "planned", f"job {job_id} is unknown to the server")
        await self.submitting.again(run)
