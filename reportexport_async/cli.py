"""`reportexport`: the command line (click for parsing, rich for progress and tables).

    reportexport demo
    reportexport backfill mp_action_listing_fast --start 2025-01-01 --end 2025-12-31 --sandbox
    reportexport export REPORT [--start DATE --end DATE] [--param KEY=VALUE] [--out FILE]
    reportexport sync --config datasets.toml   (or: sync REPORT... --first-day DATE --out DIR)
    reportexport jobs list|show|download|replay ...
    reportexport ledger show|history ...
    reportexport reports [--all] [--refresh]
    reportexport sandbox serve [the sandbox's options]

A thin layer that holds no logic the library lacks: it parses arguments, finds credentials,
starts the built-in sandbox for `--sandbox`, shows progress, and turns outcomes into exit codes.
Everything else is a call into the library's `Client` (`backfill`, `export`, `download`,
`replay`); the read-only commands (`jobs list|show`, `ledger show|history`) read the ledger
read-only beside the single calls of `ReportExportClient`.

Exit codes: 0 everything done; 1 some chunks failed or are stuck, a command failed, or the run
stopped because the API host cannot be reached (or every call failed for too long); 2 usage errors
(bad options, no credentials, an output folder that cannot be written), always one line on stderr
before any API call, and credentials the server refused (401/403), which stop a run at its first
call; 3 chunks left pending for the daily quota (run the same command again after the reset); 4
chunks deferred to a later time the guide sets, such as a replay allowed only an hour after the
submit (run the same command again after the time printed); 130 interrupted (Ctrl-C: the
message says what was recorded; the same command resumes). A reader that goes away (`| head`)
is no failure (0). Errors are one line, never a traceback, never the token, in command-line
words (`cli_output.cli_language`). Tables, pipes, `-v` and the user's folders are in
`cli_output` and `cli_paths`, for every subcommand to share.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from asyncio import CancelledError
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar, get_args

import anyio
import click
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from .api import ReportExportClient
from .catalog import remember, remembered
from .cli_output import (
    READER,
    Cell,
    cli_language,
    echo,
    job_by_prefix,
    make_console,
    print_count,
    print_table,
    reader_gone_error,
    reader_watched,
    register_origin,
    register_secret,
    silence_library_log,
    verbose_logging,
)
from .cli_paths import LEGACY_SANDBOX_LEDGER, read_catalog, resolve_ledger, write_catalog
from .client import Client
from .config import LIMIT_ENV_VARS, ClientConfig, limits_from_env
from .core.chunking import Chunk, ChunkRule, parse_chunk_rule
from .core.fingerprint import account_key
from .core.freshness import DEFAULT_REFRESH_HOUR, DEFAULT_SETTLE_DAYS
from .core.models import ExportRequest, Job, Report, checked
from .core.planning import Plan, chunk_path, default_range_path
from .core.policies import RateLimitPolicy, RetryPolicy
from .datasets import in_file, load_datasets
from .destinations import IntoURL, parse_into
from .errors import (
    AccountUnavailable,
    ConfigurationError,
    LedgerError,
    LedgerProblem,
    QuotaExhausted,
    ReportExportError,
)
from .ledger import LedgerEntry
from .ledger_store import LEDGER_URL_ENV, LedgerStore, is_ledger_url, open_ledger
from .orchestrator import (
    FINAL_CHUNK_STATUSES,
    BackfillOptions,
    BackfillResult,
    ChunkStatus,
    ExportSpec,
    ProgressEvent,
)
from .outputs import check_folder, prepare_file, prepare_folder
from .postbacks import TOKEN_ENV, PostbackReceiver, parse_listen
from .sync import Dataset, SyncOptions, SyncResult

__all__ = ["cli", "main"]

PROG = "reportexport"
DEFAULT_OUT = Path("reportexport-out")
#: Runs against the built-in sandbox keep their own ledger (in the user's data folder, like the
#: account's): a fresh sandbox is a fresh account.
SANDBOX_LEDGER_NAME = LEGACY_SANDBOX_LEDGER.name

#: `--sandbox`: sandbox seconds per real second. Its jobs take 30 s to 5 min of sandbox time
#: (0.05 to 0.5 real seconds), and the client's poll ticks of 10 sandbox seconds take 1/60 s.
SANDBOX_TIME_SCALE = 600.0
SANDBOX_JOB_DURATION = (30.0, 300.0)
SANDBOX_ROWS_PER_DAY = 50
SANDBOX_ACCOUNT_TYPE = "Mediapartners"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_DEFERRED = 0, 1, 2, 3, 4

STATES: tuple[str, ...] = get_args(ChunkStatus)
FINAL = FINAL_CHUNK_STATUSES
STATE_STYLE = {
    "planned": "dim",
    "submitted": "cyan",
    "running": "blue",
    "downloading": "magenta",
    "elsewhere": "dim cyan",
    "done": "green",
    "failed": "red",
    "pending": "yellow",
    "deferred": "yellow",
    "stuck": "red",
}
STATE_LABEL = {"pending": "pending quota", "elsewhere": "other workers"}

T = TypeVar("T")


# -- options -----------------------------------------------------------------------------------


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


def _listen(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return parse_listen(value)
    except ConfigurationError as exc:
        raise click.BadParameter(exc.problem) from None


FORMAT = click.Choice(["csv", "json", "xml"], case_sensitive=False)


def credential_options(function: Callable[..., T]) -> Callable[..., T]:
    """Where the account comes from: the environment, or these options (never a token option:
    a command line is visible to other users of the machine)."""
    options = [
        click.option("--account-sid", help="account SID (default: $IMPACT_ACCOUNT_SID)"),
        click.option(
            "--auth-token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="file holding the auth token (default: $IMPACT_AUTH_TOKEN)",
        ),
        click.option(
            "--account-type",
            help="Advertisers, Mediapartners or Agencies (default: $IMPACT_ACCOUNT_TYPE)",
        ),
        click.option("--base-url", help="API origin (default: $IMPACT_BASE_URL or impact.com)"),
        click.option(
            "--hourly-limit",
            type=click.IntRange(min=1),
            help="the account's API calls an hour (default: $IMPACT_HOURLY_LIMIT or 1000)",
        ),
        click.option(
            "--daily-report-export",
            type=click.IntRange(min=0),
            help="the account's ReportExport calls a day (default: $IMPACT_DAILY_REPORT_EXPORT "
            "or 100)",
        ),
        click.option(
            "--daily-click-export",
            type=click.IntRange(min=0),
            help="the account's ClickExport calls a day (default: $IMPACT_DAILY_CLICK_EXPORT "
            "or 10)",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def sandbox_options(function: Callable[..., T]) -> Callable[..., T]:
    options = [
        click.option(
            "--sandbox",
            is_flag=True,
            help="start the built-in sandbox on loopback for this run and use it (no credentials)",
        ),
        # For tests and demonstrations of the quota path: the sandbox's daily ReportExport limit.
        click.option("--sandbox-daily-export-limit", type=click.IntRange(min=0), hidden=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class LedgerSpec(click.ParamType):  # type: ignore[type-arg]
    """A ledger file's path, or a `postgresql://` URL (kept as text: a URL is not a path)."""

    name = "path|url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path) or is_ledger_url(value):
            return value
        return Path(value)


def ledger_option(function: Callable[..., T], *, sandbox: bool = False) -> Callable[..., T]:
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
    )(function)


def sandbox_ledger_option(function: Callable[..., T]) -> Callable[..., T]:
    return ledger_option(function, sandbox=True)


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.call_on_close(verbose_logging(True))
    return value


def dataset_options(function: Callable[..., T]) -> Callable[..., T]:
    """`--param`, `--format` and `--out`: what is pulled and where (backfill and sync)."""
    for option in reversed((
        click.option(
            "--param", "filters", multiple=True, callback=_params, metavar="KEY=VALUE",
            help="a report filter, sent as given (repeatable), e.g. SUBAID=123",
        ),
        click.option("--format", "result_format", type=FORMAT, default="csv", show_default=True),
        click.option(
            "--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
            show_default=True, help="folder for the files and manifest.json",
        ),
    )):  # fmt: skip
        function = option(function)
    return function


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
        listen: tuple[str, int] | None,
        token: str | None,
        fields: tuple[str, str],
        public_url: str | None,
    ) -> PostbackArgs | None:
        """The options as given (None without `--postback-listen`); a usage error for a token
        or a public URL without a receiver, or for a token too weak to be a secret."""
        if listen is None:
            if token or public_url:
                raise click.UsageError(
                    "--postback-token and --postback-public-url need --postback-listen"
                )
            return None
        given = cls(listen, token, fields, public_url)
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


def _field_pair(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, str]:
    job_id, _, status = value.partition(",")
    if not job_id.strip() or not status.strip() or "," in status:
        raise click.BadParameter(f"expected JOBID,STATUS (two field names), got {value!r}")
    return job_id.strip(), status.strip()


