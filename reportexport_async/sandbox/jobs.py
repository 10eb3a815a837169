"""Sandbox jobs: a timeline drawn when the job is queued, read at any sandbox time; and the jobs
room, which makes jobs and answers the Jobs endpoints (get, list, download, replay).

A job's whole life is decided when it is queued (or replayed), from a random generator seeded by
the sandbox seed and the job: how long each attempt takes and how it ends. Its status at any moment
is then a pure function of that timeline and the sandbox clock, so `advance`, time scaling and
concurrent readers all see one consistent story, and no background task has to move jobs along.

The real service's ERROR handling (docs/api-facts.md §2, Job statuses): an attempt that ends in
ERROR is re-run 15 minutes later, at most 5 tries in all; after the fifth unsuccessful try the job
is FAILED.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from aiohttp import web
from yarl import URL

from .catalog import Column, Persona, PersonaSpec
from .data import DataKey, ResultFile
from .routing import InvalidInput, error, persona_spec, validation_failed

if TYPE_CHECKING:
    from .faults import Faults
    from .files import Files
    from .postbacks import Postbacks
    from .shared import Shared

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
        self,
        now: datetime,
        spec: PersonaSpec,
        *,
        string_values: bool,
        utc_offset: timedelta,
        strict: bool = False,
    ) -> dict[str, object]:
        """The Job object of the specs (docs/api-facts.md §2, Job schema), in the persona's dialect;
        `strict`: valid against the persona's document (an unset date is left out)."""
        view = self.view(now)
        tz = timezone(utc_offset)

        def when(moment: datetime | None) -> str | None:
            if moment is None:
                # Brand spec: nullable; partner and agency: "" as the agency examples show
                # (docs/api-facts.md §2).
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
        if strict:
            # No document admits "" as a date-time, and only the brand's (a 3.0 keyword, which
            # 3.1 ignores) admits null: a date that is not set is not sent.
            unset = [key for key, value in body.items() if key.endswith("Date") and not value]
            for key in unset:
                del body[key]
        return body


