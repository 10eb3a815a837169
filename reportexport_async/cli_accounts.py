"""`reportexport backfill|sync ... --accounts accounts.toml [--account NAME ...]`: one backfill
(or one sync of the same datasets) per account of an accounts file, a bounded number at a time,
each with its own client and limits, all sharing one ledger; each account's files go to
`<out>/<name>/` (with sync: `<dataset's out>/<name>/` for each dataset).

One account's refused token, spent quota or outage never stops the others: each account ends with
its own exit code and reason, shown as they finish (one JSON line each with `--json`) and in the
summary. The run's exit code is 0 when every account completed, otherwise the most serious of the
accounts' codes in the order 1 (chunks failed, host unreachable, outage), 2 (credentials
refused, bad input), 3 (waiting for the daily quota), 4 (deferred).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .accounts import Account, load_accounts, run_per_account, select_accounts
from .cli import (
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    PROG,
    BackfillArgs,
    PostbackArgs,
    _calls_text,
    _echo_json,
    _end_json,
    _event_json,
    _exit_code,
    _moment,
    _run_async,
    _size,
    postback_receiver,
    quota_spent_text,
    sync_exit_code,
)
from .cli_output import Cell, print_table
from .client import Client
from .core.responses import account_problem
from .errors import (
    AccountUnavailable,
    ConfigurationError,
    LedgerError,
    QuotaExhausted,
    ReportExportError,
)
from .ledger import DEFAULT_LEDGER_PATH
from .orchestrator import BackfillResult, ExportSpec, ProgressEvent
from .postbacks import PostbackReceiver
from .sync import KINDS, Dataset, SyncOptions, SyncResult

__all__ = [
    "SEVERITY",
    "AccountReport",
    "backfill_accounts",
    "overall_code",
    "run_accounts",
    "sync_accounts",
]

#: The events of an account's run that are shown (the chunks' own progress is not: thousands of
#: accounts would drown the screen; their outcome is).
NOTICES = frozenset({"wait", "quota", "retry", "error", "stopped", "duplicate"})

#: Which account outcome decides the run's exit code when several differ: the first found.
SEVERITY = (EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_DEFERRED)


@dataclass
class AccountReport:
    """One account's end: its exit code, a one-word status and the reason (None when done)."""

    name: str
    code: int
    status: str
    reason: str | None
    result: BackfillResult | SyncResult | None = None
    calls: dict[str, int] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        result = self.result
        found: dict[str, Any] = {
            "event": "account",
            "account": self.name,
            "status": self.status,
            "exit_code": self.code,
            "reason": self.reason,
            "counts": None if result is None else result.counts,
            "calls": self.calls,
        }
        if isinstance(result, SyncResult):
            found["manifests"] = [
                str(item.manifest_path) for item in result.datasets if item.manifest_path
            ]
        else:
            found["manifest"] = (
                None if result is None or result.manifest_path is None
                else str(result.manifest_path)
            )  # fmt: skip
        return found


#: What runs for one account: (its client, the account, its notices, the shared postback
#: receiver) -> its report.
Notices = Callable[[ProgressEvent], None]
AccountWork = Callable[
    [Client, Account, Notices, "PostbackReceiver | None"], Awaitable[AccountReport]
]


@dataclass(frozen=True)
class SummaryColumns:
    """The summary table's columns that differ between commands: their names, an account's
    cells, and the words after "complete" as an account finishes."""

    names: tuple[str, ...]
    cells: Callable[[AccountReport], Sequence[object]]
    done: Callable[[AccountReport], str]


def _counts(report: AccountReport) -> Counter[str]:
    return Counter(report.result.counts if report.result is not None else {})


def _backfill_cells(report: AccountReport) -> list[object]:
    result = report.result
    counts = _counts(report)
    size = None
    if isinstance(result, BackfillResult):
        size = sum(run.size or 0 for run in result.chunks if run.status == "done")
    return [
        "-" if not isinstance(result, BackfillResult) else str(len(result.chunks)),
        str(counts["done"]),
        str(counts["failed"] + counts["stuck"]),
        str(counts["pending"]),
        str(counts["deferred"]),
        _size(size) if size is None else Cell(_size(size), str(size)),
    ]


def _sync_cells(report: AccountReport) -> list[object]:
    counts = _counts(report)
    counts["refreshed"] = counts["refresh"]
    counts["failed"] += counts["stuck"]
    return [str(counts[name]) for name in SYNC_COLUMNS]


