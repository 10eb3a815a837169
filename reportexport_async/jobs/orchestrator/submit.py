"""Submitting: new chunks go out while today's ReportExport quota lasts, a few at a time, each
written ahead in the ledger (`jobs.exports.submit_once`). What the quota cannot serve ends `pending`
with the reset time, or waits for it (`wait_for_quota`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import anyio

from ...core.responses import report_refused, worth_another_round
from ...errors import QuotaExhausted, ReportExportError
from ..exports import ClaimedElsewhere, submit_once
from .model import ROUNDS, ChunkRun, ProgressEvent, when
from .state import RunState, print_of

__all__ = ["Submitting"]


class Submitting:
    def __init__(self, state: RunState, unproven: set[str]) -> None:
        self.state = state
        #: Report ids the server has never accepted: one chunk of each is submitted first.
        self.unproven = unproven
        #: report id -> why the server refused it: its other chunks are not submitted.
        self.refused: dict[str, str] = {}
        self.quota_wait = anyio.Lock()  # held by the submitter waiting for the quota's reset

    async def all(self, queue: list[ChunkRun], first: Collection[str] = ()) -> None:
        """`submit_concurrency` submitters share the queue; then submitting is over. The first
        chunk of each unproven report goes first, alone among its report's chunks: if the server
        refuses the report, its other chunks fail without a call. With every report proven, the
        first chunk still goes first, alone: wrong credentials or a dead host then cost one
        call, not one per submitter, before the run stops. The chunks in `first` (a planner's
        new days) are all answered before the others go: a quota that runs out among them
        leaves the others pending without a call each."""
        state = self.state
        probes: list[ChunkRun] = []
        for run in list(queue):  # in plan order
            report_id = run.planned.report_id
            if report_id in self.unproven and all(p.planned.report_id != report_id for p in probes):
                queue.remove(run)
                probes.append(run)
        if not probes and queue:
            probes.append(queue.pop(0))
        early = [run for run in queue if run.planned.fingerprint in first]
        later = [run for run in queue if run.planned.fingerprint not in first]
        try:
            for phase in (probes, early, later):
                async with anyio.create_task_group() as group:
                    for _ in range(min(state.options.submit_concurrency, len(phase))):
                        group.start_soon(self.submitter, phase)
        finally:
            state.submitting = False
            state.poke()

    async def submitter(self, queue: list[ChunkRun]) -> None:
        state = self.state
        while queue:
            run = queue.pop(0)
            refused = self.refused.get(run.planned.report_id)
            if refused is not None or state.disk_full is not None:
                why = (
                    f"the server refused report {run.planned.report_id!r} ({refused})"
                    if refused is not None
                    else str(state.disk_full)
                )
                state.set_status(run, "failed", f"not submitted: {why}")
                continue
            spent = state.quota_left is not None and state.quota_left <= 0
            if spent and not await self.quota_gate(run, queue):
                return
            try:
                job_id = await submit_once(
                    state.api, state.ledger, run.planned.request, print_of(run),
                    wait_for_others=False,
                )  # fmt: skip
            except ClaimedElsewhere:
                state.watch(run)  # another live worker submits and follows it
                continue
            except QuotaExhausted as exhausted:
                state.quota_left = 0
                if not await self.quota_gate(run, queue, exhausted.resets_at):
                    return
                queue.insert(0, run)  # the quota has reset: this chunk goes first
                continue
            except ReportExportError as error:
                if state.account_wide(error):
                    queue.insert(0, run)
                    return
                if report_refused(error):
                    self.refused.setdefault(run.planned.report_id, str(error))
                elif worth_another_round(error) and run.submit_rounds < ROUNDS:
                    # An outage: this chunk goes to the back of the queue, after a pause. A
                    # submit whose answer was lost is answered with the same job (the service
                    # de-duplicates identical parameters).
                    if not await state.another_round(run, "submit", error, run.submit_rounds):
                        queue.insert(0, run)
                        return
                    run.submit_rounds += 1
                    queue.append(run)
                    continue
                state.set_status(run, "failed", f"submit failed: {error}")
                continue
            self.submitted(run, job_id)
            await state.keep_leases()

    def submitted(self, run: ChunkRun, job_id: str) -> None:
        """A submit answered with `job_id`: one unit less of today's quota, and track it."""
        state = self.state
        if state.quota_left is not None:
            # Submits in flight when another one found the quota spent: never below 0.
            state.quota_left = max(0, state.quota_left - 1)
        run.job_id = job_id
        run.submitted_at = state.api.clock.now()
        state.track(run, "submitted")

    async def quota_gate(
        self, run: ChunkRun, queue: list[ChunkRun], resets_at: datetime | None = None
    ) -> bool:
        """The daily quota is spent: wait for the reset (`wait_for_quota`), or report this chunk
        and the rest as pending. True when submitting may go on."""
        state = self.state
        limiter = state.api.limiter
        if resets_at is None:
            daily = await limiter.daily("ReportExport")
            if daily is None or daily.remaining > 0:
                # `quota_left` was stale (another submitter saw the reset): submit on.
                state.quota_left = None if daily is None else daily.remaining
                return True
            resets_at = daily.resets_at
        resets_at = resets_at.astimezone(limiter.timezone)  # the account's clock
        if state.options.wait_for_quota:
            # One submitter waits for the reset; the others wait for it (a clock that moves
            # with every sleep, like the sandbox's, must not be moved once per submitter).
            async with self.quota_wait:
                left = (resets_at - state.api.clock.now()).total_seconds()
                if left > 0:
                    message = (
                        f"waiting for the daily ReportExport quota's reset at {when(resets_at)}"
                    )
                    state.notice("quota", message, resets_at, every=0.0)
                    await state.api.clock.sleep(left)
            daily = await limiter.daily("ReportExport")
            state.quota_left = None if daily is None else daily.remaining
            return True
        pending = [run, *queue]
        queue.clear()
        for item in pending:
            if item.status == "planned":
                item.resets_at = resets_at
                state.set_status(
                    item, "pending", f"daily ReportExport quota spent; resets {when(resets_at)}"
                )
        state.emit(
            ProgressEvent(
                "quota",
                message=f"{len(pending)} chunks pending until {when(resets_at)}",
                until=resets_at,
            )
        )
        return False

    async def again(self, run: ChunkRun) -> None:
        """Submit a chunk again whose job the server no longer knows (the guide: a result that
        is gone may be requested again), within today's quota."""
        state = self.state
        run.job_id = None
        run.submitted_at = None
        try:
            job_id = await submit_once(
                state.api, state.ledger, run.planned.request, print_of(run),
                wait_for_others=False,
            )  # fmt: skip
        except ClaimedElsewhere:
            state.watch(run)
            return
        except QuotaExhausted as exhausted:
            state.quota_left = 0
            run.resets_at = exhausted.resets_at
            spent = f"daily ReportExport quota spent; resets {when(exhausted.resets_at)}"
            state.set_status(run, "pending", spent)
            return
        except ReportExportError as error:
            if not state.account_wide(error):
                state.set_status(run, "failed", f"submit failed: {error}")
            return
        self.submitted(run, job_id)
