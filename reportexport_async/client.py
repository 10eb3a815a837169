"""`Client`: the account, its memory and its limits in one object. The product.

    async with Client.from_env(ledger="ledger.sqlite") as client:
        result = await client.backfill("mp_action_listing_fast", date(2025, 1, 1),
                                       date(2025, 12, 31), out="data")

A client owns one configuration, one ledger (the durable memory of every export: nothing is ever
submitted twice, an interrupted run resumes), one rate limiter built from the configuration (the
hourly bucket, the daily quotas kept in the ledger, the calls in flight) and one clock, the
server's (`transport.server_clock.ServerClock`: every judgement of time is made on it, and the
machine's clock given as `clock` only measures the time between answers). Its methods are safe by
default:

- `export`: one export into one file, submitted at most once across runs and processes,
  re-attached after a crash, taken from its intact file with no call, downloaded again by job id
  when the file is damaged;
- `backfill`: many reports over a long range, in chunks, within the quotas (options as one
  `BackfillOptions` value, or as keywords); progress as a callback, or as an async iterator with
  `backfill_events`;
- `sync`: datasets kept current, one run a day (new days, refreshes of the recent days that
  are still settling, history last);
- `jobs`, `job`, `download(job_id)`, `replay(job_id)` (through the replay guard);
- `api`: the single calls (`ReportExportClient`) for those who want them.

Every method checks its arguments and prepares its output before any call, as the command line
does (`reportexport_async.destinations.outputs`): missing folders are made; a folder where a file is
needed, a file where a folder is needed, a place that cannot be written, reversed or future dates, a
bad chunk rule, filter or format raise `ConfigurationError` naming the argument; a report id never
accepted before is looked up in the account's catalog (`reportexport_async.jobs.catalog`: one call a
day at most, no quota) and an unknown one raises `UnknownReport`. Nothing is spent or written.

No `ExceptionGroup` leaves a method: a single error is raised as itself, also an exception raised
in a progress callback.

`Client.for_sandbox(sandbox)` is a client of a running built-in sandbox, on the sandbox's clock,
for tests and examples.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import date, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, Unpack
from weakref import WeakKeyDictionary

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .core.chunking import Chunk
from .core.fingerprint import account_key
from .core.models import ExportRequest, Job, checked
from .destinations import IntoURL, SavedChunk
from .destinations.outputs import prepare_file
from .errors import ConfigurationError
from .jobs.catalog import check_reports as check_report_ids
from .jobs.driver import download_recorded
from .jobs.exports import ExportOutcome, ReplayOutcome, fetch_export, replay_job
from .jobs.orchestrator import (
    BackfillChanges,
    BackfillOptions,
    BackfillResult,
    ExportSpec,
    ProgressEvent,
    backfill,
    files_into,
)
from .jobs.orchestrator.plan import account_today, check_range
from .jobs.sync import Dataset, SyncOptions, SyncResult, sync
from .ledger import DEFAULT_LEDGER_PATH
from .ledger.store import LEDGER_URL_ENV, LedgerStore, open_ledger
from .machine.clock import Clock, ScaledClock, SystemClock
from .transport.api import ReportExportClient
from .transport.config import ClientConfig
from .transport.connections import Connections
from .transport.downloads import DownloadResult
from .transport.postbacks import PostbackReceiver
from .transport.ratelimit import RateLimiter
from .transport.server_clock import ServerClock
from .transport.session import UsageSnapshot

if TYPE_CHECKING:  # pragma: no cover - the sandbox is imported only when asked for
    from .sandbox import Sandbox

__all__ = ["BackfillEvents", "Client"]

Exports: TypeAlias = str | ExportSpec | Sequence[str | ExportSpec]


class Client:
    """One impact.com account: configuration, ledger, limits and clock, owned together.

    `config` defaults to `ClientConfig.from_env()`. `ledger` is a path (opened and closed with
    the client; by default `ledger.sqlite` in the user's data folder, see
    `reportexport_async.ledger.location`), a `postgresql://` URL (a ledger shared
    by several processes and hosts, opened and closed with the client), an open ledger (used,
    not closed; the clients of several accounts may share one, one open client per account), or
    None for a temporary ledger that is removed on close (it remembers nothing afterwards).
    `clock` and `random_source` are injectable for simulated time and deterministic tests;
    `stream_downloads` asks for result bytes directly instead of following a signed URL.
    `connections`, an open `Connections`, is a pool of connections shared with the clients of
    other accounts (`run_per_account` gives its clients one); by default the client has its own.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        ledger: str | Path | LedgerStore | None = DEFAULT_LEDGER_PATH,
        clock: Clock | None = None,
        random_source: Callable[[], float] | None = None,
        stream_downloads: bool = False,
        connections: Connections | None = None,
    ) -> None:
        self.config = config if config is not None else ClientConfig.from_env()
        self._connections = connections
        self._clock = ServerClock(clock or SystemClock())
        self._clock.ask_before_spending = True
        self._ledger_spec = ledger
        self._random = random_source
        self._stream_downloads = stream_downloads
        self._stack: AsyncExitStack | None = None
        self._ledger: LedgerStore | None = (
            None if ledger is None or isinstance(ledger, str | Path) else ledger
        )
        self._api: ReportExportClient | None = None

    @classmethod
    def from_env(
        cls,
        *,
        ledger: str | Path | LedgerStore | None = DEFAULT_LEDGER_PATH,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        **settings: Any,
    ) -> Client:
        """A client of the account named by `IMPACT_ACCOUNT_SID`, `IMPACT_AUTH_TOKEN`,
        `IMPACT_ACCOUNT_TYPE` (and `IMPACT_BASE_URL`); `settings` override them. The ledger is
        `IMPACT_LEDGER_URL` (a path or a `postgresql://` URL) unless `ledger` is given."""
        named = (os.environ if environ is None else environ).get(LEDGER_URL_ENV)
        if named and ledger is DEFAULT_LEDGER_PATH:
            ledger = named
        return cls(ClientConfig.from_env(environ, **settings), ledger=ledger, clock=clock)

    @classmethod
    def for_sandbox(
        cls,
        sandbox: Sandbox,
        *,
        ledger: str | Path | LedgerStore | None = None,
        account_type: str = "Mediapartners",
        **settings: Any,
    ) -> Client:
        """A client of a running sandbox's account (its main one, unless `settings` name another
        with `account_sid` and `auth_token`), on the sandbox's clock: a sandbox on a
        manual clock moves forward when the client sleeps (simulated hours in milliseconds), a
        scaled one runs at its own pace. The ledger is temporary unless given."""
        from .sandbox.testing import SandboxTime

        clock: Clock
        jitter: Callable[[], float] | None = None
        if sandbox.clock.scale > 0:  # time that flows: the client follows at the same pace
            clock = ScaledClock(start=sandbox.now(), scale=sandbox.clock.scale)
        else:  # a manual clock: the client's sleeps move it, the same way every time
            clock = SandboxTime(sandbox)
            jitter = _no_jitter
        # `account_sid` and `auth_token` in `settings` choose another of the sandbox's accounts.
        config = ClientConfig(
            **{
                "account_sid": sandbox.account_sid,
                "auth_token": sandbox.auth_token,
                "account_type": account_type,
                "base_url": sandbox.base_url,
                **settings,
            }
        )
        return cls(config, ledger=ledger, clock=clock, random_source=jitter)

    @property
    def clock(self) -> ServerClock:
        """The server's clock (`transport.server_clock.ServerClock`): every judgement of time is
        made on it; the machine's clock given to the client only measures the time between
        answers."""
        return self._clock

    @clock.setter
    def clock(self, machine: Clock) -> None:
        """Another machine clock (before the client opens)."""
        self._clock = machine if isinstance(machine, ServerClock) else ServerClock(machine)
        self._clock.ask_before_spending = True

    def __repr__(self) -> str:
        return (
            f"Client(account_sid={self.config.account_sid!r}, "
            f"account_type={self.config.account_type.value!r}, base_url={self.config.base_url!r})"
        )

    # -- life ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        stack = AsyncExitStack()
        try:
            if self._ledger is None:
                spec = self._ledger_spec
                if spec is None:
                    folder = Path(tempfile.mkdtemp(prefix="reportexport-ledger-"))
                    stack.callback(shutil.rmtree, folder, True)
                    spec = folder / "ledger.sqlite"
                assert isinstance(spec, str | Path)
                ledger = open_ledger(spec, clock=self.clock)
                await stack.enter_async_context(ledger)
                self._ledger = ledger
                stack.callback(self._forget_ledger)
            # One open client per account on a ledger object: its claims are the ledger
            # object's, so two clients of one account on it could both submit a chunk.
            stack.enter_context(_account_on(self._ledger, self.config))
            if not isinstance(self._ledger.clock, ServerClock):
                # The ledger's stamps are judged by the replay guard and the settle window:
                # on the server's clock, like every other moment (an open ledger given here).
                self._ledger.clock = self.clock
            # One limiter from the configuration, its counts kept in the ledger's database by
            # the counters' own store: the limiter never holds the ledger's records.
            limiter = RateLimiter(
                self.config.rate_limit, clock=self.clock, store=self._ledger.counters
            )
            api = ReportExportClient(
                self.config,
                limiter=limiter,
                clock=self.clock,
                random_source=self._random,
                stream_downloads=self._stream_downloads,
                connections=self._connections,
            )
            await stack.enter_async_context(api)
            self._api = api
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    def _forget_ledger(self) -> None:
        self._ledger = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        self._api = None
        if stack is not None:
            await stack.aclose()

    # -- what it owns --------------------------------------------------------------------------

    @property
    def api(self) -> ReportExportClient:
        """The single calls (export, get, list, wait, download, replay), with no ledger."""
        if self._api is None:
            raise RuntimeError("the client is not open: use `async with Client(...)` first")
        return self._api

    @property
    def ledger(self) -> LedgerStore:
        if self._ledger is None or self._api is None:
            raise RuntimeError("the client is not open: use `async with Client(...)` first")
        return self._ledger

    @property
    def limiter(self) -> RateLimiter:
        return self.api.limiter

    @property
    def usage(self) -> UsageSnapshot:
        """Calls per endpoint, retries, 429s received and bytes downloaded so far."""
        return self.api.usage

    # -- the product ---------------------------------------------------------------------------

    async def export(
        self,
        report: str | ExportRequest,
        *,
        out: str | Path,
        start: date | None = None,
        end: date | None = None,
        filters: Mapping[str, Any] | None = None,
        result_format: str = "CSV",
        fresh: bool = False,
        check_reports: bool = True,
        into: str | IntoURL | None = None,
    ) -> ExportOutcome:
        """One export into the file `out`, spending as few calls as the guide allows: none when
        the file is intact, no submit when the job is known. Without `start`/`end`, the report's
        default range. `fresh` asks for a replay when new data is plausible (recent days).
        `into` (`duckdb:///PATH`, `parquet:///PATH`) also loads the file into a typed
        destination (schema `main`), replacing what the same export loaded before; the
        outcome's `loaded` says what was loaded where.

        Before any call: the arguments are checked, the folders of `out` made, and a report id
        never accepted before looked up in the account's catalog (`check_reports`; one call a
        day at most, no quota); a mistake is a `ConfigurationError` naming the argument."""
        if isinstance(report, ExportRequest):
            request = report
        else:
            request = checked(
                partial(
                    ExportRequest,
                    report_id=report,
                    start=start,
                    end=end,
                    filters=filters if filters is not None else {},
                    result_format=result_format,
                ),
                rename={"report_id": "report", "": "start"},
            )
        with unwrapped():
            if request.start is not None and request.end is not None:
                check_range(request.start, request.end, await account_today(self.api))
            dest = prepare_file(out)
            beside = None if into is None else files_into(dest.parent, into)
            try:
                if beside is not None:
                    beside.check()
                if check_reports:
                    await check_report_ids(
                        self.api, self.ledger, [request.report_id], setting="report"
                    )
                if request.start is None:  # the default range: a job per day of the server's
                    await self.clock.fresh_now()
                outcome = await fetch_export(self.api, self.ledger, request, dest, fresh=fresh)
                if beside is None:
                    return outcome
                chunk = None
                if request.start is not None and request.end is not None:
                    chunk = Chunk(request.start, request.end)
                saved = SavedChunk(
                    outcome.fingerprint, request, chunk, outcome.path, outcome.sha256,
                    outcome.job_id,
                )  # fmt: skip
                return dataclasses.replace(outcome, loaded=tuple(await beside.saved(saved)))
            finally:
                if beside is not None:
                    with anyio.CancelScope(shield=True):
                        await beside.aclose()

    async def backfill(
        self,
        exports: Exports,
        start: date,
        end: date,
        *,
        out: str | Path,
        options: BackfillOptions | None = None,
        on_event: Callable[[ProgressEvent], None] | None = None,
        postbacks: PostbackReceiver | None = None,
        into: str | IntoURL | None = None,
        **changes: Unpack[BackfillChanges],
    ) -> BackfillResult:
        """Pull `exports` (report ids or `ExportSpec`s) over `[start, end]` into the folder
        `out`, in chunks, within the quotas, as `options` (or keyword `changes`, e.g.
        `chunk="1d"`) say; see `BackfillOptions`. `on_event` gets every `ProgressEvent`;
        `postbacks` wakes jobs as impact.com reports them done. Run the same call again to
        resume: what is done costs nothing. `into` (`duckdb:///PATH`, `parquet:///PATH`) also
        loads every chunk into a typed destination beside the files (docs/destinations.md)."""
        with _named_out(), unwrapped():
            return await backfill(
                self.api, self.ledger, exports, start, end, out_dir=out, options=options,
                on_event=on_event, postbacks=postbacks, into=into, **changes,
            )  # fmt: skip

    @asynccontextmanager
    async def backfill_events(
        self,
        exports: Exports,
        start: date,
        end: date,
        *,
        out: str | Path,
        options: BackfillOptions | None = None,
        postbacks: PostbackReceiver | None = None,
        into: str | IntoURL | None = None,
        **changes: Unpack[BackfillChanges],
    ) -> AsyncIterator[BackfillEvents]:
        """`backfill`, with its progress as an async iterator; the result is `events.result`
        once the iteration ends. Leaving the block early stops the run (its manifest is written;
        the next run resumes).

            async with client.backfill_events("R", start, end, out="data") as events:
                async for event in events:
                    print(event.kind, event.message)
            print(events.result.counts)
        """
        send, receive = anyio.create_memory_object_stream[ProgressEvent](math.inf)
        events = BackfillEvents(receive)

        async def run() -> None:
            with send:
                events.result = await backfill(
                    self.api, self.ledger, exports, start, end, out_dir=out, options=options,
                    on_event=send.send_nowait, postbacks=postbacks, into=into, **changes,
                )  # fmt: skip

        with _named_out(), unwrapped():
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                try:
                    yield events
                finally:
                    if events.result is None:
                        group.cancel_scope.cancel()

    async def sync(
        self,
        datasets: Dataset | Sequence[Dataset],
        *,
        options: SyncOptions | None = None,
        on_event: Callable[[ProgressEvent], None] | None = None,
        postbacks: PostbackReceiver | None = None,
    ) -> SyncResult:
        """Keep `datasets` current: new days submitted, the settle window refreshed by replaying
        each chunk's own job (at most once a day), history last; run it once a day. See
        `reportexport_async.jobs.sync`."""
        with unwrapped():
            return await sync(self, datasets, options=options, on_event=on_event,
                              postbacks=postbacks)  # fmt: skip

    @property
    def account(self) -> str:
        """The account's key in the ledger (`core.fingerprint.account_key`): a job id is looked
        up among this account's entries only."""
        config = self.config
        return account_key(config.base_url, config.account_type, config.account_sid)

    async def jobs(
        self, since: date | datetime | None = None, until: date | datetime | None = None
    ) -> list[Job]:
        """The account's jobs created in the range (one listing call per page)."""
        with unwrapped():
            return await self.api.list_jobs(since, until)

    async def job(self, job_id: str) -> Job:
        """One job's state (one call); the ledger records it when it knows the job."""
        with unwrapped():
            job = await self.api.get_job(job_id)
            entry = await self.ledger.find(job_id, account=self.account)
            if entry is not None:
                await self.ledger.record_status(entry.fingerprint, job)
            return job

    async def download(self, job_id: str, out: str | Path | None = None) -> DownloadResult:
        """A job's result by its id (never by submitting again), waiting while it runs; into
        `out`, or `<job id>.<format>` in the working folder. The ledger records it when it knows
        the job."""
        with unwrapped():
            entry = await self.ledger.find(job_id, account=self.account)
            extension = (entry.result_format if entry else "csv").lower()
            dest = prepare_file(out if out is not None else f"{job_id}.{extension}")
            if entry is None:
                return await self.api.download(job_id, dest)
            return await download_recorded(self.api, self.ledger, entry.fingerprint, job_id, dest)

    async def replay(
        self, job_id: str, *, force: bool = False, fresh: bool = False
    ) -> ReplayOutcome:
        """Replay a job through the replay guard (raises `ReplayRefused` naming the rule);
        `force` overrides only what the guide lets a caller override."""
        with unwrapped():
            await self.clock.fresh_now()  # the replay guard judges on the server's time
            return await replay_job(self.api, self.ledger, job_id, force=force, fresh=fresh)