SYNC_COLUMNS = ("new", "refreshed", "deferred", "final", "fresh", "history", "pending", "failed")
BACKFILL = SummaryColumns(
    ("chunks", "done", "failed", "pending", "deferred", "bytes"),
    _backfill_cells,
    lambda report: f"{_counts(report)['done']} chunks",
)
SYNC = SummaryColumns(
    SYNC_COLUMNS,
    _sync_cells,
    lambda report: (
        ", ".join(f"{_counts(report)[kind]} {kind}" for kind in KINDS if _counts(report)[kind])
        or "no chunk"
    ),
)


def _from_result(name: str, result: BackfillResult, client: Client) -> AccountReport:
    code = _exit_code(result)
    counts = result.counts
    zone = client.limiter.timezone
    calls = dict(result.calls)
    if code == EXIT_FAILED:
        bad = [run for run in result.chunks if run.status in ("failed", "stuck")]
        first = f": {bad[0].label}: {bad[0].error}" if bad and bad[0].error else ""
        reason = f"{counts['failed'] + counts['stuck']} chunks failed or stuck{first}"
        return AccountReport(name, code, "failed", reason, result, calls)
    if code == EXIT_PENDING:
        reason = (
            f"{counts['pending']} chunks wait for the daily ReportExport quota (resets at "
            f"{_moment(result.pending_resets_at, zone)})"
        )
        return AccountReport(name, code, "quota", reason, result, calls)
    if code == EXIT_DEFERRED:
        reason = (
            f"{counts['deferred']} chunks deferred until {_moment(result.deferred_until, zone)}"
        )
        return AccountReport(name, code, "deferred", reason, result, calls)
    return AccountReport(name, EXIT_OK, "complete", None, result, calls)


def _from_sync(name: str, result: SyncResult, client: Client) -> AccountReport:
    code = sync_exit_code(result)
    counts = result.counts
    calls = dict(result.calls)
    zone = client.limiter.timezone
    if code == EXIT_FAILED:
        bad = [c for d in result.datasets for c in d.chunks if c.outcome in ("failed", "stuck")]
        first = f": {bad[0].report_id} {bad[0].start}: {bad[0].reason}" if bad else ""
        reason = f"{counts['failed'] + counts['stuck']} chunks failed or stuck{first}"
        return AccountReport(name, code, "failed", reason, result, calls)
    if code == EXIT_PENDING:
        resets = [d.pending_resets_at for d in result.datasets if d.pending_resets_at]
        when = f" (resets at {_moment(min(resets), zone)})" if resets else ""
        reason = f"{counts['pending']} chunks wait for the daily ReportExport quota{when}"
        return AccountReport(name, code, "quota", reason, result, calls)
    return AccountReport(name, EXIT_OK, "complete", None, result, calls)


def _from_error(name: str, error: Exception) -> AccountReport:
    partial = None
    problem = account_problem(error)
    if problem is not None and not isinstance(error, AccountUnavailable):
        # A refused token or an unreachable host seen before a run began (sync's clock check,
        # --check-reports): the same account-wide stop as one seen during it.
        error = AccountUnavailable(problem, cast(ReportExportError, error))
    if isinstance(error, AccountUnavailable):
        code = EXIT_USAGE if error.problem == "credentials" else EXIT_FAILED
        if isinstance(error.result, BackfillResult):
            partial = error.result
        report = AccountReport(name, code, error.problem, f"stopped: {error}", partial)
        if partial is not None:
            report.calls = dict(partial.calls)
        return report
    if isinstance(error, (ConfigurationError, LedgerError)):
        return AccountReport(name, EXIT_USAGE, "usage", str(error))
    if isinstance(error, QuotaExhausted):
        return AccountReport(name, EXIT_PENDING, "quota", str(error))
    text = str(error) or type(error).__name__
    return AccountReport(name, EXIT_FAILED, "error", f"{type(error).__name__}: {text}")


def overall_code(reports: Sequence[AccountReport]) -> int:
    """0 when every account completed, else the most serious code present (`SEVERITY`)."""
    codes = {report.code for report in reports}
    return next((code for code in SEVERITY if code in codes), EXIT_OK)