def postback_options(function: Callable[..., T]) -> Callable[..., T]:
    """`--postback-listen`, `--postback-token`, `--postback-fields`, `--postback-public-url`
    (backfill and sync; `PostbackArgs.given` takes their values)."""
    for option in reversed((
        click.option(
            "--postback-listen", callback=_listen, metavar="HOST:PORT",
            help="receive job-completion postbacks here (the run then polls only rarely, as a "
            "safety net)",
        ),
        click.option(
            "--postback-token", metavar="TOKEN",
            help="the secret in the postback URL (default: IMPACT_POSTBACK_TOKEN, else random); "
            "keep it the same so the URL set at impact.com keeps working",
        ),
        click.option(
            "--postback-fields", metavar="JOBID,STATUS", default="JobId,Status",
            show_default=True, callback=_field_pair,
            help="the postback's field names for the job id and the status, as in your template",
        ),
        click.option(
            "--postback-public-url", metavar="URL",
            help="the receiver's URL as impact.com reaches it (behind a proxy or a tunnel)",
        ),
    )):  # fmt: skip
        function = option(function)
    return function


def check_reports_option(function: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--check-reports/--no-check-reports",
        default=True,
        show_default=True,
        help="look report ids never used before up in the account's catalog first (GET /Reports: "
        "one call a day, no quota): an unknown one is a usage error before any ReportExport call",
    )(function)


def verbose_option(function: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_verbose,
        help="log each API call (method, path, status, time) and each wait on stderr",
    )(function)


_NOTICED: set[str] = set()


def _notice(message: str) -> None:
    """A notice on stderr, once per process."""
    if message not in _NOTICED:
        _NOTICED.add(message)
        click.echo(f"{PROG}: note: {message}", err=True)


def default_ledger_path(given: Path | str | None, *, sandbox: bool = False) -> Path | str:
    """`--ledger` (a file or a `postgresql://` URL), else the user's data folder (or an older
    ledger in the current folder)."""
    return resolve_ledger(given, sandbox=sandbox, notify=_notice)


def _into(ctx: click.Context, param: click.Parameter, value: str | None) -> IntoURL | None:
    if value is None:
        return None
    with _as_usage("--into"):  # a bad URL or a missing extra: before any call
        return parse_into(value, setting="--into")


def into_option(function: Callable[..., T]) -> Callable[..., T]:
    """`--into URL`: also load every chunk into a typed destination beside the files."""
    return click.option(
        "--into",
        "into",
        metavar="URL",
        callback=_into,
        help="also load every chunk into duckdb:///FILE or parquet:///DIR (four slashes: an "
        "absolute path); the files stay written",
    )(function)


def _json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    _SAID.json = _SAID.json or value
    return value


def json_option(function: Callable[..., T]) -> Callable[..., T]:
    # Eager: read before the other options, so that their mistakes end the stream as JSON too.
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_json,
        help="print JSON (one object per line) instead; a failure ends it with an `error` object",
    )(function)


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
    limits: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Credentials:
        return cls(
            account_sid=options.get("account_sid"),
            auth_token_file=options.get("auth_token_file"),
            account_type=options.get("account_type"),
            base_url=options.get("base_url"),
            sandbox=bool(options.get("sandbox")),
            sandbox_daily_export_limit=options.get("sandbox_daily_export_limit"),
            outage_limit=options.get("outage_limit"),
            limits={
                name: options[name] for name in LIMIT_ENV_VARS if options.get(name) is not None
            },
        )

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


# -- running against an account or the built-in sandbox ----------------------------------------


@dataclass
class Run:
    client: Client
    sandbox: Any = None  # a running `Sandbox` with --sandbox


@asynccontextmanager
async def open_run(
    credentials: Credentials, ledger_path: Path | None, *, sandbox_offered: bool = False
) -> AsyncIterator[Run]:
    """The account's `Client` (its ledger at `ledger_path`); with `--sandbox`, a sandbox started
    for this run on loopback and a client of it."""
    if credentials.sandbox:
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
        from .sandbox import Sandbox

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


def _run_async(work: Callable[[], Awaitable[T]]) -> T:
    async def runner() -> T:
        async with reader_watched():
            return await work()
        # The reader of stdout went away and the work was cancelled (and cleaned up after
        # itself): a closed pipe, which `_invoke` ends with exit code 0.
        raise reader_gone_error()

    ctx = click.get_current_context(silent=True)
    try:
        return anyio.run(runner)
    except BaseException as raised:
        leaf = _leaf(raised)
        if isinstance(leaf, click.UsageError) and leaf.ctx is None:
            leaf.ctx = ctx  # so its message names the command, as a parsing error's does
        raise


def _console() -> Console:
    return make_console()


