"""`ReportExportClient`: one job at a time. Export, get, list, wait, download, replay.

    async with ReportExportClient(ClientConfig.from_env()) as client:
        ticket = await client.export(ExportRequest(report_id="mp_action_listing_fast",
                                                   start=date(2026, 1, 1), end=date(2026, 1, 31)))
        job = await client.wait(ticket.job_id)
        if job.status is JobStatus.COMPLETED:
            result = await client.download(ticket.job_id, Path("actions.csv"))

The client spends calls the way the guide says (docs/guide.md, rules 2-4): `wait` polls on its
own schedule (a few seconds growing to a minute, with jitter) and treats `ERROR` as not final,
because the service re-runs such jobs; `download` streams to disk; `replay` takes the job id from
the answer, since the sources disagree whether a replay keeps it. Planning many jobs, the ledger
and the replay guard live in the layers above.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from ..core.models import ClickExportRequest, ExportRequest, ExportTicket, Job, Report
from ..core.policies import PollPolicy
from ..core.requests import (
    Endpoint,
    RequestSpec,
    account_root,
    build_click_export,
    build_get_job,
    build_list_jobs,
    build_replay,
    build_report_export,
    spec_from_uri,
)
from ..core.responses import (
    interpret_catalog,
    interpret_job,
    interpret_job_page,
    interpret_replay,
    interpret_ticket,
    job_page_interpreter,
)
from ..errors import HTTPStatusError, WaitTimeout
from ..machine.clock import Clock
from .config import ClientConfig
from .connections import Connections
from .downloads import DownloadResult, Receipt, download_job
from .ratelimit import RateLimiter
from .server_clock import ServerClock
from .session import Session, UsageSnapshot

__all__ = ["ListingMark", "ReportExportClient"]

log = logging.getLogger("reportexport_async.transport.api")

#: The list convention's default page size (docs/api-facts.md §2 "Pagination"). No Jobs document
#: lists
#: `Page` or `PageSize`, so they are not sent unless the caller asks for a `page_size`; a bare
#: array (agency) this long may have been cut at the server's default page, and the next page is
#: asked for.
DEFAULT_PAGE_SIZE = 1000


@dataclass
class ListingMark:
    """Where a listing of some jobs (`iter_jobs(only=...)`) found the first of them, as that
    page's URI: given to the next listing of the same range, it starts there (the jobs a caller
    follows are the newest, past the pages of jobs long finished)."""

    uri: str | None = None


class ReportExportClient:
    """An async client for one impact.com account.

    `config` defaults to `ClientConfig.from_env()` (IMPACT_ACCOUNT_SID, IMPACT_AUTH_TOKEN,
    IMPACT_ACCOUNT_TYPE, IMPACT_BASE_URL). Give the same `limiter` to every client of one account
    so they share its hourly bucket, daily quotas and concurrency limit. `clock` and
    `random_source` are injectable (simulated time, deterministic tests). `stream_downloads` asks
    for the bytes directly (`Mode=Stream`) instead of following the 302 to a signed URL.
    `connections`, an open `transport.connections.Connections`, is a pool of connections shared
    with the clients of other accounts (by default the client has its own).
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        random_source: Callable[[], float] | None = None,
        stream_downloads: bool = False,
        connections: Connections | None = None,
    ) -> None:
        self.config = config if config is not None else ClientConfig.from_env()
        self._random = random_source or random.random
        self.session = Session(
            self.config,
            limiter=limiter,
            clock=clock,
            random_source=self._random,
            connections=connections,
        )
        self.session.clock.set_probe(self._hear_the_server)
        self.stream_downloads = stream_downloads

    def __repr__(self) -> str:
        return (
            f"ReportExportClient(account_sid={self.config.account_sid!r}, "
            f"account_type={self.config.account_type.value!r}, base_url={self.config.base_url!r})"
        )

    async def __aenter__(self) -> ReportExportClient:
        await self.session.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.session.aclose()

    @property
    def limiter(self) -> RateLimiter:
        return self.session.limiter

    @property
    def clock(self) -> ServerClock:
        """The server's clock, observed on every answer (`transport.server_clock.ServerClock`)."""
        return self.session.clock

    async def _hear_the_server(self) -> None:
        """The cheapest call that spends no quota, for the `Date` of its answer: a listing of
        the jobs created in the last minute."""
        now = self.clock.now()
        await self.list_jobs(now - timedelta(minutes=1), now)

    @property
    def usage(self) -> UsageSnapshot:
        """Calls per endpoint, retries, 429s received and bytes downloaded so far."""
        return self.session.usage.snapshot()

    def _sid(self) -> tuple[Any, str]:
        return self.config.account_type, self.config.account_sid

    # -- exports --------------------------------------------------------------------------------

    async def export(self, request: ExportRequest | ClickExportRequest) -> ExportTicket:
        """Queue a ReportExport (or ClickExport) job: one call, one unit of the daily quota.

        Identical parameters return the existing job id and still spend the quota (the guide's
        rule 1, docs/guide.md): the ledger above this layer is what avoids repeating them.
        """
        if isinstance(request, ClickExportRequest):
            spec = build_click_export(*self._sid(), request)
        else:
            spec = build_report_export(*self._sid(), request)
        return await self.session.call(spec, interpret_ticket)

    # -- jobs -----------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        return await self.session.call(build_get_job(*self._sid(), job_id), interpret_job)

    async def iter_jobs(
        self,
        created_after: date | datetime | None = None,
        created_before: date | datetime | None = None,
        *,
        page_size: int | None = None,
        only: Collection[str] | None = None,
        mark: ListingMark | None = None,
    ) -> AsyncIterator[Job]:
        """Every job created in the range, following every page (one call per page).

        Only the documented `CreatedAfter`/`CreatedBefore` are sent, and `PageSize` when
        `page_size` is given. A page's `@nextpageuri` is followed; a bare array (agency) of
        `page_size` (default: the convention's 1000) jobs is followed by `Page=2`, ...; a
        server that refuses paging (400 on a later page) has answered the whole list.

        With `only` (job ids), just the jobs with those ids are read and given, and the listing
        ends as soon as all of them were given. The pages are then asked for in the order most
        likely to hold them early: the jobs a caller follows are usually the newest, which sit
        at one end of a listing, so after the first page, when its answer names a last page
        (`@lastpageuri`), the pages are walked from the last one back (`@previouspageuri`).
        The other jobs of a page are not parsed. A job with one of those ids that is not found
        (created after the page that would have held it was read) is simply not given.

        With `only` and a `mark` (a `ListingMark` kept between listings of the same range), the
        listing starts at the page the earlier listing found its first job on and walks forward
        from it; only when some ids are still missing are the first page and the pages before
        the mark read. The mark is then moved to the page that held the first id found."""
        interpret = interpret_job_page if only is None else job_page_interpreter(only)
        spec = build_list_jobs(
            *self._sid(),
            created_after=created_after,
            created_before=created_before,
            page_size=page_size,
        )
        full = page_size or DEFAULT_PAGE_SIZE
        page_number = 1  # of a bare-array listing, asked for by number
        seen: set[str] = set()
        asked: set[str] = set()  # page URIs already read (the backward walk ends at them)
        link: str | None = None  # the next page to read, walking back from the last one
        first = True
        before_mark: str | None = None  # the page before the mark's (the backward walk's start)
        first_held = False  # the first page held one of `only`: the mark stays there
        if only is not None and mark is not None and mark.uri is not None:
            start, mark.uri = mark.uri, None
            forward: str | None = start
            while forward is not None and forward not in asked:
                asked.add(forward)
                try:
                    page = await self.session.call(
                        spec_from_uri(forward, Endpoint.LIST_JOBS), interpret
                    )
                except HTTPStatusError as refused:
                    if refused.status == 400:
                        break  # the mark is no page any more: the whole walk instead
                    raise
                if forward == start:
                    before_mark = page.meta_uri("previous") or ""
                found = False
                for job in page.jobs:
                    if job.id not in seen:
                        seen.add(job.id)
                        found = True
                        yield job
                if found and mark.uri is None and page.meta_uri("previous"):
                    mark.uri = page.meta_uri("", "@uri") or forward
                if all(job_id in seen for job_id in only):
                    return
                asked.update(u for u in (page.meta_uri("", "@uri"),) if u)
                forward = page.next_page_uri
            if before_mark == "":
                return  # the mark was the first page: every page was read
        while True:
            try:
                page = await self.session.call(spec, interpret)
            except HTTPStatusError as refused:
                if page_number > 1 and refused.status == 400:
                    return
                raise
            found = False
            for job in page.jobs:
                if job.id not in seen:  # pages may shift while jobs are created
                    seen.add(job.id)
                    found = True
                    yield job
            if found and mark is not None and only is not None and not first_held:
                # The earliest page read that held one: the last read walking back, unless the
                # first page held one (then no mark: the listing starts there anyway).
                mark.uri = None if first else page.meta_uri("", "@uri")
                first_held = first
            if only is not None and all(job_id in seen for job_id in only):
                return  # every job asked for was given: no need for another page
            asked.update(u for u in (page.meta_uri("", "@uri"), page.meta_uri("first")) if u)
            if first and only is not None and page.next_page_uri:
                link = before_mark or page.meta_uri("last")  # walk back from the last page
            elif link is not None:
                link = page.meta_uri("previous")
                if link is None:
                    return  # the first page has no previous one
            first = False
            if link is not None:
                if link in asked:
                    return  # back at a page already read: every page was read
                asked.add(link)
                spec = spec_from_uri(link, Endpoint.LIST_JOBS)
            elif page.next_page_uri:
                spec = spec_from_uri(page.next_page_uri, Endpoint.LIST_JOBS)
            elif page.meta or page.entries < full:
                return  # a wrapped page without a next URI, or a short bare-array page
            else:
                page_number += 1
                spec = build_list_jobs(
                    *self._sid(),
                    created_after=created_after,
                    created_before=created_before,
                    page=page_number,
                    page_size=page_size,
                )

    async def list_jobs(
        self,
        created_after: date | datetime | None = None,
        created_before: date | datetime | None = None,
        *,
        page_size: int | None = None,
    ) -> list[Job]:
        return [
            job async for job in self.iter_jobs(created_after, created_before, page_size=page_size)
        ]

    async def wait(
        self,
        job_id: str,
        *,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
    ) -> Job:
        """Poll until the job is COMPLETED, FAILED or CANCELLED and return it (also a failed one:
        the caller decides). `ERROR` is not final: the service re-runs it every 15 minutes, up
        to 5 tries (docs/api-facts.md §2). `deadline` is in seconds of the client's clock; past it,
        `WaitTimeout` carries the last state and the job goes on."""
        schedule = poll or self.config.poll
        machine = self.clock.machine  # a duration: not moved by the server's time
        started = machine.now()
        polls = 0
        while True:
            job = await self.get_job(job_id)
            if job.is_final:
                return job
            pause = schedule.interval(polls, self._random())
            polls += 1
            if deadline is not None:
                waited = (machine.now() - started).total_seconds()
                if waited + pause > deadline:
                    raise WaitTimeout(job, waited)
            log.info("job %s is %s: next look in %.1f s", job_id, job.status.value, pause)
            await self.clock.sleep(pause)

    async def download(
        self,
        job_id: str,
        dest: str | Path,
        *,
        wait: bool = True,
        receipt: Receipt | None = None,
    ) -> DownloadResult:
        """Stream the job's result to `dest` (via `dest.part`, fsync, rename) and return its
        path, size and sha256. Waits while the Download answers 202 (with `wait=False`, raises
        `JobNotReady` instead); downloads again after a truncated body; fetches a fresh signed
        URL when one has expired. `receipt` gets the result once the file is in place, in the
        same cancellation shield as the rename (a caller cancelled afterwards still records it)."""
        return await download_job(
            self.session,
            job_id,
            Path(dest),
            stream_mode=self.stream_downloads,
            random_source=self._random,
            wait=wait,
            receipt=receipt,
        )

    async def replay(self, job_id: str) -> Job:
        """`PUT /Jobs/{Id}/Replay`. Returns the replayed job; use its `id` from now on (agency:
        a new job; brand and partner: the same one). A 403 raises `ReplayRefused`.

        This is the raw call: the ledger's replay guard decides whether a replay is justified.
        """
        return await self.session.call(build_replay(*self._sid(), job_id), interpret_replay)

    # -- catalog --------------------------------------------------------------------------------

    async def reports(self) -> tuple[Report, ...]:
        """The account's report catalog (`GET /Reports`), either shape (docs/api-facts.md §1d)."""
        path = f"{account_root(*self._sid())}/Reports"
        return await self.session.call(
            RequestSpec("GET", path, (), Endpoint.REPORTS), interpret_catalog
        )