#: The accounts of the clients open on each ledger object (a ledger may serve many accounts).
_OPEN_ACCOUNTS: WeakKeyDictionary[LedgerStore, set[str]] = WeakKeyDictionary()


@contextmanager
def _account_on(ledger: LedgerStore, config: ClientConfig) -> Iterator[None]:
    """Register the client's account on `ledger` while the client is open; a second open client
    of the same account on the same ledger object is refused (share the first one instead)."""
    account = account_key(config.base_url, config.account_type, config.account_sid)
    accounts = _OPEN_ACCOUNTS.setdefault(ledger, set())
    if account in accounts:
        raise ConfigurationError(
            "ledger",
            f"another open Client of account {config.account_sid} uses this Ledger object; "
            "use that client (one client per account), or give this one its own ledger",
        )
    accounts.add(account)
    try:
        yield
    finally:
        accounts.discard(account)


@contextmanager
def _named_out() -> Iterator[None]:
    """The orchestrator names its output folder `out_dir`; the client's argument is `out`."""
    try:
        yield
    except ConfigurationError as error:
        if error.setting != "out_dir":
            raise
        raise ConfigurationError("out", error.problem, dataset=error.dataset) from None


def _no_jitter() -> float:
    """The middle of every jittered wait: simulated runs repeat exactly."""
    return 0.5


class BackfillEvents:
    """The progress of a running backfill, as an async iterator of `ProgressEvent`s; `result`
    once the run has ended."""

    def __init__(self, receive: MemoryObjectReceiveStream[ProgressEvent]) -> None:
        self._receive = receive
        self.result: BackfillResult | None = None

    def __aiter__(self) -> BackfillEvents:
        return self

    async def __anext__(self) -> ProgressEvent:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


@contextmanager
def unwrapped() -> Iterator[None]:
    """At the public boundary: an `ExceptionGroup` of task groups holding one error (nested or
    not) is raised as that error, with its own traceback and cause."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _single(group)
        if leaf is None:
            raise
        context, cause, suppress = leaf.__context__, leaf.__cause__, leaf.__suppress_context__
        try:
            raise leaf
        finally:
            leaf.__context__, leaf.__cause__ = context, cause
            leaf.__suppress_context__ = suppress


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    return leaves[0] if len(leaves) == 1 else None
