"""The command line's options, declared once: each group of options is one decorator that
parses its values straight into the one object the command passes to the library (a
`BackfillOptions`, a date range, `Credentials`, `PostbackArgs`, ...), so a command function
receives a handful of parsed values, never two dozen raw ones.

Groups: `window_options` (--start/--end), `backfill_options` (chunking, concurrency, waiting,
--dry-run, --merge, --check-reports), `sync_options`, `output_options` (--param, --format, --out:
what is pulled and where it goes), `ledger_option`, `postback_options`, `accounts_options`,
`credential_options` (the account, its limits, --sandbox), `json_option`, `verbose_option`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..core.chunking import Chunk, parse_chunk_rule
from ..destinations import IntoURL, parse_into
from ..errors import ConfigurationError
from ..jobs.orchestrator import BackfillOptions, ExportSpec
from ..jobs.sync import SyncOptions
from ..ledger.store import LEDGER_URL_ENV, is_ledger_url
from ..transport.config import LIMIT_ENV_VARS
from ..transport.postbacks import TOKEN_ENV, PostbackReceiver, parse_listen
from .credentials import Credentials
from .exits import SAID, as_usage
from .local_sandbox import SANDBOX_LEDGER_NAME
from .verbose import verbose_logging
from .wording import cli_language

__all__ = [
    "DATE",
    "DEFAULT_OUT",
    "FORMAT",
    "AccountsChoice",
    "OptionGroup",
    "Output",
    "PostbackArgs",
    "accounts_options",
    "backfill_options",
    "check_reports_option",
    "chunk_option",
    "credential_options",
    "into_option",
    "json_option",
    "ledger_option",
    "out_folder_option",
    "output_options",
    "param_option",
    "postback_options",
    "stacked",
    "sync_options",
    "verbose_option",
    "window_options",
]

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

DEFAULT_OUT = Path("reportexport-out")
FORMAT = click.Choice(["csv", "json", "xml"], case_sensitive=False)


class OptionGroup:
    """Options that make one value: the command receives `build(**their values)` as its
    parameter `into`, and none of the options' own values."""

    def __init__(self, into: str, build: Callable[..., Any], *options: Decorator) -> None:
        self.into, self.build, self.options = into, build, options

        def probe(**_: Any) -> None:  # never called: read for the options it gets
            return None

        decorated: Callable[..., Any] = probe
        for option in reversed(options):
            decorated = option(decorated)
        self.names = tuple(str(param.name) for param in click.command()(decorated).params)

    def __call__(self, command: F) -> F:
        @functools.wraps(command)
        def parsed(*args: Any, **values: Any) -> Any:
            own = {name: values.pop(name) for name in self.names}
            return command(*args, **values, **{self.into: self.build(**own)})

        command_with_options: Callable[..., Any] = parsed
        for option in reversed(self.options):
            command_with_options = option(command_with_options)
        return cast(F, command_with_options)


def stacked(*decorators: Decorator) -> Callable[[F], F]:
    """Several decorators as one, applied as if written one above the other."""

    def decorate(command: F) -> F:
        decorated: Callable[..., Any] = command
        for decorator in reversed(decorators):
            decorated = decorator(decorated)
        return cast(F, decorated)

    return decorate


# -- values ------------------------------------------------------------------------------------


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not a date (YYYY-MM-DD): {value!r}") from None


DATE: dict[str, Any] = {"callback": _date, "metavar": "DATE"}