def _print_summary(
    console: Console, reports: Sequence[AccountReport], columns: SummaryColumns, dry_run: bool
) -> None:
    """One row per account: a table on a terminal, tab-separated lines under a header on a
    pipe (as a single account's summary)."""
    style = {EXIT_OK: "green", EXIT_PENDING: "yellow", EXIT_DEFERRED: "yellow"}
    rows = [
        [
            report.name,
            Cell(f"[{style.get(report.code, 'red')}]{report.status}[/]", report.status),
            *columns.cells(report),
            str(sum(report.calls.values())),
            str(report.code),
        ]
        for report in reports
    ]
    figures = (*columns.names, "calls", "exit")
    print_table(
        console, ("account", "result", *figures), rows,
        title="dry run: nothing submitted" if dry_run else None, right=figures,
        header_on_pipe=True,
    )  # fmt: skip


def _closing_lines(reports: Sequence[AccountReport], code: int) -> list[str]:
    # Each account's own reason was said as it finished: here, only who, grouped.
    complete = sum(1 for report in reports if report.code == EXIT_OK)
    lines = [f"{complete} of {len(reports)} accounts complete"]
    groups: dict[tuple[int, str], list[str]] = {}
    for report in reports:
        if report.code != EXIT_OK:
            groups.setdefault((report.code, report.status), []).append(report.name)
    for (account_code, status), names in sorted(groups.items()):
        lines.append(f"{status} (exit {account_code}): {', '.join(names)}")
    lines.append(f"exit code {code}" + ("" if code == EXIT_OK else " (see the accounts above)"))
    return lines


def refuse_with_accounts(options: dict[str, Any]) -> None:
    """The single-account options that an accounts file replaces."""
    clashing = {
        "sandbox": "--sandbox",
        "account_sid": "--account-sid",
        "auth_token_file": "--auth-token-file",
        "account_type": "--account-type",
        "base_url": "--base-url",
        "hourly_limit": "--hourly-limit",
        "daily_report_export": "--daily-report-export",
        "daily_click_export": "--daily-click-export",
    }
    given = [flag for name, flag in clashing.items() if options.get(name)]
    if given:
        raise click.UsageError(
            f"--accounts names every account and its limits: drop {', '.join(given)}"
        )


def chosen(
    path: Path | None, names: Sequence[str], options: dict[str, Any], command: str
) -> list[Account] | int:
    """`--accounts FILE [--account NAME ...]`: the accounts chosen, or the usage exit code after
    printing every mistake of the file, one line each."""
    if path is None:
        raise click.UsageError("--account needs --accounts FILE")
    refuse_with_accounts(options)
    try:
        return load_selected(path, names)
    except ConfigurationError as error:
        return usage_lines(error, command)


def load_selected(path: Path, names: Sequence[str]) -> list[Account]:
    """The accounts chosen from the file; every mistake printed as its own line (exit 2)."""
    accounts = load_accounts(path)
    return select_accounts(accounts, names, path=path)


def backfill_accounts(
    args: BackfillArgs,
    accounts: Sequence[Account],
    *,
    ledger_path: Path | str | None,
    parallel: int,
    console: Console,
    live: bool,
    as_json: bool,
) -> int:
    specs = [ExportSpec(r, dict(args.filters), args.result_format) for r in args.reports]
    options = args.options()

    async def one(
        client: Client, account: Account, on_event: Notices, receiver: PostbackReceiver | None
    ) -> AccountReport:
        result = await client.backfill(
            specs, args.start, args.end, out=args.out / account.name, options=options,
            postbacks=receiver, on_event=on_event, into=account.into,
        )  # fmt: skip
        return _from_result(account.name, result, client)

    return run_accounts(
        accounts, one, BACKFILL, postbacks=args.postbacks, ledger_path=ledger_path,
        parallel=parallel, console=console, live=live, as_json=as_json, dry_run=args.dry_run,
    )  # fmt: skip


def sync_accounts(
    datasets: Sequence[Dataset],
    options: SyncOptions,
    accounts: Sequence[Account],
    *,
    ledger_path: Path | str | None,
    parallel: int,
    console: Console,
    live: bool,
    as_json: bool,
    postbacks: PostbackArgs | None = None,
) -> int:
    """`sync ... --accounts`: every account syncs the same datasets, each dataset's files of an
    account in `<dataset's out>/<account name>/`."""

    shared = [d.name for d in datasets if d.into is not None]
    if shared and len(accounts) > 1 and not all(a.into is not None for a in accounts):
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
        return _from_sync(account.name, result, client)

    return run_accounts(
        accounts, one, SYNC, postbacks=postbacks, ledger_path=ledger_path, parallel=parallel,
        console=console, live=live, as_json=as_json, dry_run=options.dry_run,
    )  # fmt: skip