def _echo_json(payload: Mapping[str, Any]) -> None:
    echo(json.dumps(payload, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (Path, PurePosixPath)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _calls_text(calls: Mapping[str, int]) -> str:
    used = {name: count for name, count in calls.items() if count}
    if not used:
        return "0"
    parts = ", ".join(f"{name} {count}" for name, count in sorted(used.items()))
    return f"{sum(used.values())} ({parts})"


@contextmanager
def _as_usage(option: str) -> Iterator[None]:
    """A library check's `ConfigurationError` as a usage error naming the command's `option`."""
    try:
        yield
    except ConfigurationError as error:
        raise click.UsageError(f"{option}: {error.problem}") from None


def _check_could_write(path: Path, option: str) -> None:
    """Would `_check_writable_folder` pass? Making nothing (for `--dry-run`)."""
    with _as_usage(option):
        check_folder(path)


def _check_writable_folder(path: Path, option: str) -> None:
    """A folder for results exists (or is made) and takes a file, before any call."""
    with _as_usage(option):
        prepare_folder(path)


# -- the backfill display ------------------------------------------------------------------------


class _Bars(Progress):
    """One bar per report, then a line with bytes, API calls and quota left."""

    def __init__(self, *columns: Any, footer: Callable[[], RenderableType], **options: Any) -> None:
        self.footer = footer  # before Progress.__init__, which may render already
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.footer()


class BackfillView:
    """Receives the orchestrator's `ProgressEvent`s: live bars on a terminal, JSON lines with
    `--json`, a few plain lines otherwise."""

    def __init__(
        self,
        console: Console,
        *,
        live: bool,
        as_json: bool,
        zone: Callable[[], tzinfo | None] = lambda: None,
        offset: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.console = console
        self.zone = zone
        self.offset = offset
        self.quota_told = False
        self.live = live and not as_json
        self.as_json = as_json
        self.states: dict[tuple[str, str], str] = {}
        self.bytes: dict[tuple[str, str], int] = {}
        self.calls: Mapping[str, int] = {}
        self.quota_left: int | None = None
        self.plan: Plan | None = None
        self.bars: _Bars | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> BackfillView:
        if self.live:
            self.bars = _Bars(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                console=self.console,
                footer=self.footer,
                refresh_per_second=12,
            )
            self.bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bars is not None:
            self.refresh()
            self.bars.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.calls:  # the backfill's own calls so far
            self.calls = event.calls
        if event.quota_left is not None:
            self.quota_left = event.quota_left
        if event.kind == "plan" and event.plan is not None:
            self.plan = event.plan
            for planned in event.plan.chunks:
                key = (planned.report_id, str(planned.chunk))
                self.states[key] = "done" if planned.state == "done" else "planned"
            if self.quota_left is None:
                self.quota_left = event.plan.cost.quota_left_today
        elif event.kind == "chunk" and event.report_id and event.chunk and event.status:
            key = (event.report_id, event.chunk)
            self.states[key] = event.status
            if event.status == "done" and event.bytes:
                self.bytes[key] = event.bytes
        if self.as_json:
            _echo_json(_event_json(event))
        elif event.kind == "duplicate":
            self.console.print(f"note: {event.message}")
        elif event.kind == "quota":
            # Each submitter that meets the spent quota says so; people need it said once.
            if not self.quota_told:
                self.quota_told = True
                self.console.print(
                    f"quota: {quota_spent_text(event.until, self.zone(), self.offset())}",
                    markup=False,
                )
            self.refresh()
        elif event.kind == "plan" and event.plan is not None:
            # Above the bars on a terminal: the cost is said once, before anything moves.
            self.console.print(f"plan: {_plan_text(event.plan)}", markup=False)
            self.refresh()
        elif self.live:
            self.refresh()
        elif event.kind in ("error", "retry"):
            self.console.print(f"{event.kind}: {cli_language(event.message or '')}", markup=False)
        if (
            not self.as_json
            and event.kind == "loaded"
            and (event.status != "done" or not self.live)
        ):
            self.console.print(f"loaded: {event.message}", markup=False, highlight=False)
        if not self.as_json and event.kind == "wait":
            # On a terminal too: a wait always says what it waits for and until when. (What
            # stopped a run is its one error line, on stderr.)
            self.console.print(f"{event.kind}: {event.message}", markup=False, highlight=False)

    def by_report(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for (report, _), state in self.states.items():
            counts.setdefault(report, Counter())[state] += 1
        return counts

    def refresh(self) -> None:
        if self.bars is None:
            return
        for report, counts in self.by_report().items():
            states = "  ".join(
                f"[{STATE_STYLE[s]}]{STATE_LABEL.get(s, s)} {counts[s]}[/]"
                for s in STATES
                if counts[s]
            )
            total = sum(counts.values())
            # The bar fills with what is done: pending and deferred chunks are still to do.
            finished = counts["done"]
            if report not in self.tasks:
                self.tasks[report] = self.bars.add_task(report, total=total, states=states)
            self.bars.update(self.tasks[report], total=total, completed=finished, states=states)

    def footer(self) -> RenderableType:
        quota = "unknown" if self.quota_left is None else str(self.quota_left)
        return Text.from_markup(
            f"[bold]{_size(sum(self.bytes.values()))}[/] downloaded · API calls "
            f"[bold]{_calls_text(self.calls)}[/] · ReportExport quota left today "
            f"[bold]{quota}[/]"
        )


def _plan_text(plan: Plan) -> str:
    cost = plan.cost
    quota = "no daily limit" if cost.quota_left_today is None else f"{cost.quota_left_today} left"
    text = (
        f"{cost.chunks} chunks: {cost.done} done already, {cost.reattach} to re-attach, "
        f"{cost.submits} to submit (ReportExport quota today: {quota}), "
        f"{cost.downloads} downloads, ~{cost.status_calls_estimate} status calls"
    )
    if cost.submits and cost.quota_left_today is not None:
        days = "1 day" if cost.quota_days == 1 else f"{cost.quota_days} days"
        text += f"; the submits need {days} of ReportExport quota"
    return text


def _event_json(event: ProgressEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": event.kind}
    for name in ("status", "report_id", "chunk", "job_id", "message"):
        value = getattr(event, name)
        if value is not None:
            payload["report" if name == "report_id" else name] = value
    if event.plan is not None:  # plain words, not the library's object
        payload["message"] = _plan_text(event.plan)
    elif event.message is not None:
        payload["message"] = cli_language(event.message)
    if event.until is not None:
        payload["until"] = event.until.isoformat()
    if event.kind == "chunk":
        payload["bytes"] = event.bytes
    if event.kind == "loaded":  # what was loaded where
        payload.update(rows=event.rows, target=event.target, table=event.table)
    payload["calls"] = dict(event.calls)
    payload["quota_left"] = event.quota_left
    if event.plan is not None:
        payload["plan"] = {
            "cost": dataclasses.asdict(event.plan.cost),
            "chunks": [
                {
                    "report": planned.report_id,
                    "chunk": str(planned.chunk),
                    "state": planned.state,
                    "fingerprint": planned.fingerprint,
                    "job_id": planned.job_id,
                }
                for planned in event.plan.chunks
            ],
        }
    return payload


def _exit_code(result: BackfillResult) -> int:
    counts = result.counts
    if counts["failed"] or counts["stuck"]:
        return EXIT_FAILED
    if counts["pending"]:
        return EXIT_PENDING
    if counts["deferred"]:
        return EXIT_DEFERRED
    return EXIT_OK


def _print_summary(result: BackfillResult, console: Console) -> None:
    """One row per report: a boxed table on a terminal, tab-separated lines on a pipe."""
    columns = (
        ("chunks", "done", "re-attach", "new")
        if result.dry_run
        else ("chunks", "done", "failed", "pending", "deferred", "stuck", "rows", "bytes")
    )
    reports: dict[str, list[Any]] = {}
    for run in result.chunks:
        reports.setdefault(run.planned.report_id, []).append(run)
    rows: list[list[object]] = []
    for report, runs in reports.items():
        if result.dry_run:
            states = Counter(run.planned.state for run in runs)
            cells: list[object] = [len(runs), states["done"], states["attach"], states["new"]]
        else:
            outcomes = Counter(run.status for run in runs)
            done = [run for run in runs if run.status == "done"]
            size = sum(run.size or 0 for run in done)
            cells = [
                len(runs),
                outcomes["done"],
                outcomes["failed"],
                outcomes["pending"],
                outcomes["deferred"],
                outcomes["stuck"],
                _rows_text([run.records for run in done]),
                Cell(_size(size), str(size)),
            ]
        rows.append([report, *cells])
    print_table(
        console,
        ("report", *columns),
        rows,
        title="dry run: nothing submitted" if result.dry_run else None,
        right=columns,
        header_on_pipe=True,
    )


def quota_spent_text(until: datetime | None, zone: tzinfo | None, offset: float = 0.0) -> str:
    """The spent daily quota, said once per account however many submitters meet it (`offset`:
    seconds the server's clock is ahead of this machine's, see `_moment`)."""
    return (
        "the daily ReportExport quota is spent; the chunks left wait for its reset at "
        f"{_moment(until, zone, offset)}"
    )


def _rows_text(records: Sequence[int | None]) -> str:
    """Rows of the done chunks; `-` when none is known, `N+` when some are not (never a figure
    that reads as complete when it is not)."""
    known = [count for count in records if count is not None]
    if not known and records:
        return "-"
    return f"{sum(known)}{'+' if len(known) < len(records) else ''}"


def _moment(moment: datetime | None, zone: tzinfo | None, offset: float = 0.0) -> str:
    """A time for people: a moment on the server's clock, to the second in the account's time
    zone, and as this machine's clock will read it (`offset` seconds behind the server's) when
    that differs."""
    if moment is None:
        return "an unknown time"
    account = moment.astimezone(zone or UTC).replace(microsecond=0)
    text = f"{account:%Y-%m-%d %H:%M:%S} {_zone_name(account)} (account)"
    local = (moment - timedelta(seconds=round(offset))).astimezone().replace(microsecond=0)
    if local.utcoffset() != account.utcoffset() or local != account:
        text += f", {local:%Y-%m-%d %H:%M:%S} {_zone_name(local)} here"
    return text


def _zone_name(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes > 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def report_result(
    result: BackfillResult,
    console: Console,
    *,
    as_json: bool,
    calls: Mapping[str, int],
    zone: tzinfo | None = None,
    offset: float = 0.0,
) -> int:
    """The end of a backfill: a summary table and the manifest's path (or the JSON summary).
    `zone` is the account's time zone and `offset` the server clock's lead on this machine's,
    for the times printed."""
    code = _exit_code(result)
    if as_json:
        _echo_json(
            {
                "event": "summary",
                "counts": result.counts,
                "calls": dict(calls),
                "manifest": None if result.manifest_path is None else str(result.manifest_path),
                "dry_run": result.dry_run,
                "pending_resets_at": result.pending_resets_at,
                "deferred_until": result.deferred_until,
                "merged": [str(path) for path in result.merged],
                "exit_code": code,
            }
        )
        return code
    _print_summary(result, console)
    if result.dry_run:
        console.print("dry run: no API call was made")
        return code
    console.print(f"API calls: {_calls_text(calls)}")
    for run in result.chunks:
        if run.status in ("failed", "stuck"):
            console.print(f"[red]{run.status}[/]: {run.label}: {run.error}")
    if result.counts["pending"]:
        console.print(
            f"[yellow]{result.counts['pending']} chunks wait for the daily ReportExport quota"
            f"[/] (resets at {_moment(result.pending_resets_at, zone, offset)}): run the same "
            "command again after that, or pass --wait-for-quota"
        )
    if result.counts["deferred"]:
        console.print(
            f"[yellow]{result.counts['deferred']} chunks are deferred[/] until "
            f"{_moment(result.deferred_until, zone, offset)}: run the same command again after "
            "that, or pass --wait-for-replays"
        )
    for path in result.merged:
        console.print(f"merged: {path}")
    console.print(f"manifest: {result.manifest_path}")
    return code


@dataclass(frozen=True)
class BackfillArgs:
    reports: tuple[str, ...]
    start: date
    end: date
    chunk: str | ChunkRule
    filters: Mapping[str, str]
    result_format: str
    out: Path
    concurrency: int
    merge: bool
    dry_run: bool
    wait_for_quota: bool
    postbacks: PostbackArgs | None = None
    check_reports: bool = True
    wait_for_replays: bool = False
    into: IntoURL | None = None

    def options(self) -> BackfillOptions:
        return BackfillOptions(
            chunk=self.chunk,
            download_concurrency=self.concurrency,
            submit_concurrency=self.concurrency,
            dry_run=self.dry_run,
            wait_for_quota=self.wait_for_quota,
            wait_for_replays=self.wait_for_replays,
            merge=self.merge,
            check_reports=self.check_reports,
        )

    def command(self) -> str:
        """The arguments as a command line (for the demo's display)."""
        words = [PROG, "backfill", *self.reports, "--start", str(self.start)]
        words += ["--end", str(self.end), "--chunk", str(self.chunk), "--out", str(self.out)]
        return " ".join(words)


async def run_backfill(
    run: Run, args: BackfillArgs, console: Console, *, live: bool, as_json: bool
) -> tuple[BackfillResult, int]:
    """One backfill through the orchestrator, displayed; returns the result and the exit code."""
    specs = [ExportSpec(r, dict(args.filters), args.result_format) for r in args.reports]
    options = args.options()
    client = run.client
    view = BackfillView(
        console, live=live, as_json=as_json, zone=lambda: client.limiter.timezone,
        offset=lambda: client.clock.offset,
    )  # fmt: skip
    try:
        async with postback_receiver(run, args.postbacks, console, as_json=as_json) as receiver:
            with view:
                result = await run.client.backfill(
                    specs, args.start, args.end, out=args.out, options=options, on_event=view,
                    postbacks=receiver, into=args.into,
                )  # fmt: skip
    except BaseException as raised:
        _ended_early(raised, view, run.client.ledger.path, as_json=as_json)
        raise
    # `result.calls` are this backfill's own (the demo's client made others before).
    return result, report_result(
        result, console, as_json=as_json, calls=dict(result.calls),
        zone=client.limiter.timezone, offset=client.clock.offset,
    )  # fmt: skip


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
            _echo_json({"event": "postbacks", "url": receiver.url})
        else:
            console.print(f"postbacks: listening at {receiver.url}")
        yield receiver


def _sandbox_banner(run: Run, console: Console, as_json: bool) -> None:
    if run.sandbox is None:
        return
    scale = SANDBOX_TIME_SCALE / 60
    if as_json:
        _echo_json(
            {"event": "sandbox", "base_url": run.sandbox.base_url, "time_scale": SANDBOX_TIME_SCALE}
        )
    else:
        console.print(
            f"[dim]built-in sandbox at {run.sandbox.base_url} "
            f"(1 real second = {scale:g} sandbox minutes)[/]"
        )


# -- the commands ------------------------------------------------------------------------------


class _Cli(click.Group):
    """Errors as one line on stderr with an exit code; never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = _invoke(
            lambda: super(_Cli, self).main(
                args, prog_name or PROG, complete_var, standalone_mode=False, **extra
            ),
            sys.argv[1:] if args is None else args,
        )
        if standalone_mode:
            sys.exit(code)
        return code


def _leaf(error: BaseException) -> BaseException:
    """The one error inside (nested) exception groups from task groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _typed_command(argv: Sequence[str]) -> str:
    """The command as typed (`reportexport jobs show`), read off the arguments: the words that
    name a command and its subcommands, from the first one on (the top level has no options but
    --help and --version)."""
    words = [PROG]
    command: click.Command = cli
    for word in argv:
        found = command.commands.get(word) if isinstance(command, click.Group) else None
        if found is None:
            break
        words.append(word)
        command = found
    return " ".join(words)


def _fail(message: str, code: int) -> int:
    click.echo(f"{_typed_command(_SAID.argv)}: error: {message}", err=True)
    _end_json(message, code)
    return code


#: What the command line adds to the library's LedgerError advice: its own flags and commands.
_LEDGER_ADVICE: Mapping[LedgerProblem, str] = {
    "corrupt": " (--ledger PATH)",
    "newer": " (--ledger PATH)",
    "folder": " (--ledger PATH)",
    "older": " (a backfill or an export does)",
    "read-only": " (ledger show, ledger history, jobs list and jobs show)",
}


@dataclass
class _Said:
    """What this command said: with `--json` (`json`), whether its stream has ended with an
    `error` object (`ended`); what a backfill said when Ctrl-C stopped it (what was recorded,
    how to resume), so the last line does not repeat it in fewer words."""

    json: bool = False
    ended: bool = False
    interrupted: str | None = None
    #: What an interrupted command other than a backfill says about resuming (None: the usual).
    resume: str | None = None
    argv: tuple[str, ...] = ()


_SAID = _Said()


def _end_json(message: str, code: int, *, counts: Mapping[str, int] | None = None) -> None:
    """With `--json`, a failure ends the stream with one `error` object (once): its one-line
    message and the exit code; a command that runs chunks adds their `counts` so far."""
    if not _SAID.json or _SAID.ended:
        return
    _SAID.ended = True
    payload: dict[str, Any] = {"event": "error", "message": message}
    if counts is not None:
        payload["counts"] = dict(counts)
    _echo_json({**payload, "exit_code": code})


def _interrupted_text(view: BackfillView, ledger: Path | str) -> str:
    counts = Counter(view.states.values())
    recorded = sum(counts[s] for s in ("submitted", "running", "downloading"))
    text = f"interrupted: {counts['done']} of {len(view.states)} chunks done"
    if recorded:
        text += f", {recorded} submitted jobs recorded in the ledger {ledger}"
    else:
        text += f" (ledger {ledger})"
    text += "; run the same command again to resume"
    if recorded:
        text += ": it re-attaches to those jobs and submits nothing twice"
    return text


def _ended_early(
    raised: BaseException, view: BackfillView, ledger: Path | str, *, as_json: bool
) -> None:
    """A backfill that ends by an exception (Ctrl-C included) still ends its `--json` stream
    with an `error` object, and a Ctrl-C says what was recorded and how to resume."""
    if READER.gone:  # `| head`: no failure, and nothing more to say
        return
    leaf = _leaf(raised)
    interrupted = isinstance(leaf, (KeyboardInterrupt, anyio.get_cancelled_exc_class()))
    if interrupted:
        message, code = _interrupted_text(view, ledger), 130
        _SAID.interrupted = message
    else:
        message, code = _error_text(leaf)
    if as_json:
        _SAID.json = True
        _end_json(message, code, counts=Counter(view.states.values()))
    if interrupted:
        click.echo(f"{_typed_command(_SAID.argv)}: {message}", err=True)


def _error_text(leaf: BaseException) -> tuple[str, int]:
    """A library error as one line in command-line words, and its exit code."""
    if isinstance(leaf, click.UsageError):
        return leaf.format_message(), EXIT_USAGE
    if isinstance(leaf, click.ClickException):
        return leaf.format_message(), leaf.exit_code
    if isinstance(leaf, AccountUnavailable):
        return _stopped_text(leaf), _stopped_code(leaf)
    if isinstance(leaf, LedgerError):
        return str(leaf) + _LEDGER_ADVICE.get(leaf.problem, ""), EXIT_USAGE
    if isinstance(leaf, ConfigurationError):
        return cli_language(str(leaf)), EXIT_USAGE
    if isinstance(leaf, QuotaExhausted):
        return cli_language(str(leaf)), EXIT_PENDING
    if isinstance(leaf, ReportExportError):
        return cli_language(str(leaf)), EXIT_FAILED
    if isinstance(leaf, OSError):
        return f"{leaf.strerror or leaf}: {leaf.filename or ''}".rstrip(": "), EXIT_FAILED
    return f"unexpected {type(leaf).__name__}: {leaf}", EXIT_FAILED


def _invoke(call: Callable[[], Any], argv: Sequence[str] = ()) -> int:
    _SAID.json, _SAID.ended, _SAID.interrupted, _SAID.resume = False, False, None, None
    _SAID.argv = tuple(argv)
    READER.reset()
    silence_library_log()
    code = _invoke_once(call)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        READER.lost()
    except (OSError, ValueError):  # pragma: no cover - stdout closed otherwise
        pass
    # A reader that went away (`| head`) is no failure, whatever was cut short by it.
    return EXIT_OK if READER.gone else code


def _interrupted() -> int:
    said, _SAID.interrupted = _SAID.interrupted, None
    if said is not None:  # the backfill said it already, with what was recorded
        return 130
    resume, _SAID.resume = _SAID.resume, None
    return _fail(resume or "interrupted; run the same command again to resume", 130)


def _export_interrupted(client: Client, dest: Path) -> str:
    """What an export stopped by Ctrl-C leaves: its job, when it was submitted (the ledger has
    its id: the next run re-attaches to it), or nothing, and no file (`dest` only ever appears
    whole)."""
    if client.usage.calls.get("ReportExport", 0) == 0:
        return f"interrupted before anything was submitted; {dest} was not written"
    return (
        f"interrupted: the export's job is recorded in the ledger {client.ledger.path}; "
        f"{dest} was not written; run the same command again to resume: it re-attaches to "
        "the job and submits nothing twice"
    )


def _invoke_once(call: Callable[[], Any]) -> int:
    try:
        result = call()
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        message = cli_language(error.format_message())
        click.echo(f"{_typed_command(_SAID.argv)}: error: {message} (see --help)", err=True)
        if error.ctx is not None and any(p.name == "as_json" for p in error.ctx.command.params):
            # A mistake click finds before it reads the options (`--bogus`) ends it too.
            _SAID.json = _SAID.json or "--json" in _SAID.argv
        _end_json(message, EXIT_USAGE)
        return EXIT_USAGE
    except click.ClickException as error:
        return _fail(cli_language(error.format_message()), error.exit_code)
    except click.Abort:
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    except BaseException as raised:
        leaf = _leaf(raised)
        if isinstance(leaf, SystemExit):
            return leaf.code if isinstance(leaf.code, int) else EXIT_FAILED
        if isinstance(leaf, BrokenPipeError) or (READER.gone and isinstance(leaf, CancelledError)):
            # `| head`: the reader has what it wanted; that is no failure.
            READER.lost()
            return EXIT_OK
        if isinstance(leaf, KeyboardInterrupt):
            return _interrupted()
        if isinstance(leaf, click.ClickException):
            return _invoke_once(lambda: _reraise(leaf))
        if not isinstance(leaf, Exception):
            raise
        return _fail(*_error_text(leaf))
    return result if isinstance(result, int) else EXIT_OK


def _stopped_code(error: AccountUnavailable) -> int:
    """Credentials the server refused are configuration (2); an unreachable host or an outage
    is a failure (1)."""
    return EXIT_USAGE if error.problem == "credentials" else EXIT_FAILED


def _stopped_text(error: AccountUnavailable) -> str:
    """One line: what stopped the run, that nothing more was tried, and where things stand."""
    text = f"stopped: {error}; no further chunk was tried"
    result = error.result
    if isinstance(result, BackfillResult):
        done = result.counts["done"]
        text += f" ({done} of {len(result.chunks)} chunks done"
        if result.manifest_path is not None:
            text += f", manifest {result.manifest_path}"
        text += "); run the same command again to continue"
    return text


def _reraise(error: BaseException) -> NoReturn:
    raise error


def accounts_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--accounts FILE, --account NAME..., --parallel-accounts N (backfill and sync)."""
    for option in reversed((
        click.option("--accounts", "accounts_file",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="run for every account of this TOML file at once (its token, SID and "
                     "limits), each into <out>/<name>, one ledger for all (see the README)"),
        click.option("--account", "account_names", multiple=True, metavar="NAME",
                     help="with --accounts: only this account (repeatable)"),
        click.option("--parallel-accounts", type=click.IntRange(min=1), default=8,
                     show_default=True, help="with --accounts: accounts run at a time"),
    )):  # fmt: skip
        command = option(command)
    return command


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reportexport_async", prog_name=PROG)
def cli() -> None:
    """Pull impact.com ReportExport results into a folder, spending as few API calls and as
    little daily quota as the guide allows. `reportexport demo` shows it on the built-in
    sandbox, with no credentials.

    Credentials: IMPACT_ACCOUNT_SID, IMPACT_AUTH_TOKEN, IMPACT_ACCOUNT_TYPE (and
    IMPACT_BASE_URL), or --account-sid, --auth-token-file, --account-type, --base-url.

    Exit codes: 0 done; 1 chunks failed or stuck; 2 usage error; 3 chunks pending for the daily
    quota (run the same command again after the reset); 4 chunks deferred; 130 interrupted.
    With --accounts: 0 when every account completed, else the most serious of the accounts'
    codes (1, 2, 3, 4 in that order).

    The ledger lives in the user's data folder (on Linux $XDG_DATA_HOME/reportexport, by
    default ~/.local/share/reportexport) unless --ledger says; an older
    .reportexport/ledger.sqlite in the current folder is still used.
    """


@cli.command("backfill")
@click.argument("reports", metavar="REPORT...", nargs=-1, required=True)
@click.option("--start", **DATE, required=True, help="first day (YYYY-MM-DD)")
@click.option("--end", **DATE, required=True, help="last day (YYYY-MM-DD), inclusive")
@click.option(
    "--chunk",
    default="7d",
    show_default=True,
    callback=_chunk_rule,
    help="one export per chunk: Nd (1d, 7d, 30d...: N days from --start), week (Monday to "
    "Sunday), month (calendar months) or auto (spans learned from the rows seen; the chunks "
    "chosen are recorded, and later runs keep them)",
)
@click.option(
    "--align-chunks",
    is_flag=True,
    help="count Nd chunks from a fixed Monday (1970-01-05) instead of --start, so backfills "
    "over overlapping ranges share their chunks (the first and last chunk may be shorter)",
)
@dataset_options
@sandbox_ledger_option
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="submits and downloads at a time",
)
@click.option("--merge", is_flag=True, help="also write <out>/<report>.<ext> with every chunk")
@click.option("--dry-run", is_flag=True, help="print the plan and its cost; make no API call")
@click.option(
    "--wait-for-quota",
    is_flag=True,
    help="when the daily quota runs out, wait for its reset instead of stopping",
)
@click.option(
    "--outage-limit",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="stop the run once every call has failed for this long (default 300)",
)
@click.option(
    "--wait-for-replays",
    is_flag=True,
    help="when a failed job may be replayed only later (an hour after its submit), wait for "
    "that instead of stopping with the chunk deferred",
)
@postback_options
@check_reports_option
@accounts_options
@into_option
@sandbox_options
@json_option
@credential_options
@verbose_option
def backfill_command(
    reports: tuple[str, ...],
    start: date,
    end: date,
    chunk: str,
    filters: dict[str, str],
    result_format: str,
    out: Path,
    ledger_path: Path | None,
    concurrency: int,
    merge: bool,
    dry_run: bool,
    wait_for_quota: bool,
    wait_for_replays: bool,
    postback_listen: tuple[str, int] | None,
    postback_token: str | None,
    postback_fields: tuple[str, str],
    postback_public_url: str | None,
    check_reports: bool,
    accounts_file: Path | None,
    account_names: tuple[str, ...],
    parallel_accounts: int,
    align_chunks: bool,
    as_json: bool,
    into: IntoURL | None,
    **options: Any,
) -> int:
    """Pull REPORT... over --start..--end into --out, one export per chunk.

    Nothing is submitted twice: the ledger remembers every chunk, so a second run of the same
    command costs no call for what is done, and an interrupted or quota-limited run continues
    where it stopped.
    """
    if end < start:
        raise click.UsageError(f"--start {start} is after --end {end}")
    credentials = Credentials.from_options(options)
    rule = parse_chunk_rule(chunk)
    if rule.kind == "days":
        rule = dataclasses.replace(rule, from_start=not align_chunks)
    elif align_chunks:
        raise click.UsageError("--align-chunks applies to Nd chunks (week and month are aligned)")
    args = BackfillArgs(
        reports, start, end, rule, filters, result_format.upper(), out, concurrency, merge,
        dry_run, wait_for_quota,
        PostbackArgs.given(postback_listen, postback_token, postback_fields, postback_public_url),
        check_reports, wait_for_replays, into,
    )  # fmt: skip
    if into is not None and (accounts_file is not None or account_names):
        raise click.UsageError("--into: with --accounts, set `into` per account in the file")
    if dry_run:
        _check_could_write(out, "--out")  # and make nothing: a dry run leaves no trace
    else:
        _check_writable_folder(out, "--out")
    console = _console()
    live = sys.stdout.isatty()
    if accounts_file is not None or account_names:
        from . import cli_accounts

        accounts = cli_accounts.chosen(accounts_file, account_names, options, "backfill")
        if isinstance(accounts, int):
            return accounts
        return cli_accounts.backfill_accounts(
            args, accounts, ledger_path=default_ledger_path(ledger_path),
            parallel=parallel_accounts, console=console, live=live, as_json=as_json,
        )  # fmt: skip

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            _sandbox_banner(run, console, as_json)
            _, code = await run_backfill(run, args, console, live=live, as_json=as_json)
            return code

    return _run_async(work)


@cli.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reportexport-demo"),
    show_default=True,
    help="folder for the files, the manifest and the demo's ledger",
)
def demo_command(out: Path) -> int:
    """Backfill two reports on the built-in sandbox, then run the same backfill again: the second
    run costs zero API calls. No credentials needed."""
    _check_writable_folder(out, "--out")
    console = _console()
    live = sys.stdout.isatty()
    credentials = Credentials(sandbox=True)

    async def work() -> int:
        async with open_run(credentials, out / "ledger.sqlite") as run:
            today = run.client.clock.now().date()
            end = today - timedelta(days=today.weekday() + 1)  # last Sunday
            args = BackfillArgs(
                ("mp_action_listing_fast", "mp_performance_by_day"),
                end - timedelta(weeks=8) + timedelta(days=1), end, "7d", {}, "CSV",
                out / "out", 4, True, False, False,
            )  # fmt: skip
            _sandbox_banner(run, console, False)
            console.print(f"\n[bold]1.[/] {args.command()} --merge --sandbox")
            first, code = await run_backfill(run, args, console, live=live, as_json=False)
            if code != EXIT_OK:
                return code
            server_before = run.sandbox.stats()["total_calls"]
            console.print("\n[bold]2.[/] the same command again")
            second, code = await run_backfill(run, args, console, live=live, as_json=False)
            server_calls = run.sandbox.stats()["total_calls"] - server_before
            second_calls = sum(second.calls.values())  # each result counts its own calls
            first_calls = _calls_text(first.calls)
            console.print(
                f"\nThe second run cost [bold]{second_calls}[/] API calls (the sandbox counted "
                f"{server_calls}) and no quota: the ledger ({run.client.ledger.path}) remembers "
                f"every chunk, and each file is still there with its checksum. The first run spent "
                f"{first_calls}."
            )
            console.print(
                f"Files: {args.out}/ (manifest.json; merged: "
                f"{', '.join(str(p) for p in first.merged)})"
            )
            return code

    return _run_async(work)


@cli.command("export")
@click.argument("report")
@click.option("--start", **DATE, help="first day (YYYY-MM-DD); omit both for the default range")
@click.option("--end", **DATE, help="last day (YYYY-MM-DD), inclusive")
@click.option("--param", "filters", multiple=True, callback=_params, metavar="KEY=VALUE")
@click.option("--format", "result_format", type=FORMAT, default="csv", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"result file (default {DEFAULT_OUT}/<report>/<start>_<end>.<ext>)",
)
@sandbox_ledger_option
@check_reports_option
@sandbox_options
@into_option
@json_option
@credential_options
@verbose_option
def export_command(
    report: str,
    start: date | None,
    end: date | None,
    filters: dict[str, str],
    result_format: str,
    out: Path | None,
    ledger_path: Path | None,
    check_reports: bool,
    as_json: bool,
    into: IntoURL | None,
    **options: Any,
) -> int:
    """One export: submitted (or re-attached to, or taken from a file that is still intact),
    waited on, downloaded."""
    if (start is None) != (end is None):
        raise click.UsageError("give both --start and --end, or neither (the default range)")
    if start is not None and end is not None and end < start:
        raise click.UsageError(f"--start {start} is after --end {end}")
    try:
        request = checked(
            partial(
                ExportRequest, report_id=report, start=start, end=end, filters=filters,
                result_format=result_format.upper(),
            ),
        )  # fmt: skip
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from None
    credentials = Credentials.from_options(options)
    if out is not None:
        with _as_usage("--out"):
            prepare_file(out)  # the one check `Client.export` makes again, before any call
    console = _console()

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            dest = out
            if dest is None:
                if start is not None and end is not None:
                    relative = chunk_path(request, Chunk(start, end))
                else:
                    # The account's day on the server's clock (one call, no quota, if needed).
                    now = await run.client.clock.fresh_now()
                    today = now.astimezone(await run.client.limiter.account_timezone()).date()
                    relative = default_range_path(request, today)
                dest = DEFAULT_OUT / relative
                with _as_usage("--out"):
                    prepare_file(dest)
            if not as_json:
                _sandbox_banner(run, console, as_json)
            try:
                outcome = await run.client.export(
                    request, out=dest, check_reports=check_reports, into=into
                )
            except BaseException as raised:
                if isinstance(_leaf(raised), KeyboardInterrupt | anyio.get_cancelled_exc_class()):
                    _SAID.resume = _export_interrupted(run.client, dest)
                raise
            calls = dict(run.client.usage.calls)
            if as_json:
                _echo_json({"event": "export", **dataclasses.asdict(outcome), "calls": calls})
            else:
                how = (
                    "from the intact file (no call)"
                    if outcome.action == "cached"
                    else ("submitted and downloaded" if outcome.submitted else "downloaded")
                )
                console.print(
                    f"{outcome.path}: {_size(outcome.size)}, {outcome.records} rows, job "
                    f"{outcome.job_id}, {how}{', replayed' if outcome.replayed else ''}"
                )
                console.print(f"sha256 {outcome.sha256}\nAPI calls: {_calls_text(calls)}")
                for loaded in outcome.loaded:
                    console.print(f"loaded: {loaded.message}", markup=False, highlight=False)
            return EXIT_OK

    return _run_async(work)


# -- sync --------------------------------------------------------------------------------------


@cli.command("sync")
@click.argument("reports", metavar="[REPORT...]", nargs=-1)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="a TOML file of named datasets (see the README); replaces REPORT... options",
)
@click.option(
    "--dataset",
    "names",
    multiple=True,
    metavar="NAME",
    help="with --config: only this dataset (repeatable; default: all)",
)
@click.option("--first-day", **DATE, help="first day of the dataset (omit: the default range)")
@click.option(
    "--chunk",
    default="1d",
    show_default=True,
    callback=_chunk_rule,
    help="one export per chunk: Nd, week or month",
)
@dataset_options
@click.option("--merge", is_flag=True, help="also keep <out>/<report>.<ext> whole")
@click.option(
    "--settle-days",
    type=int,
    default=DEFAULT_SETTLE_DAYS,
    show_default=True,
    help="days a day's data keeps changing: chunks this recent are refreshed daily",
)
@click.option(
    "--refresh-hour",
    type=int,
    default=DEFAULT_REFRESH_HOUR,
    show_default=True,
    help="hour of the account's day from which the latest day is refreshed",
)
@ledger_option
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--dry-run", is_flag=True, help="print the plan and its cost by kind; no API call")
@click.option(
    "--wait-for-quota",
    is_flag=True,
    help="when the daily quota runs out, wait for its reset instead of stopping",
)
@postback_options
@check_reports_option
@accounts_options
@into_option
@sandbox_options
@json_option
@credential_options
@verbose_option
def sync_command(
    reports: tuple[str, ...],
    config_path: Path | None,
    names: tuple[str, ...],
    first_day: date | None,
    chunk: str,
    filters: dict[str, str],
    result_format: str,
    out: Path,
    merge: bool,
    settle_days: int,
    refresh_hour: int,
    ledger_path: Path | None,
    concurrency: int,
    dry_run: bool,
    wait_for_quota: bool,
    postback_listen: tuple[str, int] | None,
    postback_token: str | None,
    postback_fields: tuple[str, str],
    postback_public_url: str | None,
    check_reports: bool,
    accounts_file: Path | None,
    account_names: tuple[str, ...],
    parallel_accounts: int,
    as_json: bool,
    into: IntoURL | None,
    **options: Any,
) -> int:
    """Keep a dataset current: run it once a day (a cron line). New days are submitted,
    the recent days that are still settling are refreshed by replaying their own jobs (at most
    once a day), and what fits nowhere in today's quota waits for the next run."""
    if config_path is not None and reports:
        raise click.UsageError("give REPORT... or --config, not both")
    if config_path is not None:
        context = click.get_current_context()
        given = [
            flag
            for name, flag in DATASET_FLAGS.items()
            if name != "reports"
            and context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"--config holds the datasets' settings: drop {', '.join(given)} "
                "(or set them in the file)"
            )
    if config_path is None and names:
        raise click.UsageError("--dataset needs --config")
    postbacks = PostbackArgs.given(
        postback_listen, postback_token, postback_fields, postback_public_url
    )
    try:
        if config_path is not None:
            datasets = load_datasets(config_path, names)
        elif not reports:
            raise click.UsageError("give REPORT... or --config FILE")
        else:
            dataset = Dataset(
                "command line", reports, out, first_day=first_day, chunk=chunk, filters=filters,
                result_format=result_format, merge=merge, settle_days=settle_days,
                refresh_hour=refresh_hour,
            )  # fmt: skip
            datasets = [dataset]
    except ConfigurationError as error:
        raise _dataset_problem(error, config_path) from None
    if into is not None:  # every dataset, each in its own schema
        if accounts_file is not None or account_names:
            raise click.UsageError("--into: with --accounts, set `into` per account in the file")
        datasets = [dataclasses.replace(dataset, into=into) for dataset in datasets]
    credentials = Credentials.from_options(options)
    console = _console()
    sync_options = SyncOptions(dry_run=dry_run, wait_for_quota=wait_for_quota,
                               concurrency=concurrency, check_reports=check_reports)  # fmt: skip
    if accounts_file is not None or account_names:
        from . import cli_accounts

        accounts = cli_accounts.chosen(accounts_file, account_names, options, "sync")
        if isinstance(accounts, int):
            return accounts
        return cli_accounts.sync_accounts(
            datasets, sync_options, accounts, ledger_path=default_ledger_path(ledger_path),
            parallel=parallel_accounts, console=console, live=sys.stdout.isatty(), as_json=as_json,
            postbacks=postbacks,
        )  # fmt: skip

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            _sandbox_banner(run, console, as_json)
            live = sys.stdout.isatty()
            client = run.client
            view = BackfillView(
                console, live=live, as_json=as_json, zone=lambda: client.limiter.timezone,
                offset=lambda: client.clock.offset,
            )  # fmt: skip
            try:
                async with postback_receiver(run, postbacks, console, as_json=as_json) as receiver:
                    with view:
                        result = await run.client.sync(
                            datasets, options=sync_options, on_event=view, postbacks=receiver
                        )
            except BaseException as raised:
                leaf = _leaf(raised)
                if isinstance(leaf, ConfigurationError) and (
                    leaf.dataset is not None or leaf.setting in DATASET_FLAGS
                ):  # found by sync before any call (a first day in the future, --out)
                    problem = _dataset_problem(leaf, config_path)
                    _ended_early(problem, view, run.client.ledger.path, as_json=as_json)
                    raise problem from None
                _ended_early(raised, view, run.client.ledger.path, as_json=as_json)
                raise
            return report_sync(
                result, console, as_json=as_json, zone=client.limiter.timezone,
                offset=client.clock.offset,
            )  # fmt: skip

    return _run_async(work)


#: A dataset's settings, as `Dataset` names them -> the arguments of `sync` that set them.
DATASET_FLAGS: Mapping[str, str] = {
    "reports": "REPORT", "first_day": "--first-day", "chunk": "--chunk", "filters": "--param",
    "result_format": "--format", "out": "--out", "merge": "--merge",
    "settle_days": "--settle-days", "refresh_hour": "--refresh-hour",
}  # fmt: skip


class _FileProblem(click.ClickException):
    """A mistake in a file the command read (`--config`): exit 2 as a usage error, without the
    usage error's "see --help", which says nothing about a file's contents."""

    exit_code = EXIT_USAGE


def _dataset_problem(error: ConfigurationError, config_path: Path | None) -> click.ClickException:
    """A dataset's problem where the user gave the dataset: the file, the dataset and the key
    (`--config`), or the flag (REPORT... on the command line)."""
    if config_path is not None:
        return _FileProblem(str(in_file(config_path, error)))
    return click.UsageError(f"{DATASET_FLAGS.get(error.setting, error.setting)}: {error.problem}")


# -- reports -----------------------------------------------------------------------------------


@cli.command("reports")
@click.option("--all", "show_all", is_flag=True, help="also the reports the API cannot export")
@click.option("--refresh", is_flag=True, help="ask the API again (one call) instead of the cache")
@sandbox_options
@json_option
@credential_options
@verbose_option
def reports_command(show_all: bool, refresh: bool, as_json: bool, **options: Any) -> int:
    """The account's report ids that the API can export (GET /Reports: one call, then cached for
    a day in the user's cache folder)."""
    credentials = Credentials.from_options(options)
    console = _console()

    async def fetch() -> list[dict[str, Any]]:
        if credentials.sandbox:  # a fresh account each time: nothing to cache
            async with open_run(credentials, None) as run:
                found = await run.client.api.reports()
        else:
            async with ReportExportClient(config) as client:
                found = await client.reports()
        return [report.model_dump(mode="json", by_alias=False) for report in found]

    config = None if credentials.sandbox else credentials.config(sandbox_offered=True)
    source = "cached"
    catalog = None if refresh or config is None else read_catalog(config)

    async def work() -> int:
        nonlocal catalog, source
        if catalog is None:
            catalog, source = await fetch(), "one call"
            if config is not None:
                write_catalog(config, catalog)
        shown = [r for r in catalog if show_all or r.get("api_accessible") is not False]
        if as_json:
            for report in shown:
                _echo_json(report)
            return EXIT_OK
        rows = [
            [r["id"], r.get("name"), r.get("category"), _yes_no(r.get("api_accessible"))]
            for r in shown
        ]
        columns = ("report", "name", "category", "api")
        print_table(console, columns, rows)
        print_count(console, f"{len(shown)} reports ({source})")
        return EXIT_OK

    return _run_async(work)


def sync_exit_code(result: SyncResult) -> int:
    counts = result.counts
    if counts["failed"] or counts["stuck"]:
        return EXIT_FAILED
    return EXIT_PENDING if counts["pending"] else EXIT_OK


def report_sync(
    result: SyncResult, console: Console, *, as_json: bool, zone: tzinfo, offset: float = 0.0
) -> int:
    """The end of a sync: per dataset, its chunks by kind, its cost, and where things are
    (moments in the account's `zone`, and on this machine's clock, `offset` behind the server's)."""
    counts = result.counts
    code = sync_exit_code(result)
    if as_json:
        for item in result.datasets:
            _echo_json({
                "event": "dataset", "name": item.dataset.name, "account_day": item.today,
                "last_complete_day": item.last_day, "counts": item.counts, "cost": item.cost,
                "merged": [str(p) for p in item.merged], "dry_run": item.dry_run,
                "manifest": None if item.manifest_path is None else str(item.manifest_path),
                "pending_resets_at": item.pending_resets_at, "deferred_until": item.deferred_until,
            })  # fmt: skip
        offset = result.server_offset
        _echo_json({"event": "summary", "counts": counts, "calls": dict(result.calls),
                    "server_clock_offset_seconds": offset, "quota_left": result.quota_left,
                    "exit_code": code})  # fmt: skip
        return code
    title = "dry run: nothing submitted" if any(d.dry_run for d in result.datasets) else None
    columns = ("new", "refreshed", "deferred", "final", "fresh", "history", "pending", "failed")
    rows: list[list[object]] = []
    for item in result.datasets:
        for report in item.dataset.reports:
            chunks = [c for c in item.chunks if c.report_id == report]
            kinds: Counter[str] = Counter(c.kind for c in chunks)
            kinds["refreshed"] = kinds["refresh"]
            outcomes = Counter(c.outcome for c in chunks)
            cells = [kinds[n] for n in columns[:6]] + [outcomes["pending"], outcomes["failed"]]
            rows.append([f"{item.dataset.name} / {report}", *cells])
    print_table(
        console, ("dataset / report", *columns), rows, title=title, right=columns,
        header_on_pipe=True,
    )  # fmt: skip
    for item in result.datasets:
        cost = item.cost
        line = f"{item.dataset.name}: account day {item.today}, up to {item.last_day}"
        if item.dry_run:  # the plan's figures; a run says what it spent, below
            line += (
                f"; would spend: {cost['new_submits']} submits of new days, "
                f"{cost['refresh_replays']} replays of the settle window, "
                f"{cost['history_submits']} submits of history"
            )
        console.print(line)
        if item.deferred_until is not None:
            console.print(
                f"[yellow]{item.counts['deferred']} refreshes deferred[/] until "
                f"{_moment(item.deferred_until, zone, offset)} (the latest day is refreshed later "
                "in the day): nothing was spent on them"
            )
        if item.pending_resets_at is not None:
            console.print(
                f"[yellow]{counts['pending']} chunks wait for the daily ReportExport quota[/] "
                f"(resets at {_moment(item.pending_resets_at, zone, offset)}): the next run takes "
                "them"
            )
        for chunk in item.chunks:
            if chunk.outcome in ("failed", "stuck"):
                console.print(f"[red]{chunk.outcome}[/]: {chunk.report_id} {chunk.start}: "
                              f"{chunk.reason}")  # fmt: skip
        for path in item.merged:
            console.print(f"merged: {path}")
        if item.manifest_path is not None:
            console.print(f"manifest: {item.manifest_path}")
    if any(d.dry_run for d in result.datasets):
        quota = "no daily limit" if result.quota_left is None else f"{result.quota_left} left"
        console.print(
            f"dry run: no API call was made (ReportExport quota today: {quota}; new "
            "days first, then refreshes, then history; the rest waits for tomorrow)"
        )
    else:
        console.print(_spent_text(result.calls, result.quota_left))
        console.print(f"API calls: {_calls_text(result.calls)}")
    return code


def _spent_text(calls: Mapping[str, int], quota_left: int | None) -> str:
    """What a run spent, from its own calls (not from its plan, which the quota or a stop
    may have cut short)."""
    submits, replays = calls.get("ReportExport", 0), calls.get("Replay", 0)
    left = "no daily limit" if quota_left is None else f"{quota_left} left"
    return (
        f"spent: {submits} ReportExport calls, {replays} Replay calls (ReportExport quota "
        f"today: {left})"
    )


def _yes_no(value: object) -> str:
    return "-" if value is None else ("yes" if value else "no")


# -- jobs --------------------------------------------------------------------------------------


@cli.group("jobs")
def jobs_group() -> None:
    """The account's jobs: list, show, download, replay."""


async def _known_entries(ledger_path: Path | None, config: ClientConfig) -> dict[str, LedgerEntry]:
    """The account's ledger entries by job id, when the ledger file exists (read-only commands
    never make one, nor write to one). Only this account's: job ids are the server's, and
    another account in the same ledger may use the same ones."""
    path = default_ledger_path(ledger_path)
    if not is_ledger_url(path) and not await anyio.Path(path).exists():
        return {}
    async with open_ledger(path, read_only=True) as ledger:
        return _by_job(await ledger.entries(account=_account(config)))


def _by_job(entries: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    return {e.job_id: e for e in entries if e.job_id is not None}


def _account(config: ClientConfig) -> str:
    return account_key(config.base_url, config.account_type, config.account_sid)


async def _job_id(client: Client, given: str) -> str:
    """ID, or a unique prefix of one of the account's job ids in the client's ledger."""
    return job_by_prefix(given, _by_job(await client.ledger.entries(account=client.account)))


def _job_json(job: Job, entry: LedgerEntry | None) -> dict[str, Any]:
    payload = job.model_dump(mode="json", by_alias=False, exclude_none=True)
    if entry is not None:
        payload["ledger"] = _entry_json(entry)
    return payload


def _shown_path(path: Path) -> str:
    """A recorded path as a person reads it: relative to the current folder when inside it (the
    ledger records paths absolute, in their one canonical spelling; `--json` gives them so)."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _entry_range(entry: LedgerEntry) -> str:
    if entry.range_start is None:
        return "default range"
    return f"{entry.range_start}..{entry.range_end}"


@jobs_group.command("list")
@click.option("--since", **DATE, help="jobs created on or after this day")
@ledger_option
@json_option
@credential_options
@verbose_option
def jobs_list(since: date | None, ledger_path: Path | None, as_json: bool, **options: Any) -> int:
    """Jobs of the account (one listing call per page), with what the ledger knows of them."""
    credentials = Credentials.from_options(options)
    config = credentials.config(sandbox_offered=False)

    async def work() -> int:
        known = await _known_entries(ledger_path, config)
        async with ReportExportClient(config) as client:
            jobs = await client.list_jobs(created_after=since)
        if as_json:
            for job in jobs:
                _echo_json(_job_json(job, known.get(job.id)))
            return EXIT_OK
        rows = []
        for job in jobs:
            entry = known.get(job.id)
            rows.append(
                [
                    job.id,
                    job.status.value,
                    _when(job.created_date),
                    _when(job.completed_date),
                    job.records_processed,
                    None if entry is None else entry.report_id,
                    None if entry is None else _entry_range(entry),
                ]
            )
        columns = ("job", "status", "created", "completed", "rows", "report", "range")
        console = _console()
        print_table(console, columns, rows, right=("rows",), whole=("job",))
        print_count(console, f"{len(rows)} jobs" + (f" created since {since}" if since else ""))
        return EXIT_OK

    return _run_async(work)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


@jobs_group.command("show")
@click.argument("job_id", metavar="ID")
@ledger_option
@json_option
@credential_options
@verbose_option
def jobs_show(job_id: str, ledger_path: Path | None, as_json: bool, **options: Any) -> int:
    """One job (one call), with what the ledger knows of it. ID may be a unique prefix of a
    job id the ledger knows."""
    config = Credentials.from_options(options).config(sandbox_offered=False)

    async def work() -> int:
        known = await _known_entries(ledger_path, config)
        async with ReportExportClient(config) as client:
            job = await client.get_job(job_by_prefix(job_id, known))
        entry = known.get(job.id)
        if as_json:
            _echo_json(_job_json(job, entry))
            return EXIT_OK
        console = _console()
        for name, value in job.model_dump(by_alias=True, exclude_none=True).items():
            console.print(f"{name}: {_when(value) if isinstance(value, datetime) else value}")
        if entry is not None:
            file = "-" if entry.file_path is None else _shown_path(entry.file_path)
            console.print(
                f"ledger: {entry.report_id} {_entry_range(entry)} {entry.result_format}, "
                f"fingerprint {entry.fingerprint[:12]}, file {file}"
            )
        return EXIT_OK

    return _run_async(work)


@jobs_group.command("download")
@click.argument("job_id", metavar="ID")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="result file (default ./<ID>.<ext>, the format from the ledger, else csv)",
)
@ledger_option
@json_option
@credential_options
@verbose_option
def jobs_download(
    job_id: str, out: Path | None, ledger_path: Path | None, as_json: bool, **options: Any
) -> int:
    """Download a job's result by its id (never by submitting again); waits while it runs. ID
    may be a unique prefix of a job id the ledger knows."""
    credentials = Credentials.from_options(options)
    if out is not None:
        _check_writable_folder(out.parent if str(out.parent) else Path("."), "--out")

    async def work() -> int:
        async with open_run(credentials, ledger_path) as run:
            full_id = await _job_id(run.client, job_id)
            result = await run.client.download(full_id, out)
            if as_json:
                _echo_json({"event": "download", **dataclasses.asdict(result)})
            else:
                _console().print(f"{result.path}: {_size(result.size)}, sha256 {result.sha256}")
            return EXIT_OK

    return _run_async(work)


@jobs_group.command("replay")
@click.argument("job_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="replay although the guard finds it unjustified or done today (never while running, "
    "in ERROR, or within an hour of the submit)",
)
@ledger_option
@json_option
@credential_options
@verbose_option
def jobs_replay(
    job_id: str, force: bool, ledger_path: Path | None, as_json: bool, **options: Any
) -> int:
    """Replay a job (PUT /Jobs/{Id}/Replay), if the guide's rules allow it. ID may be a unique
    prefix of a job id the ledger knows."""
    credentials = Credentials.from_options(options)

    async def work() -> int:
        async with open_run(credentials, ledger_path) as run:
            outcome = await run.client.replay(await _job_id(run.client, job_id), force=force)
        if as_json:
            _echo_json(
                {
                    "event": "replay",
                    "job_id": outcome.replayed,
                    "new_job_id": outcome.job_id,
                    "rule": outcome.decision.rule,
                    "forced_past": None if outcome.unforced is None else outcome.unforced.rule,
                    "reason": outcome.decision.reason,
                }
            )
            return EXIT_OK
        console = _console()
        console.print(
            f"replayed job {outcome.replayed} ({outcome.decision.rule}: "
            f"{outcome.decision.reason}); follow job {outcome.job_id}"
        )
        if outcome.unforced is not None:
            console.print(
                f"--force was needed: without it the guard refuses ({outcome.unforced.rule}): "
                f"{outcome.unforced.reason}"
            )
        elif force:
            console.print("--force was not needed: the guard allows this replay anyway")
        return EXIT_OK

    return _run_async(work)


# -- ledger ------------------------------------------------------------------------------------


@cli.group("ledger")
def ledger_group() -> None:
    """What the ledger remembers: every export, its job, file and history."""


@asynccontextmanager
async def _existing_ledger(path: Path | str | None) -> AsyncIterator[LedgerStore]:
    where = default_ledger_path(path)
    if not is_ledger_url(where) and not await anyio.Path(where).exists():
        raise click.UsageError(
            f"--ledger: no ledger at {str(where)!r} (a backfill or an export makes one)"
        )
    async with open_ledger(where, read_only=True) as ledger:  # also a read-only or locked file
        yield ledger


def _entry_json(entry: LedgerEntry) -> dict[str, Any]:
    payload = dataclasses.asdict(entry)
    payload["status"] = None if entry.status is None else entry.status.value
    payload.pop("canonical")
    payload.pop("claimed_by")
    payload.pop("claimed_at")
    payload.pop("lease_until")
    payload["filters"] = entry.filters
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in payload.items()}


@ledger_group.command("show")
@click.option("--report", help="only this report's exports")
@ledger_option
@json_option
def ledger_show(report: str | None, ledger_path: Path | None, as_json: bool) -> int:
    """Every export the ledger knows: report, range, job, status, file."""

    async def work() -> int:
        async with _existing_ledger(ledger_path) as ledger:
            entries = await ledger.entries(report_id=report)
        if as_json:
            for entry in entries:
                _echo_json(_entry_json(entry))
            return EXIT_OK
        rows = [
            [
                # A pipe gets the whole fingerprint, as it gets whole job ids.
                Cell(entry.fingerprint[:12], entry.fingerprint),
                entry.report_id or entry.endpoint,
                _entry_range(entry),
                # On a terminal the short id, which `jobs show|download|replay` take as it is.
                None if entry.job_id is None else Cell(entry.job_id[:8], entry.job_id),
                None if entry.status is None else entry.status.value,
                entry.records,
                # People read it from the current folder; a pipe gets the ledger's whole path.
                None
                if entry.file_path is None
                else Cell(_shown_path(entry.file_path), str(entry.file_path)),
                Cell(
                    _size(entry.file_size), "-" if entry.file_size is None else str(entry.file_size)
                ),
            ]
            for entry in entries
        ]
        columns = ("fingerprint", "report", "range", "job", "status", "rows", "file", "bytes")
        console = _console()
        print_table(console, columns, rows, right=("rows", "bytes"))
        # The count is for people: on a pipe it goes to stderr, out of the data.
        print_count(console, f"{len(entries)} exports in {ledger.path}")
        return EXIT_OK

    return _run_async(work)


@ledger_group.command("history")
@click.argument("key")
@ledger_option
@json_option
def ledger_history(key: str, ledger_path: Path | None, as_json: bool) -> int:
    """The events of one export: KEY is a fingerprint, a unique prefix of one, or a job id."""

    async def work() -> int:
        async with _existing_ledger(ledger_path) as ledger:
            entry = await ledger.find(key)
            if entry is None:
                raise click.ClickException(f"no export in {str(ledger.path)!r} matches {key!r}")
            events = await ledger.history(key)
        if as_json:
            for event in events:
                _echo_json({"event": event.kind, **dataclasses.asdict(event)})
            return EXIT_OK
        console = _console()
        console.print(
            f"{entry.fingerprint} {entry.report_id} {_entry_range(entry)} {entry.result_format}"
        )
        rows = [
            [
                _when(event.at),
                event.kind,
                event.job_id,
                ", ".join(f"{k}={v}" for k, v in event.detail.items()),
            ]
            for event in events
        ]
        print_table(console, ("at", "event", "job", "detail"), rows)
        return EXIT_OK

    return _run_async(work)


# -- sandbox -----------------------------------------------------------------------------------


@cli.group("sandbox")
def sandbox_group() -> None:
    """The built-in sandbox: a local server that behaves like the API."""


@sandbox_group.command(
    "serve",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("sandbox_args", nargs=-1, type=click.UNPROCESSED)
def sandbox_serve(sandbox_args: tuple[str, ...]) -> int:
    """Run the sandbox until interrupted (its options: `reportexport sandbox serve --help`).
    The first line of output is JSON with base_url, account_sid and auth_token."""
    from .sandbox.__main__ import main as sandbox_main

    return sandbox_main(list(sandbox_args), prog=f"{PROG} sandbox serve")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `reportexport`; returns the exit code."""
    code: int = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
