"""`reportexport sync`: keep datasets current (REPORT... on the command line, or the named
datasets of a `--config` file), for one account or (`--accounts`) for every account of a file."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, tzinfo
from pathlib import Path

import click
from rich.console import Console

from ..accounts import Account
from ..client import Client
from ..core.freshness import DEFAULT_REFRESH_HOUR, DEFAULT_SETTLE_DAYS
from ..destinations import IntoURL
from ..errors import ConfigurationError
from ..jobs.datasets import in_file, load_datasets
from ..jobs.sync import KINDS, Dataset, SyncOptions, SyncResult
from ..transport.postbacks import PostbackReceiver
from .accounts import (
    AccountReport,
    Notices,
    SummaryColumns,
    chosen,
    report_counts,
    run_accounts,
)
from .credentials import Credentials, default_ledger_path
from .events import echo_json
from .exits import EXIT_FAILED, EXIT_OK, EXIT_PENDING, FileProblem, leaf
from .local_sandbox import sandbox_banner
from .options import (
    DATE,
    AccountsChoice,
    OptionGroup,
    PostbackArgs,
    accounts_options,
    chunk_option,
    credential_options,
    format_option,
    into_option,
    json_option,
    ledger_option,
    out_folder_option,
    param_option,
    postback_options,
    sync_options,
    verbose_option,
)
from .output import calls_text, make_console, moment_text, print_table
from .run import Run, open_run, postback_receiver, run_async
from .view import BackfillView, ended_early

__all__ = ["DATASET_FLAGS", "Datasets", "report_sync", "sync_command", "sync_exit_code"]

#: A dataset's settings, as `Dataset` names them -> the arguments of `sync` that set them.
DATASET_FLAGS: Mapping[str, str] = {
    "reports": "REPORT", "first_day": "--first-day", "chunk": "--chunk", "filters": "--param",
    "result_format": "--format", "out": "--out", "merge": "--merge",
    "settle_days": "--settle-days", "refresh_hour": "--refresh-hour",
}  # fmt: skip


@dataclass(frozen=True)
class Datasets:
    """The datasets to sync, and where the user gave them (`config`: a file; None: the command
    line), for naming a dataset's problem where it can be fixed."""

    items: list[Dataset]
    config: Path | None = None

    def problem(self, error: ConfigurationError) -> click.ClickException:
        """A dataset's problem where the user gave the dataset: the file, the dataset and the
        key (`--config`), or the flag (REPORT... on the command line)."""
        if self.config is not None:
            return FileProblem(str(in_file(self.config, error)))
        return click.UsageError(
            f"{DATASET_FLAGS.get(error.setting, error.setting)}: {error.problem}"
        )

    def problem_of(self, error: BaseException) -> click.ClickException | None:
        """`error` as `problem` says it, when it is a dataset's; else None."""
        if isinstance(error, ConfigurationError) and (
            error.dataset is not None or error.setting in DATASET_FLAGS
        ):
            return self.problem(error)
        return None


def _datasets(
    reports: tuple[str, ...], config_path: Path | None, names: tuple[str, ...],
    first_day: date | None, chunk: str, filters: dict[str, str], result_format: str, out: Path,
    merge: bool, settle_days: int, refresh_hour: int,
) -> Datasets:  # fmt: skip
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
    where = Datasets([], config_path)
    try:
        if config_path is not None:
            return Datasets(load_datasets(config_path, names), config_path)
        if not reports:
            raise click.UsageError("give REPORT... or --config FILE")
        dataset = Dataset(
            "command line", reports, out, first_day=first_day, chunk=chunk, filters=filters,
            result_format=result_format, merge=merge, settle_days=settle_days,
            refresh_hour=refresh_hour,
        )  # fmt: skip
    except ConfigurationError as error:
        raise where.problem(error) from None
    return Datasets([dataset])


