"""Many accounts: the accounts file, and running the same work for each account.

An accounts file is TOML::

    [defaults]                      # optional: what every account inherits
    account_type = "Mediapartners"
    daily_report_export = 100

    [[account]]
    name = "acme"                   # letters, digits, '.', '_' or '-': also its output folder
    account_type = "Advertisers"
    sid = "IRxxxxxxxx"
    token_file = "secrets/acme.token"   # relative to the accounts file
    hourly_limit = 2000             # its own limits, where they differ from the defaults
    into = "duckdb:///acme.duckdb"  # also load its chunks into DuckDB (or parquet:///DIR),
                                    # relative to the accounts file; one destination per account

    [[account]]
    name = "globex"
    sid = "IRyyyyyyyy"
    token_env = "GLOBEX_TOKEN"      # the name of an environment variable that holds the token

The token comes from `token_file` or `token_env`. An inline `token` is accepted only when the
accounts file can be read by its owner alone (mode 0600, as ssh and netrc ask), since it then is
a secret itself. Limits: `hourly_limit` (default 1,000 calls an hour), `daily_report_export`
(100 a day), `daily_click_export` (10 a day); `base_url` (default impact.com).

`load_accounts` reads the whole file before anything else happens and raises one
`AccountsFileError` listing every mistake, one line each (unknown key, missing field, unreadable
token file, duplicate name, the same account twice...). Nothing is read from the `IMPACT_*`
environment variables: the file says everything about its accounts.

`run_per_account` runs one async callable per account, each with its own `Client` (its own
limits), all of them sharing one ledger, a bounded number at a time; one account's failure (a
refused token, a spent quota, an outage) is recorded as its outcome and never stops the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio

from .core.policies import RateLimitPolicy
from .destinations import IntoURL, parse_into
from .errors import ConfigurationError
from .ledger.store import LedgerStore, open_ledger
from .transport.config import DEFAULT_BASE_URL, ClientConfig
from .transport.connections import Connections

__all__ = [
    "Account",
    "AccountOutcome",
    "AccountsFileError",
    "load_accounts",
    "run_per_account",
    "select_accounts",
]

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LIMITS = ("hourly_limit", "daily_report_export", "daily_click_export")
_DEFAULT_KEYS = frozenset({"account_type", "base_url", *_LIMITS})
_TOKEN_KEYS = ("token_file", "token_env", "token")
_ACCOUNT_KEYS = frozenset({"name", "sid", "into", *_DEFAULT_KEYS, *_TOKEN_KEYS})
_TOP_KEYS = frozenset({"defaults", "account"})


class AccountsFileError(ConfigurationError):
    """Mistakes in an accounts file (or in the names chosen from it): `problems` has one line
    each, already naming the file and the account."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(str(path), "\n".join(self.problems))
        # One line per mistake, each complete on its own.
        self.args = ("\n".join(self.problems),)

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True)
class Account:
    """One account of an accounts file: its name and its `ClientConfig` (the token inside is a
    `SecretStr`: never in a repr). `token_source` says where the token came from, without it."""

    name: str
    config: ClientConfig
    token_source: str
    #: A destination beside the account's files (`into` in the accounts file).
    into: IntoURL | None = None

    def __repr__(self) -> str:
        return (
            f"Account(name={self.name!r}, account_type={self.config.account_type.value!r}, "
            f"sid={self.config.account_sid!r}, token from {self.token_source})"
        )

    @property
    def key(self) -> str:
        """Origin, account type and SID: what the ledger and the limits count by."""
        return self.config.account_key


def _quoted(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys))


