"""What every room of the sandbox shares: the settings, the clock, the state a reset clears, the
seeded randomness and the background tasks.

The rooms (`routing`, `limits`, `exports`, `jobs`, `files`, `postbacks`, `faults`, `control`)
each hold this one object, so a `configure` or a `reset` is seen by all of them at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import SandboxClock
from .config import SandboxConfig

if TYPE_CHECKING:
    from .jobs import SandboxJob


@dataclass(order=True)
class Due:
    """A postback delivery due at `due` (sandbox time)."""

    due: datetime
    order: int
    job_id: str = field(compare=False)
    generation: int = field(compare=False)
    attempt: int = field(compare=False)


@dataclass
class AccountUse:
    """One account's counters: its calls, its daily quotas' use, its hourly bucket, its jobs and
    refusals."""

    #: Every API call naming the account, answered or refused, by endpoint (as `State.calls`).
    calls: Counter[str] = field(default_factory=Counter)
    quota: dict[tuple[date, str], int] = field(default_factory=dict)
    hourly: dict[datetime, int] = field(default_factory=dict)
    max_hourly_used: int = 0
    jobs_created: int = 0
    rate_limited: int = 0
    unauthorized: int = 0


@dataclass
class State:
    """Everything `POST /_sandbox/reset` clears."""

    jobs: dict[str, SandboxJob] = field(default_factory=dict)
    by_account: dict[tuple[str, str], list[SandboxJob]] = field(default_factory=dict)
    dedup: dict[tuple[object, ...], str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    #: The client addresses (host, port) the calls came from: one per TCP connection, since
    #: a client's open connections each have a port of their own.
    peers: set[object] = field(default_factory=set)
    status_codes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    #: Per account SID (the main account's are the ones `stats()` shows at the top).
    use: dict[str, AccountUse] = field(default_factory=dict)
    rate_limited: int = 0
    rate_limited_by: Counter[str] = field(default_factory=Counter)
    jobs_created: int = 0
    replays: int = 0
    unauthorized: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # strict dialect: by 400 or 406
    signed_with_authorization: int = 0
    signed_expired: int = 0
    postbacks: Counter[str] = field(default_factory=Counter)
    postback_latency: list[float] = field(default_factory=list)
    burst_left: int = 0
    sequence: int = 0
    due: list[Due] = field(default_factory=list)
    parked: dict[str, list[Due]] = field(default_factory=dict)

    def seen_from(self, request: Any) -> None:
        """Count the connection `request` (an aiohttp request) came over."""
        transport = request.transport
        self.peers.add(None if transport is None else transport.get_extra_info("peername"))

    def of(self, sid: str) -> AccountUse:
        """The counters of the account `sid` (made on first use)."""
        use = self.use.get(sid)
        if use is None:
            use = self.use[sid] = AccountUse()
        return use


class Shared:
    """The sandbox's common ground. `config` and `state` are replaced (by `configure` and
    `reset`), never mutated in place by a room that keeps its own copy."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self.state = State()
        #: How many times `reset` replaced `state`: job ids after a reset differ from those
        #: before it (a ledger kept across a reset never mistakes a new job for an old one).
        self.resets = 0
        self.rng = random.Random(config.seed)
        self.storage: Path | None = None
        self.running = False
        #: A background task's crash (a sandbox bug): the API stops serving and says so.
        self.failure: BaseException | None = None
        # Background work (result writing, postback delivery, the scheduler). Not an anyio task
        # group: `async with Sandbox()` must be exitable from another task than the one that
        # entered it (pytest-asyncio runs a fixture's setup and teardown in different tasks), so
        # the sandbox keeps its tasks itself and cancels and awaits all of them on exit.
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if not self.running:
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug in the sandbox must not pass silently: stop serving API calls.
            self.failure = task.exception()

    async def stop_tasks(self) -> None:
        """Cancel every background task and wait for them; re-raise the first crash."""
        self.running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for result in results:
            if isinstance(result, Exception):
                raise result