class Jobs:
    """The jobs room: creating and launching jobs, and the Jobs endpoints (get, list, download,
    replay) for every persona."""

    def __init__(self, shared: Shared, faults: Faults, files: Files, postbacks: Postbacks) -> None:
        self._shared = shared
        self._faults = faults
        self._files = files
        self._postbacks = postbacks

    # -- making jobs ------------------------------------------------------------------------------

    def find_or_create(
        self,
        dedup: tuple[object, ...],
        *,
        persona: Persona,
        job_type: str,
        program_id: str,
        key: DataKey,
        columns: tuple[Column, ...],
        start: date,
        end: date,
        fmt: str,
        now: datetime,
    ) -> SandboxJob:
        # the guide's rule 1 (docs/guide.md) / §1d: identical parameters return the existing job
        # (and still count).
        state = self._shared.state
        existing = state.dedup.get(dedup)
        if existing is not None:
            return state.jobs[existing]
        job = self.new_job(persona, job_type, program_id, key, columns, start, end, fmt, now)
        state.dedup[dedup] = job.id
        return job

    def new_job(
        self,
        persona: Persona,
        job_type: str,
        program_id: str,
        key: DataKey,
        columns: tuple[Column, ...],
        start: date,
        end: date,
        fmt: str,
        now: datetime,
    ) -> SandboxJob:
        shared = self._shared
        state = shared.state
        state.sequence += 1
        # The same ids from the same seed, run after run; a reset starts another series.
        series = f"{shared.resets}:" if shared.resets else ""
        digest = hashlib.sha256(f"{shared.config.seed}:{series}{state.sequence}".encode()).digest()
        job_id = str(uuid.UUID(bytes=digest[:16], version=4))
        job = SandboxJob(
            id=job_id,
            columns=columns,
            persona=persona,
            account_sid=key.account_sid,
            job_type=job_type,
            source=key.source,
            program_id=program_id,
            key=key,
            start=start,
            end=end,
            result_format=fmt,
            created=now,
            timeline=self._draw_timeline(job_id, 0, now),
            expected_records=0,
            sequence=state.sequence,
        )
        state.jobs[job.id] = job
        state.by_account.setdefault((persona, key.account_sid), []).append(job)
        state.jobs_created += 1
        state.of(key.account_sid).jobs_created += 1
        self._launch(job, now)
        return job

    def _draw_timeline(self, job_id: str, generation: int, now: datetime) -> Timeline:
        """The job's whole life from `now`, drawn from a generator seeded by the job."""
        config = self._shared.config
        return plan_timeline(
            random.Random(f"{config.seed}:{job_id}:{generation}"),
            now,
            config.job_duration,
            fail_rate=config.fault("job_fail"),
            error_rate=config.fault("job_error"),
            stuck_rate=config.fault("job_stuck"),
        )

    def _launch(self, job: SandboxJob, now: datetime) -> None:
        """Write the job's result in the background and schedule its postback."""
        self._faults.count_timeline(job)
        as_of = job.timeline.final_at or now
        job.expected_records = sum(count for _, count in self._files.day_counts(job, as_of))
        final_at = job.final_event_at()
        if final_at is None:
            return
        if job.timeline.final_status == "COMPLETED":
            self._files.write_later(job, final_at)
        self._postbacks.schedule(job, final_at)

    # -- the endpoints ----------------------------------------------------------------------------

    def _job_for(self, request: web.Request) -> SandboxJob | None:
        job = self._shared.state.jobs.get(request.match_info["job_id"])
        if (
            job is None
            or job.persona != request.match_info["persona"]
            or job.account_sid != request.match_info["sid"]
        ):
            return None
        return job

    def job_json(self, spec: PersonaSpec, job: SandboxJob, now: datetime) -> dict[str, object]:
        config = self._shared.config
        return job.to_json(
            now,
            spec,
            string_values=config.string_values,
            utc_offset=config.utc_offset,
            strict=config.dialect == "strict",
        )

    async def get_job(self, request: web.Request) -> web.Response:
        job = self._job_for(request)
        if job is None:
            return error(404, "Job not found")
        return web.json_response(
            self.job_json(persona_spec(request), job, self._shared.clock.now())
        )

    def _list_bound(self, text: str, name: str, upper: bool) -> datetime:
        """`CreatedAfter`/`CreatedBefore`: a date (inclusive, in the account's timezone, as the
        agency spec says) or an ISO date-time (brand)."""
        tz = timezone(self._shared.config.utc_offset)
        try:
            if "T" in text:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return moment if moment.tzinfo else moment.replace(tzinfo=tz)
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"Invalid date '{text}' for {name}", name) from None
        if upper:
            return datetime.combine(day + timedelta(days=1), time(0), tz) - timedelta(
                microseconds=1
            )
        return datetime.combine(day, time(0), tz)

    @staticmethod
    def _positive_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
        text = query.get(name)
        if text is None:
            return default
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise InvalidInput(f"{name} must be a whole number from 1 to {maximum}", name)
        return int(text)

    async def list_jobs(self, request: web.Request) -> web.Response:
        shared = self._shared
        spec = persona_spec(request)
        query = request.query
        now = shared.clock.now()
        try:
            after, before = (
                self._list_bound(query[name], name, upper=upper) if name in query else None
                for name, upper in (("CreatedAfter", False), ("CreatedBefore", True))
            )
            page = self._positive_int(query, "Page", 1, 10**9)
            size = self._positive_int(
                query, "PageSize", shared.config.jobs_page_size, shared.config.max_page_size
            )
        except InvalidInput as problem:
            return validation_failed(problem)
        jobs = [
            job
            for job in shared.state.by_account.get((spec.root, request.match_info["sid"]), [])
            if (after is None or job.created >= after) and (before is None or job.created <= before)
        ]
        if shared.config.dialect == "strict":
            # No Jobs document pages (the strict dialect refused Page and PageSize): all jobs.
            everything = [self.job_json(spec, job, now) for job in jobs]
            return web.json_response({"Jobs": everything} if spec.list_wrapped else everything)
        total = len(jobs)
        pages = max(1, math.ceil(total / size))
        chosen = jobs[(page - 1) * size : page * size]
        items = [self.job_json(spec, job, now) for job in chosen]
        if not spec.list_wrapped:
            # The agency answers a top-level array (§2): no room for page meta. A client keeps
            # asking for pages until one comes back shorter than PageSize.
            return web.json_response(items)

        def page_uri(number: int) -> str:
            params = {k: v for k, v in query.items() if k not in ("Page", "PageSize")}
            params.update({"Page": str(number), "PageSize": str(size)})
            return str(URL(request.path).with_query(params))

        spelling = "ruri" if spec.partner_page_spelling else "uri"
        start_index = (page - 1) * size
        body: dict[str, object] = {
            "@page": str(page),
            "@numpages": str(pages),
            "@pagesize": str(size),
            "@total": str(total),
            "@start": str(start_index),
            "@end": str(start_index + len(chosen) - 1 if chosen else start_index),
            "@uri": page_uri(page),
            f"@firstpage{spelling}": page_uri(1),
            f"@previouspage{spelling}": page_uri(page - 1) if page > 1 else "",
            "@nextpageuri": page_uri(page + 1) if page < pages else "",
            f"@lastpage{spelling}": page_uri(pages),
            "Jobs": items,
        }
        return web.json_response(body)

    async def download(self, request: web.Request) -> web.StreamResponse:
        job = self._job_for(request)
        if job is None:
            return error(404, "Job not found")
        now = self._shared.clock.now()
        if job.expired:
            return error(404, "The job's result has expired")
        if job.view(now).status != "COMPLETED" or job.file is None:
            # §2: 202 with the current Job while there is no result to download.
            return web.json_response(self.job_json(persona_spec(request), job, now), status=202)
        return await self._files.answer_download(request, job)

    async def replay(self, request: web.Request) -> web.Response:
        spec = persona_spec(request)
        job = self._job_for(request)
        if job is None:
            return error(404, "Job not found")
        now = self._shared.clock.now()
        status = job.view(now).status
        if not job.replayable or status not in spec.replayable_states:
            # §2: 403 while the job is not in a replayable state (e.g. still running).
            return error(403, f"The job is not in a replayable state (Status {status})")
        self._shared.state.replays += 1
        if spec.replay_new_id:
            # Agency: "Replaying creates a new job with a new Id; the original is not modified."
            new = self.new_job(
                job.persona,
                job.job_type,
                job.program_id,
                job.key,
                job.columns,
                job.start,
                job.end,
                job.result_format,
                now,
            )
            return web.json_response(self.job_json(spec, new, now))
        # Brand and partner: the same job is re-queued.
        job.generation += 1
        job.storage_error = None
        job.expired = False
        self._files.discard(job)
        job.cancelled_at = None
        job.timeline = self._draw_timeline(job.id, job.generation, now)
        self._launch(job, now)
        return web.json_response(self.job_json(spec, job, now))