class _Reader:
    """Collects every mistake of one file, so the user fixes them all in one go."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{self.path}: {where}: {text}")

    def limits(self, where: str, table: Mapping[str, Any]) -> dict[str, int]:
        found: dict[str, int] = {}
        for name in _LIMITS:
            if name not in table:
                continue
            value = table[name]
            lowest = 1 if name == "hourly_limit" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                self.problem(where, f"{name} must be a whole number >= {lowest}")
            else:
                found[name] = value
        return found

    def text(self, where: str, table: Mapping[str, Any], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"{key} must be a non-empty string")
            return None
        return value.strip()

    def unknown(self, where: str, table: Mapping[str, Any], known: frozenset[str]) -> None:
        for key in sorted(set(table) - known):
            self.problem(where, f"unknown key {key!r} (known: {_quoted(known)})")

    def token(self, where: str, table: Mapping[str, Any]) -> tuple[str, str] | None:
        """(token, where it came from), or None after recording the problem."""
        given = [key for key in _TOKEN_KEYS if key in table]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            self.problem(where, f"give exactly one of token_file, token_env or token (got {what})")
            return None
        key = given[0]
        value = self.text(where, table, key)
        if value is None:
            return None
        if key == "token_file":
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = self.path.parent / path
            try:
                token = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                self.problem(where, f"token_file {str(path)!r} cannot be read ({reason})")
                return None
            if not token:
                self.problem(where, f"token_file {str(path)!r} is empty")
                return None
            return token, f"token_file {str(path)!r}"
        if key == "token_env":
            token = self.environ.get(value, "").strip()
            if not token:
                self.problem(where, f"token_env: the environment variable {value} is not set")
                return None
            return token, f"${value}"
        loose = _readable_by_others(self.path)
        if loose is not None:
            self.problem(
                where,
                f"an inline token needs the accounts file to be private (it is {loose}): "
                f"run chmod 600 {self.path}, or use token_file or token_env",
            )
            return None
        return value, "the accounts file"


def _readable_by_others(path: Path) -> str | None:
    """The file's mode when a group or other users may read it (POSIX), else None."""
    if os.name != "posix":
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return f"mode {mode:04o}" if mode & 0o077 else None