def _chunk_rule(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_chunk_rule(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _params(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    filters: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        if key.strip() in filters:
            raise click.BadParameter(f"{key.strip()} given twice")
        filters[key.strip()] = value
    return filters


# -- single options, shared by the groups and commands -------------------------------------------


def chunk_option(default: str, help: str) -> Decorator:
    return click.option("--chunk", default=default, show_default=True, callback=_chunk_rule,
                        help=help)  # fmt: skip


def param_option(help: str | None = None) -> Decorator:
    return click.option("--param", "filters", multiple=True, callback=_params,
                        metavar="KEY=VALUE", help=help)  # fmt: skip


def format_option() -> Decorator:
    return click.option("--format", "result_format", type=FORMAT, default="csv",
                        show_default=True)  # fmt: skip


def out_folder_option() -> Decorator:
    return click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                        default=DEFAULT_OUT, show_default=True,
                        help="folder for the files and manifest.json")  # fmt: skip


PARAM_HELP = "a report filter, sent as given (repeatable), e.g. SUBAID=123"
QUOTA_HELP = "when the daily quota runs out, wait for its reset instead of stopping"


def _concurrency(help: str | None = None) -> Decorator:
    return click.option("--concurrency", type=click.IntRange(min=1), default=4,
                        show_default=True, help=help)  # fmt: skip


def check_reports_option(function: F) -> F:
    return click.option(
        "--check-reports/--no-check-reports",
        default=True,
        show_default=True,
        help="look report ids never used before up in the account's catalog first (GET /Reports: "
        "one call a day, no quota): an unknown one is a usage error before any ReportExport call",
    )(function)


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.call_on_close(verbose_logging(True))
    return value


def verbose_option(function: F) -> F:
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_verbose,
        help="log each API call (method, path, status, time) and each wait on stderr",
    )(function)


def _json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    SAID.json = SAID.json or value
    return value


def json_option(function: F) -> F:
    # Eager: read before the other options, so that their mistakes end the stream as JSON too.
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_json,
        help="print JSON (one object per line) instead; a failure ends it with an `error` object",
    )(function)


class LedgerSpec(click.ParamType):  # type: ignore[type-arg]
    """A ledger file's path, or a `postgresql://` URL (kept as text: a URL is not a path)."""

    name = "path|url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path) or is_ledger_url(value):
            return value
        return Path(value)


def ledger_option(*, sandbox: bool = False) -> Decorator:
    """`--ledger` as given (None: the default, which `credentials.default_ledger_path` finds)."""
    where = "ledger.sqlite in the user's data folder (see `reportexport --help`)"
    if sandbox:
        where += f"; with --sandbox {SANDBOX_LEDGER_NAME} there"
    return click.option(
        "--ledger",
        "ledger_path",
        type=LedgerSpec(),
        envvar=LEDGER_URL_ENV,
        help=f"the ledger: a file (default {where}), or a postgresql:// URL shared by several "
        f"processes and hosts [env {LEDGER_URL_ENV}]",
    )


# -- the date range ------------------------------------------------------------------------------


def window_options(*, required: bool, start_help: str, end_help: str) -> OptionGroup:
    """`--start` and `--end` -> the range as a `Chunk` (None when both are left out, where
    that is allowed: the report's default range)."""

    def build(start: date | None, end: date | None) -> Chunk | None:
        if (start is None) != (end is None):
            raise click.UsageError("give both --start and --end, or neither (the default range)")
        if start is None or end is None:
            return None
        if end < start:
            raise click.UsageError(f"--start {start} is after --end {end}")
        return Chunk(start, end)

    return OptionGroup(
        "window", build,
        click.option("--start", **DATE, required=required, help=start_help),
        click.option("--end", **DATE, required=required, help=end_help),
    )  # fmt: skip


# -- how a backfill or a sync runs ---------------------------------------------------------------


def _backfill(
    chunk: str, align_chunks: bool, concurrency: int, merge: bool, dry_run: bool,
    wait_for_quota: bool, wait_for_replays: bool, check_reports: bool,
) -> BackfillOptions:  # fmt: skip
    rule = parse_chunk_rule(chunk)
    if rule.kind == "days":
        rule = dataclasses.replace(rule, from_start=not align_chunks)
    elif align_chunks:
        raise click.UsageError("--align-chunks applies to Nd chunks (week and month are aligned)")
    return BackfillOptions(
        chunk=rule, download_concurrency=concurrency, submit_concurrency=concurrency,
        dry_run=dry_run, wait_for_quota=wait_for_quota, wait_for_replays=wait_for_replays,
        merge=merge, check_reports=check_reports,
    )  # fmt: skip


backfill_options = OptionGroup(
    "options", _backfill,
    chunk_option("7d", "one export per chunk: Nd (1d, 7d, 30d...: N days from --start), week "
                 "(Monday to Sunday), month (calendar months) or auto (spans learned from the "
                 "rows seen; the chunks chosen are recorded, and later runs keep them)"),
    click.option("--align-chunks", is_flag=True,
                 help="count Nd chunks from a fixed Monday (1970-01-05) instead of --start, so "
                 "backfills over overlapping ranges share their chunks (the first and last chunk "
                 "may be shorter)"),
    _concurrency("submits and downloads at a time"),
    click.option("--merge", is_flag=True, help="also write <out>/<report>.<ext> with every chunk"),
    click.option("--dry-run", is_flag=True, help="print the plan and its cost; make no API call"),
    click.option("--wait-for-quota", is_flag=True, help=QUOTA_HELP),
    click.option("--wait-for-replays", is_flag=True,
                 help="when a failed job may be replayed only later (an hour after its submit), "
                 "wait for that instead of stopping with the chunk deferred"),
    check_reports_option,
)  # fmt: skip

