"""`--sandbox`: the built-in sandbox started on loopback for one run, and a client of it (its
own account, its own ledger), at a pace where its jobs take well under a second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..client import Client
from ..core.policies import RateLimitPolicy
from .credentials import Credentials, default_ledger_path
from .events import echo_json
from .paths import LEGACY_SANDBOX_LEDGER
from .verbose import register_origin, register_secret

__all__ = ["SANDBOX_LEDGER_NAME", "SANDBOX_TIME_SCALE", "sandbox_banner", "sandbox_client"]

#: Runs against the built-in sandbox keep their own ledger (in the user's data folder, like the
#: account's): a fresh sandbox is a fresh account.
SANDBOX_LEDGER_NAME = LEGACY_SANDBOX_LEDGER.name

#: `--sandbox`: sandbox seconds per real second. Its jobs take 30 s to 5 min of sandbox time
#: (0.05 to 0.5 real seconds), and the client's poll ticks of 10 sandbox seconds take 1/60 s.
SANDBOX_TIME_SCALE = 600.0
SANDBOX_JOB_DURATION = (30.0, 300.0)
SANDBOX_ROWS_PER_DAY = 50
SANDBOX_ACCOUNT_TYPE = "Mediapartners"


@asynccontextmanager
async def sandbox_client(
    credentials: Credentials, ledger_path: Path | str | None
) -> AsyncIterator[tuple[Client, Any]]:
    """A sandbox started for this run and a client of it: (the client, the running `Sandbox`).
    Options that name another account are a usage error."""
    given = [
        name
        for name, value in (
            ("--account-sid", credentials.account_sid),
            ("--auth-token-file", credentials.auth_token_file),
            ("--base-url", credentials.base_url),
        )
        if value
    ]
    if given:
        raise click.UsageError(f"--sandbox makes its own account: drop {', '.join(given)}")
    from ..sandbox import Sandbox  # the server side, loaded only when asked for

    limit = credentials.sandbox_daily_export_limit
    sandbox_settings: dict[str, Any] = {
        "time_scale": SANDBOX_TIME_SCALE,
        "job_duration": SANDBOX_JOB_DURATION,
        "rows_per_day": SANDBOX_ROWS_PER_DAY,
    }
    if limit is not None:
        sandbox_settings["daily_export_limit"] = limit
    async with Sandbox(**sandbox_settings) as sandbox:
        # The client's clock runs at the sandbox's pace, from the sandbox's now; each
        # sandbox is a new account (a new SID), so its quota count starts afresh.
        daily = sandbox.config.daily_export_limit
        settings: dict[str, Any] = {
            "rate_limit": credentials.rate_limit(
                RateLimitPolicy(daily_report_export=daily or None)
            ),
            "account_type": credentials.account_type or SANDBOX_ACCOUNT_TYPE,
        }
        if credentials.retry() is not None:
            settings["retry"] = credentials.retry()
        register_secret(sandbox.auth_token)
        register_origin(sandbox.base_url)
        client = Client.for_sandbox(
            sandbox, ledger=default_ledger_path(ledger_path, sandbox=True), **settings
        )
        async with client:
            yield client, sandbox


def sandbox_banner(sandbox: Any, console: Console, as_json: bool) -> None:
    """Where the sandbox of this run listens, and its pace (nothing without one)."""
    if sandbox is None:
        return
    scale = SANDBOX_TIME_SCALE / 60
    if as_json:
        echo_json(
            {"event": "sandbox", "base_url": sandbox.base_url, "time_scale": SANDBOX_TIME_SCALE}
        )
    else:
        console.print(
            f"[dim]built-in sandbox at {sandbox.base_url} "
            f"(1 real second = {scale:g} sandbox minutes)[/]"
        )
