"""Sandbox jobs: a timeline drawn when the job is queued, read at any sandbox time.

A job's whole life is decided when it is queued (or replayed), from a random generator seeded by
the sandbox seed and the job: how long each attempt takes and how it ends. Its status at any moment
is then a pure function of that timeline and the sandbox clock, so `advance`, time scaling and
concurrent readers all see one consistent story, and no background task has to move jobs along.

The real service's ERROR handling (docs/api-facts.md §2, Job statuses): an attempt that ends in
ERROR is re-run 15 minutes later, at most 5 tries in all; after the fifth unsuccessful try the job
is FAILED.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from .catalog import Column, Persona, PersonaSpec
from .data import DataKey, ResultFile

ERROR_RETRY_DELAY = timedelta(minutes=15)
MAX_TRIES = 5
QUEUED_SHARE = 0.2  # the first fifth of an attempt is spent QUEUED, the rest RUNNING

STATUS_MESSAGES = {
    "QUEUED": "Job is queued for processing.",
    "RUNNING": "Job is being processed.",
    "COMPLETED": "Job processing completed successfully.",
    "ERROR": "Job encountered an error. It will be retried automatically.",
    "FAILED": "Job failed.",
    "CANCELLED": "Job was cancelled by an administrator.",
}


@dataclass(frozen=True)
class Attempt:
    queued_at: datetime
    started_at: datetime
    ended_at: datetime | None  # None: stuck in RUNNING for ever
    outcome: str  # COMPLETED, ERROR, FAILED, or STUCK


@dataclass(frozen=True)
class Timeline:
    attempts: tuple[Attempt, ...]

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def final_status(self) -> str:
        outcome = self.final.outcome
        return "FAILED" if outcome == "ERROR" else outcome

    @property
    def final_at(self) -> datetime | None:
        return self.final.ended_at


def plan_timeline(
    rng: random.Random,
    begin: datetime,
    duration: tuple[float, float],
    *,
    fail_rate: float,
    error_rate: float,
    stuck_rate: float,
) -> Timeline:
    """Draw every attempt of a job queued at `begin`."""
    stuck = rng.random() < stuck_rate
    attempts: list[Attempt] = []
    queued_at = begin
    for tries in range(1, MAX_TRIES + 1):
        seconds = rng.uniform(*duration)
        started_at = queued_at + timedelta(seconds=seconds * QUEUED_SHARE)
        if stuck:
            attempts.append(Attempt(queued_at, started_at, None, "STUCK"))
            break
        ended_at = queued_at + timedelta(seconds=seconds)
        draw = rng.random()
        if draw < fail_rate:
            outcome = "FAILED"
        elif draw < fail_rate + error_rate:
            outcome = "ERROR"
        else:
            outcome = "COMPLETED"
        attempts.append(Attempt(queued_at, started_at, ended_at, outcome))
        if outcome != "ERROR" or tries == MAX_TRIES:
            break
        queued_at = ended_at + ERROR_RETRY_DELAY
    return Timeline(tuple(attempts))


@dataclass
class JobView:
    """What the job looks like at one moment."""

    status: str
    started: datetime | None = None
    completed: datetime | None = None
    failed: datetime | None = None
    cancelled: datetime | None = None
    progress_at: datetime | None = None
    percent: int = 0
    message: str = ""


@dataclass
class SandboxJob:
    id: str
    columns: tuple[Column, ...]
    persona: Persona
    account_sid: str
    job_type: str  # ApiReport or ClickExport
    source: str  # report id, or "ClickExport"
    program_id: str
    key: DataKey
    start: date
    end: date
    result_format: str
    created: datetime
    timeline: Timeline
    expected_records: int
    sequence: int
    generation: int = 0
    file: ResultFile | None = None
    cancelled_at: datetime | None = None
    replayable: bool = True
    storage_error: str | None = None  # the sandbox could not write the result
    expired: bool = False  # the result is no longer downloadable (until a replay)
    postback_sent: set[int] = field(default_factory=set)

    @property
    def file_ready(self) -> bool:
        return self.file is not None

    def view(self, now: datetime) -> JobView:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return JobView(
                "CANCELLED",
                started=self.timeline.attempts[0].started_at
                if now >= self.timeline.attempts[0].started_at
                else None,
                cancelled=self.cancelled_at,
                progress_at=self.cancelled_at,
                message=STATUS_MESSAGES["CANCELLED"],
            )
        first_start = self.timeline.attempts[0].started_at
        started = first_start if now >= first_start else None
        last_error: datetime | None = None
        for number, attempt in enumerate(self.timeline.attempts, start=1):
            if now < attempt.queued_at:
                # Between a failed attempt and its automatic re-run.
                return JobView(
                    "ERROR",
                    started=started,
                    failed=last_error,
                    progress_at=last_error,
                    message=f"{STATUS_MESSAGES['ERROR']} (try {number - 1} of {MAX_TRIES})",
                )
            if now < attempt.started_at:
                return JobView(
                    "QUEUED",
                    started=started if number > 1 else None,
                    failed=last_error,
                    progress_at=attempt.queued_at,
                    message=STATUS_MESSAGES["QUEUED"],
                )
            if attempt.ended_at is None or now < attempt.ended_at:
                return self._running(attempt, now, started)
            if attempt.outcome == "COMPLETED":
                if self.storage_error is not None:
                    return JobView(
                        "FAILED",
                        started=started,
                        failed=attempt.ended_at,
                        progress_at=attempt.ended_at,
                        message=self.storage_error,
                    )
                if not self.file_ready:
                    # The result is still being written: the job is not downloadable yet.
                    return JobView(
                        "RUNNING",
                        started=started,
                        progress_at=attempt.ended_at,
                        percent=99,
                        message=STATUS_MESSAGES["RUNNING"],
                    )
                return JobView(
                    "COMPLETED",
                    started=started,
                    completed=attempt.ended_at,
                    progress_at=attempt.ended_at,
                    percent=100,
                    message=STATUS_MESSAGES["COMPLETED"],
                )
            if attempt.outcome == "FAILED" or number == MAX_TRIES:
                return JobView(
                    "FAILED",
                    started=started,
                    failed=attempt.ended_at,
                    progress_at=attempt.ended_at,
                    message=f"{STATUS_MESSAGES['FAILED']} ({number} of {MAX_TRIES} tries)",
                )
            last_error = attempt.ended_at
        raise AssertionError("a timeline always ends in a final attempt")  # pragma: no cover

    def _running(self, attempt: Attempt, now: datetime, started: datetime | None) -> JobView:
        if attempt.ended_at is None:
            percent = 42  # stuck: progress stops moving
        else:
            total = (attempt.ended_at - attempt.started_at).total_seconds()
            done = (now - attempt.started_at).total_seconds()
            percent = min(99, int(100 * done / total)) if total > 0 else 99
        return JobView(
            "RUNNING",
            started=started,
            progress_at=now,
            percent=percent,
            message=STATUS_MESSAGES["RUNNING"],
        )

    def final_event_at(self) -> datetime | None:
        """When the job reaches COMPLETED or FAILED (None: never, or cancelled)."""
        if self.cancelled_at is not None:
            return None
        return self.timeline.final_at

    @property
    def root(self) -> str:
        return f"/{self.persona}/{self.account_sid}"

    @property
    def queued_uri(self) -> str:
        return f"{self.root}/Jobs/{self.id}"

    @property
    def result_uri(self) -> str:
        return f"{self.root}/Jobs/{self.id}/Download"

    @property
    def replay_uri(self) -> str:
        return f"{self.root}/Jobs/{self.id}/Replay"

    def to_json(
        self, now: datetime, spec: PersonaSpec, *, string_values: bool, utc_offset: timedelta
    ) -> dict[str, object]:
        """The Job object of the specs (docs/api-facts.md §2, Job schema), in the persona's
        dialect."""
        view = self.view(now)
        tz = timezone(utc_offset)

        def when(moment: datetime | None) -> str | None:
            if moment is None:
                # Only the brand spec allows null; the partner spec does not and the agency
                # examples show "" (docs/api-facts.md §2 Job schema).
                return None if spec.null_dates else ""
            return moment.astimezone(tz).isoformat(timespec="seconds")

        if view.status == "COMPLETED" and self.file is not None:
            records = self.file.records
        else:
            records = self.expected_records * view.percent // 100
        replayable = self.replayable
        body: dict[str, object] = {
            "Id": self.id,
            "Type": self.job_type,
            "ProgramId": self.program_id,
            "CreatedBy": self.account_sid,
            "CreatedDate": when(self.created),
            "StartedDate": when(view.started),
            "CompletedDate": when(view.completed),
            "AbandonedDate": when(None),
            "CancelledDate": when(view.cancelled),
            "FailedDate": when(view.failed),
            "LastProgressUpdateDate": when(view.progress_at),
            "Status": view.status,
            "StatusMessage": view.message,
            # The doc examples send numbers and booleans as strings (docs/api-facts.md §2, Job
            # schema); the specs type them. `string_values` switches to the doc examples' dialect.
            "RecordsProcessed": str(records) if string_values else records,
            "PercentageComplete": str(view.percent) if string_values else view.percent,
            "Replayable": ("true" if replayable else "false") if string_values else replayable,
            "ResultUri": self.result_uri,
        }
        return body