sync_options = OptionGroup(
    "options", SyncOptions,
    _concurrency(),
    click.option("--dry-run", is_flag=True,
                 help="print the plan and its cost by kind; no API call"),
    click.option("--wait-for-quota", is_flag=True, help=QUOTA_HELP),
    check_reports_option,
)  # fmt: skip


# -- what is pulled, and where -------------------------------------------------------------------


def _into(ctx: click.Context, param: click.Parameter, value: str | None) -> IntoURL | None:
    if value is None:
        return None
    with as_usage("--into"):  # a bad URL or a missing extra: before any call
        return parse_into(value, setting="--into")


def into_option() -> Decorator:
    """`--into URL`: also load every chunk into a typed destination beside the files."""
    return click.option(
        "--into",
        "into",
        metavar="URL",
        callback=_into,
        help="also load every chunk into duckdb:///FILE or parquet:///DIR (four slashes: an "
        "absolute path); the files stay written",
    )


@dataclass(frozen=True)
class Output:
    """What is pulled of each report (`--param`, `--format`), where it goes (`--out`) and what
    else it is loaded into (`--into`)."""

    filters: Mapping[str, str]
    result_format: str
    out: Path
    into: IntoURL | None = None

    def specs(self, reports: Sequence[str]) -> list[ExportSpec]:
        return [ExportSpec(report, dict(self.filters), self.result_format) for report in reports]


output_options = OptionGroup(
    "output",
    lambda filters, result_format, out, into: Output(filters, result_format.upper(), out, into),
    param_option(PARAM_HELP),
    format_option(),
    out_folder_option(),
    into_option(),
)


# -- postbacks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostbackArgs:
    """`--postback-listen HOST:PORT` and its companions: where the receiver listens, the secret
    path token (None: IMPACT_POSTBACK_TOKEN, else random), the postback's field names for the
    job id and the status, and the URL impact.com reaches it at."""

    listen: tuple[str, int]
    token: str | None = None
    fields: tuple[str, str] = ("JobId", "Status")
    public_url: str | None = None

    @classmethod
    def given(
        cls,
        postback_listen: tuple[str, int] | None,
        postback_token: str | None,
        postback_fields: tuple[str, str],
        postback_public_url: str | None,
    ) -> PostbackArgs | None:
        """The options as given (None without `--postback-listen`); a usage error for a token
        or a public URL without a receiver, or for a token too weak to be a secret."""
        token, public_url = postback_token, postback_public_url
        if postback_listen is None:
            if token or public_url:
                raise click.UsageError(
                    "--postback-token and --postback-public-url need --postback-listen"
                )
            return None
        given = cls(postback_listen, token, postback_fields, public_url)
        try:
            given.receiver()  # checks the token; listens nowhere yet
        except ConfigurationError as exc:
            if token is None and exc.setting == "postback_token" and os.environ.get(TOKEN_ENV):
                # The token came from the environment: name where the user put it.
                raise click.UsageError(f"{TOKEN_ENV}: {exc.problem}") from None
            raise click.UsageError(cli_language(str(exc))) from None
        return given

    def receiver(self) -> PostbackReceiver:
        job_field, status_field = self.fields
        return PostbackReceiver(
            *self.listen, token=self.token, job_id_field=job_field, status_field=status_field,
            public_url=self.public_url,
        )  # fmt: skip


