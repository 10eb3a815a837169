"""A command's session with the account: its `Client` (or the built-in sandbox's), the report
catalog cached for the day, a postback receiver when asked for, and the event loop the command
runs in, which stops when the reader of stdout goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console

from ..client import Client
from ..core.models import Report
from ..jobs.catalog import remember, remembered
from ..transport.config import ClientConfig
from ..transport.postbacks import PostbackReceiver
from .credentials import Credentials, default_ledger_path
from .events import echo_json
from .exits import leaf
from .local_sandbox import sandbox_client
from .options import PostbackArgs
from .paths import read_catalog, write_catalog
from .pipes import reader_gone_error, reader_watched

__all__ = ["Run", "open_run", "postback_receiver", "run_async"]

T = TypeVar("T")


@dataclass
class Run:
    client: Client
    sandbox: Any = None  # a running `Sandbox` with --sandbox


@asynccontextmanager
async def open_run(
    credentials: Credentials, ledger_path: Path | str | None, *, sandbox_offered: bool = False
) -> AsyncIterator[Run]:
    """The account's `Client` (its ledger at `ledger_path`); with `--sandbox`, a sandbox started
    for this run on loopback and a client of it."""
    if credentials.sandbox:
        async with sandbox_client(credentials, ledger_path) as (client, sandbox):
            yield Run(client, sandbox)
        return
    config = credentials.config(sandbox_offered=sandbox_offered)
    # The ledger keeps the daily quota's use, shared by every process on this machine.
    async with Client(config, ledger=default_ledger_path(ledger_path)) as client:
        lent = _lend_catalog(client, config)
        try:
            yield Run(client)
        finally:
            if not lent:
                _keep_catalog(client, config)


def _lend_catalog(client: Client, config: ClientConfig) -> bool:
    """The catalog `reportexport reports` cached for the day, given to the client's report-id
    check (no call for it); False when there is none."""
    cached = read_catalog(config)
    if cached is None:
        return False
    try:
        remember(client.api, [Report.model_validate(report) for report in cached])
    except ValueError:  # a cache from another version: the check asks again
        return False
    return True


def _keep_catalog(client: Client, config: ClientConfig) -> None:
    """A catalog the client's report-id check read, cached for `reportexport reports` and the
    next commands of the day."""
    found = remembered(client.api)
    if found is not None:
        write_catalog(config, [report.model_dump(mode="json") for report in found])


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """`work` in an event loop, cancelled when the reader of stdout goes away."""

    async def runner() -> T:
        async with reader_watched():
            return await work()
        # The reader of stdout went away and the work was cancelled (and cleaned up after
        # itself): a closed pipe, which `exits.invoke` ends with exit code 0.
        raise reader_gone_error()

    ctx = click.get_current_context(silent=True)
    try:
        return anyio.run(runner)
    except BaseException as raised:
        found = leaf(raised)
        if isinstance(found, click.UsageError) and found.ctx is None:
            found.ctx = ctx  # so its message names the command, as a parsing error's does
        raise


@asynccontextmanager
async def postback_receiver(
    run: Run | None, args: PostbackArgs | None, console: Console, *, as_json: bool
) -> AsyncIterator[PostbackReceiver | None]:
    """`--postback-listen HOST:PORT`: a receiver for job-completion postbacks for the run (the
    tracker then polls only as a safety net). With `--sandbox`, the sandbox sends its postbacks
    there; with an account, paste the printed URL into impact.com's Event Notifications."""
    if args is None:
        yield None
        return
    async with args.receiver() as receiver:
        if run is not None and run.sandbox is not None:
            run.sandbox.configure(postback_url=receiver.url)
        if as_json:
            echo_json({"event": "postbacks", "url": receiver.url})
        else:
            console.print(f"postbacks: listening at {receiver.url}")
        yield receiver