datasets_options = OptionGroup(
    "datasets", _datasets,
    click.argument("reports", metavar="[REPORT...]", nargs=-1),
    click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="a TOML file of named datasets (its keys: docs/guides/sync.md); replaces "
                 "REPORT... options"),
    click.option("--dataset", "names", multiple=True, metavar="NAME",
                 help="with --config: only this dataset (repeatable; default: all)"),
    click.option("--first-day", **DATE, help="first day of the dataset (omit: the default range)"),
    chunk_option("1d", "one export per chunk: Nd, week or month"),
    param_option("a report filter, sent as given (repeatable), e.g. SUBAID=123"),
    format_option(),
    out_folder_option(),
    click.option("--merge", is_flag=True, help="also keep <out>/<report>.<ext> whole"),
    click.option("--settle-days", type=int, default=DEFAULT_SETTLE_DAYS, show_default=True,
                 help="days a day's data keeps changing: chunks this recent are refreshed daily"),
    click.option("--refresh-hour", type=int, default=DEFAULT_REFRESH_HOUR, show_default=True,
                 help="hour of the account's day from which the latest day is refreshed"),
)  # fmt: skip


@click.command("sync")
@datasets_options
@into_option()
@sync_options
@ledger_option()
@postback_options
@accounts_options
@credential_options(sandbox=True)
@json_option
@verbose_option
def sync_command(
    datasets: Datasets,
    into: IntoURL | None,
    options: SyncOptions,
    ledger_path: Path | str | None,
    postbacks: PostbackArgs | None,
    accounts: AccountsChoice | None,
    credentials: Credentials,
    as_json: bool,
) -> int:
    """Keep a dataset current: run it once a day (a cron line). New days are submitted,
    the recent days that are still settling are refreshed by replaying their own jobs (at most
    once a day), and what fits nowhere in today's quota waits for the next run."""
    if into is not None:  # every dataset, each in its own schema (over the file's `into`)
        if accounts is not None:
            raise click.UsageError("--into: with --accounts, set `into` per account in the file")
        datasets = replace(datasets, items=[replace(d, into=into) for d in datasets.items])
    console, live = make_console(), sys.stdout.isatty()
    if accounts is not None:
        return _sync_accounts(
            datasets.items, options, accounts, credentials, ledger_path, console,
            postbacks=postbacks, live=live, as_json=as_json,
        )  # fmt: skip

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            sandbox_banner(run.sandbox, console, as_json)
            return await run_sync(
                run, datasets, options, postbacks, console, live=live, as_json=as_json
            )

    return run_async(work)