def _listen(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return parse_listen(value)
    except ConfigurationError as exc:
        raise click.BadParameter(exc.problem) from None


def _field_pair(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, str]:
    job_id, _, status = value.partition(",")
    if not job_id.strip() or not status.strip() or "," in status:
        raise click.BadParameter(f"expected JOBID,STATUS (two field names), got {value!r}")
    return job_id.strip(), status.strip()


postback_options = OptionGroup(
    "postbacks", PostbackArgs.given,
    click.option("--postback-listen", callback=_listen, metavar="HOST:PORT",
                 help="receive job-completion postbacks here (the run then polls only rarely, "
                 "as a safety net)"),
    click.option("--postback-token", metavar="TOKEN",
                 help="the secret in the postback URL (default: IMPACT_POSTBACK_TOKEN, else "
                 "random); keep it the same so the URL set at impact.com keeps working"),
    click.option("--postback-fields", metavar="JOBID,STATUS", default="JobId,Status",
                 show_default=True, callback=_field_pair,
                 help="the postback's field names for the job id and the status, as in your "
                 "template"),
    click.option("--postback-public-url", metavar="URL",
                 help="the receiver's URL as impact.com reaches it (behind a proxy or a tunnel)"),
)  # fmt: skip


# -- accounts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountsChoice:
    """`--accounts FILE`, `--account NAME...`, `--parallel-accounts N`."""

    path: Path | None
    names: tuple[str, ...]
    parallel: int


def _accounts(
    accounts_file: Path | None, account_names: tuple[str, ...], parallel_accounts: int
) -> AccountsChoice | None:
    if accounts_file is None and not account_names:
        return None
    return AccountsChoice(accounts_file, account_names, parallel_accounts)


accounts_options = OptionGroup(
    "accounts", _accounts,
    click.option("--accounts", "accounts_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="run for every account of this TOML file at once (its token, SID and "
                 "limits), each into <out>/<name>, one ledger for all (the file: "
                 "docs/guides/many-accounts.md)"),
    click.option("--account", "account_names", multiple=True, metavar="NAME",
                 help="with --accounts: only this account (repeatable)"),
    click.option("--parallel-accounts", type=click.IntRange(min=1), default=8,
                 show_default=True, help="with --accounts: accounts run at a time"),
)  # fmt: skip


# -- the account ---------------------------------------------------------------------------------

_ACCOUNT = (
    click.option("--account-sid", help="account SID (default: $IMPACT_ACCOUNT_SID)"),
    click.option("--auth-token-file", type=click.Path(dir_okay=False, path_type=Path),
                 help="file holding the auth token (default: $IMPACT_AUTH_TOKEN)"),
    click.option("--account-type",
                 help="Advertisers, Mediapartners or Agencies (default: $IMPACT_ACCOUNT_TYPE)"),
    click.option("--base-url", help="API origin (default: $IMPACT_BASE_URL or impact.com)"),
    click.option("--hourly-limit", type=click.IntRange(min=1),
                 help="the account's API calls an hour (default: $IMPACT_HOURLY_LIMIT or 1000)"),
    click.option("--daily-report-export", type=click.IntRange(min=0),
                 help="the account's ReportExport calls a day (default: "
                 "$IMPACT_DAILY_REPORT_EXPORT or 100)"),
    click.option("--daily-click-export", type=click.IntRange(min=0),
                 help="the account's ClickExport calls a day (default: "
                 "$IMPACT_DAILY_CLICK_EXPORT or 10)"),
)  # fmt: skip

_SANDBOX = (
    click.option("--sandbox", is_flag=True,
                 help="start the built-in sandbox on loopback for this run and use it (no "
                 "credentials)"),
    # For tests and demonstrations of the quota path: the sandbox's daily ReportExport limit.
    click.option("--sandbox-daily-export-limit", type=click.IntRange(min=0), hidden=True),
)  # fmt: skip

_OUTAGE = click.option(
    "--outage-limit", type=click.FloatRange(min=1), metavar="SECONDS",
    help="stop the run once every call has failed for this long (default 300)",
)  # fmt: skip


def _credentials(**values: Any) -> Credentials:
    limits = {name: values.pop(name) for name in LIMIT_ENV_VARS}
    given = {name: value for name, value in limits.items() if value is not None}
    return Credentials(**values, limits=given)


def credential_options(*, sandbox: bool = False, outage: bool = False) -> OptionGroup:
    """Where the account comes from: the environment, or these options (never a token option:
    a command line is visible to other users of the machine); with `sandbox`, also `--sandbox`;
    with `outage`, `--outage-limit`."""
    options = (*(_SANDBOX if sandbox else ()), *((_OUTAGE,) if outage else ()), *_ACCOUNT)
    return OptionGroup("credentials", _credentials, *options)