def run_accounts(
    accounts: Sequence[Account],
    work: AccountWork,
    table: SummaryColumns,
    *,
    postbacks: PostbackArgs | None,
    ledger_path: Path | str | None,
    parallel: int,
    console: Console,
    live: bool,
    as_json: bool,
    dry_run: bool,
) -> int:
    """`work` for every account through `run_per_account`: each account's end shown as it
    finishes (a JSON line with `--json`), its notices named, then the summary; the exit code."""
    reports: dict[str, AccountReport] = {}

    async def run_all() -> int:
        # One receiver for every account's jobs (it wakes a job by its id, whoever waits).
        async with postback_receiver(None, postbacks, console, as_json=as_json) as receiver:
            with Progress(
                TextColumn("accounts"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=True,
                disable=not live or as_json,
            ) as progress:
                bar = progress.add_task("", total=len(accounts))

                def finished(report: AccountReport) -> None:
                    reports[report.name] = report
                    failed = sum(1 for r in reports.values() if r.code != EXIT_OK)
                    progress.update(bar, advance=1, description=f"{failed} not complete")
                    if as_json:
                        _echo_json(report.json())
                    elif report.code != EXIT_OK:
                        progress.console.print(
                            f"[red]{report.name}[/]: {report.status}: {report.reason}"
                        )
                    elif not live:
                        progress.console.print(f"{report.name}: complete ({table.done(report)})")

                def notices(name: str) -> Notices:
                    """An account's waits, quota stops, retries and errors, named: nothing
                    waits without saying what for and until when."""

                    told: set[tuple[str, str | None]] = set()

                    def show(event: ProgressEvent) -> None:
                        if event.kind not in NOTICES:
                            return
                        if as_json:
                            _echo_json({**_event_json(event), "account": name})
                            return
                        if event.kind == "stopped":  # its closing line says it, once
                            return
                        # Once per account: every submitter that meets the spent quota says
                        # so, with its own few chunks; people need it said once, whole.
                        said = (event.kind, None if event.kind == "quota" else event.message)
                        if said in told:
                            return
                        told.add(said)
                        message = event.message
                        if event.kind == "quota":
                            zone = None if event.until is None else event.until.tzinfo
                            message = quota_spent_text(event.until, zone)
                        progress.console.print(
                            f"{name}: {event.kind}: {message}", markup=False, highlight=False
                        )

                    return show

                async def one(client: Client, account: Account) -> AccountReport:
                    try:
                        report = await work(client, account, notices(account.name), receiver)
                    except Exception as error:
                        report = _from_error(account.name, error)
                        if not report.calls:  # stopped before a run: the client's own count
                            report.calls = dict(client.usage.calls)
                        finished(report)
                        raise
                    finished(report)
                    return report

                outcomes = await run_per_account(
                    accounts, one, ledger=ledger_path or DEFAULT_LEDGER_PATH, concurrency=parallel
                )
                for outcome in outcomes:
                    if outcome.account.name not in reports:
                        # Its client could not even open: still its own outcome, and said so.
                        error = outcome.error or RuntimeError("no result")
                        finished(_from_error(outcome.account.name, error))
        ordered = [reports[account.name] for account in accounts]
        code = overall_code(ordered)
        if as_json:
            _echo_json(
                {
                    "event": "summary",
                    "accounts": len(ordered),
                    "complete": sum(1 for r in ordered if r.code == EXIT_OK),
                    "not_complete": {r.name: r.code for r in ordered if r.code != EXIT_OK},
                    "counts": _total_counts(ordered),
                    "calls": _total_calls(ordered),
                    "exit_code": code,
                }
            )
            return code
        _print_summary(console, ordered, table, dry_run)
        console.print(f"API calls: {_calls_text(_total_calls(ordered))}")
        for line in _closing_lines(ordered, code):
            console.print(line)
        return code

    return _run_async(run_all)


def _total_counts(reports: Sequence[AccountReport]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(_counts(report))
    return dict(total)


def _total_calls(reports: Sequence[AccountReport]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.calls)
    return dict(total)


def usage_lines(error: ConfigurationError, command: str = "backfill") -> int:
    """Print an accounts file's mistakes, one `error:` line each; the usage exit code."""
    problems = getattr(error, "problems", None) or [str(error)]
    for problem in problems:
        click.echo(f"{PROG} {command}: error: {problem}", err=True)
    _end_json("; ".join(problems), EXIT_USAGE)
    return EXIT_USAGE