async def run_sync(
    run: Run,
    datasets: Datasets,
    options: SyncOptions,
    postbacks: PostbackArgs | None,
    console: Console,
    *,
    live: bool,
    as_json: bool,
) -> int:
    """One sync of the account's datasets, displayed; returns the exit code."""
    client = run.client
    view = BackfillView.for_client(client, console, live=live, as_json=as_json)
    try:
        async with postback_receiver(run, postbacks, console, as_json=as_json) as receiver:
            with view:
                result = await client.sync(
                    datasets.items, options=options, on_event=view, postbacks=receiver
                )
    except BaseException as raised:
        # A dataset's problem that sync finds before any call (a first day in the future,
        # --out) is said where the user gave the dataset.
        problem = datasets.problem_of(leaf(raised))
        ended_early(problem or raised, view, client.ledger.path, as_json=as_json)
        if problem is not None:
            raise problem from None
        raise
    return report_sync(
        result, console, as_json=as_json, zone=client.limiter.timezone,
        offset=client.clock.offset,
    )  # fmt: skip


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
            echo_json({
                "event": "dataset", "name": item.dataset.name, "account_day": item.today,
                "last_complete_day": item.last_day, "counts": item.counts, "cost": item.cost,
                "merged": [str(p) for p in item.merged], "dry_run": item.dry_run,
                "manifest": None if item.manifest_path is None else str(item.manifest_path),
                "pending_resets_at": item.pending_resets_at, "deferred_until": item.deferred_until,
            })  # fmt: skip
        offset = result.server_offset
        echo_json({"event": "summary", "counts": counts, "calls": dict(result.calls),
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
                f"{moment_text(item.deferred_until, zone, offset)} (the latest day is refreshed "
                "later in the day): nothing was spent on them"
            )
        if item.pending_resets_at is not None:
            console.print(
                f"[yellow]{counts['pending']} chunks wait for the daily ReportExport quota[/] "
                f"(resets at {moment_text(item.pending_resets_at, zone, offset)}): the next run "
                "takes them"
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
        console.print(f"API calls: {calls_text(result.calls)}")
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


# -- --accounts ----------------------------------------------------------------------------------


def _sync_accounts(
    datasets: Sequence[Dataset],
    options: SyncOptions,
    choice: AccountsChoice,
    credentials: Credentials,
    ledger_path: Path | str | None,
    console: Console,
    *,
    postbacks: PostbackArgs | None,
    live: bool,
    as_json: bool,
) -> int:
    """Every account syncs the same datasets, each dataset's files of an account in
    `<dataset's out>/<account name>/`."""
    picked = chosen(choice, credentials, "sync")
    if isinstance(picked, int):
        return picked
    shared = [d.name for d in datasets if d.into is not None]
    if shared and len(picked) > 1 and not all(a.into is not None for a in picked):
        raise ConfigurationError(
            "into",
            f"dataset {shared[0]!r} would load several accounts into one destination: set "
            "`into` per account in the accounts file",
        )

    async def one(
        client: Client, account: Account, on_event: Notices, receiver: PostbackReceiver | None
    ) -> AccountReport:
        own = [
            replace(dataset, out=dataset.out / account.name, into=account.into or dataset.into)
            for dataset in datasets
        ]
        result = await client.sync(own, options=options, on_event=on_event, postbacks=receiver)
        return _account_report(account.name, result, client)

    return run_accounts(
        picked, one, SYNC, postbacks=postbacks, ledger_path=default_ledger_path(ledger_path),
        parallel=choice.parallel, console=console, live=live, as_json=as_json,
        dry_run=options.dry_run,
    )  # fmt: skip


SYNC_COLUMNS = ("new", "refreshed", "deferred", "final", "fresh", "history", "pending", "failed")


def _account_cells(report: AccountReport) -> list[object]:
    counts = report_counts(report)
    counts["refreshed"] = counts["refresh"]
    counts["failed"] += counts["stuck"]
    return [str(counts[name]) for name in SYNC_COLUMNS]


def _kinds_text(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[kind]} {kind}" for kind in KINDS if counts[kind]) or "no chunk"


SYNC = SummaryColumns(
    SYNC_COLUMNS, _account_cells, lambda report: _kinds_text(report_counts(report))
)


def _account_report(name: str, result: SyncResult, client: Client) -> AccountReport:
    code = sync_exit_code(result)
    counts = result.counts
    calls = dict(result.calls)
    zone: tzinfo | None = client.limiter.timezone
    if code == EXIT_FAILED:
        bad = [c for d in result.datasets for c in d.chunks if c.outcome in ("failed", "stuck")]
        first = f": {bad[0].report_id} {bad[0].start}: {bad[0].reason}" if bad else ""
        reason = f"{counts['failed'] + counts['stuck']} chunks failed or stuck{first}"
        return AccountReport(name, code, "failed", reason, result, calls)
    if code == EXIT_PENDING:
        resets = [d.pending_resets_at for d in result.datasets if d.pending_resets_at]
        when = f" (resets at {moment_text(min(resets), zone)})" if resets else ""
        reason = f"{counts['pending']} chunks wait for the daily ReportExport quota{when}"
        return AccountReport(name, code, "quota", reason, result, calls)
    return AccountReport(name, EXIT_OK, "complete", None, result, calls)
