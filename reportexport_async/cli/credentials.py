"""Where the account comes from (the environment, or the credential options: never a token on
the command line, which other users of the machine can see), and where its ledger is."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..core.policies import RateLimitPolicy, RetryPolicy
from ..errors import ConfigurationError
from ..transport.config import ClientConfig, limits_from_env
from .paths import resolve_ledger
from .verbose import register_origin, register_secret
from .wording import PROG, cli_language

__all__ = ["Credentials", "default_ledger_path", "notice"]

#: The credential options by the name of their value, as the user types them.
CREDENTIAL_FLAGS = {
    "sandbox": "--sandbox",
    "account_sid": "--account-sid",
    "auth_token_file": "--auth-token-file",
    "account_type": "--account-type",
    "base_url": "--base-url",
    "hourly_limit": "--hourly-limit",
    "daily_report_export": "--daily-report-export",
    "daily_click_export": "--daily-click-export",
}


@dataclass(frozen=True)
class Credentials:
    account_sid: str | None = None
    auth_token_file: Path | None = None
    account_type: str | None = None
    base_url: str | None = None
    sandbox: bool = False
    sandbox_daily_export_limit: int | None = None
    #: `--outage-limit`: seconds of every call failing before a run stops (None: the default).
    outage_limit: float | None = None
    #: `--hourly-limit`, `--daily-report-export`, `--daily-click-export` (None: not given).
    limits: dict[str, int] = dataclasses.field(default_factory=dict)

    def given(self) -> list[str]:
        """The flags of an account given on the command line (which `--accounts` replaces)."""
        values: dict[str, Any] = {**dataclasses.asdict(self), **self.limits}
        return [flag for name, flag in CREDENTIAL_FLAGS.items() if values.get(name)]

    def rate_limit(self, base: RateLimitPolicy | None) -> RateLimitPolicy | None:
        """`base` (else the environment's limits) with the limits given on the command line."""
        if not self.limits:
            return base
        return (base or limits_from_env() or RateLimitPolicy()).with_limits(**self.limits)

    def retry(self) -> RetryPolicy | None:
        if self.outage_limit is None:
            return None
        return RetryPolicy(outage_limit=self.outage_limit)

    def config(self, *, sandbox_offered: bool) -> ClientConfig:
        """The account's configuration, or a one-line usage error naming every way to give it."""
        token: str | None = None
        if self.auth_token_file is not None:
            try:
                token = self.auth_token_file.read_text(encoding="utf-8").strip()
                register_secret(token)
            except (OSError, UnicodeDecodeError) as exc:
                raise click.UsageError(
                    f"--auth-token-file: cannot read {str(self.auth_token_file)!r} "
                    f"({getattr(exc, 'strerror', None) or exc})"
                ) from None
        overrides: dict[str, Any] = {
            "account_sid": self.account_sid,
            "auth_token": token,
            "account_type": self.account_type,
            "base_url": self.base_url,
        }
        given = any(overrides.values()) or any(
            os.environ.get(name, "").strip()
            for name in ("IMPACT_ACCOUNT_SID", "IMPACT_AUTH_TOKEN", "IMPACT_ACCOUNT_TYPE")
        )
        if not given:
            ways = (
                "set IMPACT_ACCOUNT_SID, IMPACT_AUTH_TOKEN and IMPACT_ACCOUNT_TYPE (or pass "
                "--account-sid, --auth-token-file and --account-type)"
            )
            if sandbox_offered:
                ways += ", or pass --sandbox to run against the built-in sandbox"
            raise click.UsageError(f"no credentials: {ways}")
        try:
            config = ClientConfig.from_env(
                **overrides, retry=self.retry(), rate_limit=self.rate_limit(None)
            )
            register_secret(config.auth_token.get_secret_value())
            register_origin(config.base_url)
            return config
        except ConfigurationError as exc:
            hint = "; or pass --sandbox to use the built-in sandbox" if sandbox_offered else ""
            raise click.UsageError(f"{cli_language(str(exc))}{hint}") from None


_NOTICED: set[str] = set()


def notice(message: str) -> None:
    """A notice on stderr, once per process."""
    if message not in _NOTICED:
        _NOTICED.add(message)
        click.echo(f"{PROG}: note: {message}", err=True)


def default_ledger_path(given: Path | str | None, *, sandbox: bool = False) -> Path | str:
    """`--ledger` (a file or a `postgresql://` URL), else the user's data folder (or an older
    ledger in the current folder)."""
    return resolve_ledger(given, sandbox=sandbox, notify=notice)