def load_accounts(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[Account]:
    """Read an accounts file (see the module's docstring); raise `AccountsFileError` listing
    every mistake. `environ` (default `os.environ`) serves `token_env`."""
    path = Path(path)
    reader = _Reader(path, os.environ if environ is None else environ)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise AccountsFileError(
            path, [f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise AccountsFileError(path, [f"{path}: not valid TOML ({exc})"]) from None
    except UnicodeDecodeError:
        raise AccountsFileError(path, [f"{path}: not valid TOML (not UTF-8 text)"]) from None

    reader.unknown("top level", data, _TOP_KEYS)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        reader.problem("defaults", "must be a table: [defaults]")
        defaults = {}
    reader.unknown("[defaults]", defaults, _DEFAULT_KEYS)
    default_limits = reader.limits("[defaults]", defaults)
    default_type = reader.text("[defaults]", defaults, "account_type")
    default_url = reader.text("[defaults]", defaults, "base_url")
    entries = data.get("account", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        reader.problem("account", "must be an array of tables: [[account]]")
        entries = []
    if not entries and not reader.problems:
        reader.problem("top level", "no [[account]] table: name at least one account")

    accounts: list[Account] = []
    names: dict[str, int] = {}
    keys: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        raw_name = entry.get("name")
        name = raw_name.strip() if isinstance(raw_name, str) else None
        where = f"account {name!r}" if name else f"[[account]] number {number}"
        reader.unknown(where, entry, _ACCOUNT_KEYS)
        if name is None:
            reader.problem(where, "name is required")
        elif not _NAME.fullmatch(name):
            reader.problem(
                where, "name must be 1-64 letters, digits, '.', '_' or '-' (it names a folder)"
            )
        elif name in names:
            reader.problem(where, f"the name is used twice (also [[account]] number {names[name]})")
        else:
            names[name] = number
        sid = reader.text(where, entry, "sid")
        if sid is None and "sid" not in entry:
            reader.problem(where, "sid is required")
        account_type = reader.text(where, entry, "account_type") or default_type
        if account_type is None and "account_type" not in entry:
            reader.problem(where, "account_type is required (here or in [defaults])")
        base_url = reader.text(where, entry, "base_url") or default_url
        limits = {**default_limits, **reader.limits(where, entry)}
        token = reader.token(where, entry)
        into = None
        if "into" in entry:
            try:
                into = parse_into(entry["into"], base=path.parent)
            except ConfigurationError as exc:
                reader.problem(where, f"into: {exc.problem}")
                continue
        if sid is None or account_type is None or token is None:
            continue
        try:
            config = ClientConfig(
                account_sid=sid,
                auth_token=token[0],
                account_type=account_type,
                base_url=base_url or DEFAULT_BASE_URL,
                rate_limit=RateLimitPolicy().with_limits(**limits),
            )
        except ConfigurationError as exc:
            reader.problem(where, str(exc))
            continue
        account = Account(name or f"account-{number}", config, token[1], into)
        other = keys.get(account.key)
        if other is not None:
            # Two entries for one account would each count its limits alone: together they
            # would overrun the quota the server counts once.
            reader.problem(where, f"the same account as {other!r} (one entry per account)")
            continue
        keys[account.key] = account.name
        accounts.append(account)
    if reader.problems:
        raise AccountsFileError(path, reader.problems)
    return accounts


def select_accounts(
    accounts: Sequence[Account], names: Sequence[str], *, path: str | Path = "accounts file"
) -> list[Account]:
    """The accounts named (all of them when `names` is empty), in the file's order; an unknown
    name is an `AccountsFileError` naming the known ones."""
    if not names:
        return list(accounts)
    known = {account.name: account for account in accounts}
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        shown = sorted(known)
        listed = ", ".join(shown[:20]) + (f" and {len(shown) - 20} more" if len(shown) > 20 else "")
        raise AccountsFileError(
            path,
            [f"{path}: no account named {name!r} (known: {listed})" for name in unknown],
        )
    wanted = set(names)
    return [account for account in accounts if account.name in wanted]


@dataclass
class AccountOutcome(Generic[T]):
    """What the work gave for one account: its `result`, or the `error` that stopped it."""

    account: Account
    result: T | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_per_account(
    accounts: Sequence[Account],
    work: Callable[[Any, Account], Awaitable[T]],
    *,
    ledger: LedgerStore | str | Path,
    concurrency: int = 8,
    client_factory: Callable[[Account, LedgerStore], Any] | None = None,
) -> list[AccountOutcome[T]]:
    """Run `work(client, account)` for every account, at most `concurrency` at a time, each
    with its own `Client` (and so its own limits), all sharing one ledger (a path or a
    `postgresql://` URL is opened once here, or an open ledger is used). Returns the outcomes in
    the accounts' order: an `Exception` raised for one account (a refused token, a spent quota,
    an outage, a bad report id...) is its outcome and never stops the others. Cancellation
    (Ctrl-C) stops them all; every client closes its work cleanly and the ledger stays
    consistent.

    The default clients share one pool of connections (`transport.connections.Connections`),
    open for the run: a connection kept alive after one account's call carries the next
    account's, so the run opens about as many connections as it has calls in flight, not that
    many per account.

    `client_factory(account, ledger)` makes the (unopened) client; by default
    `Client(account.config, ledger=ledger, connections=<the run's pool>)`.
    """
    from .client import Client  # the client imports the orchestrator: not at import time

    if concurrency < 1:
        raise ConfigurationError("concurrency", "must be >= 1")

    pool = Connections()

    def default_factory(account: Account, shared: LedgerStore) -> Client:
        return Client(account.config, ledger=shared, connections=pool)

    make = client_factory or default_factory
    outcomes = [AccountOutcome[T](account) for account in accounts]
    slots = anyio.CapacityLimiter(concurrency)

    async def one(outcome: AccountOutcome[T], shared: LedgerStore) -> None:
        async with slots:
            try:
                async with make(outcome.account, shared) as client:
                    outcome.result = await work(client, outcome.account)
            except Exception as error:  # one account's failure is its outcome, not the run's
                outcome.error = error

    async def all_of(shared: LedgerStore) -> None:
        async with anyio.create_task_group() as group:
            for outcome in outcomes:
                group.start_soon(one, outcome, shared)

    async with contextlib.AsyncExitStack() as stack:
        if client_factory is None:  # a factory of the caller's makes its own connections
            await stack.enter_async_context(pool)
        if isinstance(ledger, (str, Path)):
            await all_of(await stack.enter_async_context(open_ledger(ledger)))
        else:
            await all_of(ledger)
    return outcomes
