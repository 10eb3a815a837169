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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..accounts import Account, load_accounts, run_per_account, select_accounts
from ..client import Client
from ..core.responses import account_problem
from ..errors import (
    AccountUnavailable,
    ConfigurationError,
    LedgerError,
    QuotaExhausted,
    ReportExportError,
)
from ..jobs.orchestrator import BackfillResult, ProgressEvent
from ..jobs.sync import SyncResult
from ..ledger import DEFAULT_LEDGER_PATH
from ..transport.postbacks import PostbackReceiver
from .credentials import Credentials
from .events import echo_json, event_json, quota_spent_text
from .exits import EXIT_DEFERRED, EXIT_FAILED, EXIT_OK, EXIT_PENDING, EXIT_USAGE, end_json
from .options import AccountsChoice, PostbackArgs
from .output import Cell, calls_text, print_table
from .run import postback_receiver, run_async
from .wording import PROG

__all__ = [
    "SEVERITY",
    "AccountReport",
    "AccountWork",
    "Notices",
    "SummaryColumns",
    "chosen",
    "overall_code",
    "report_counts",
    "run_accounts",
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


def report_counts(report: AccountReport) -> Counter[str]:
    return Counter(report.result.counts if report.result is not None else {})


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


def chosen(choice: AccountsChoice, credentials: Credentials, command: str) -> list[Account] | int:
    """`--accounts FILE [--account NAME ...]`: the accounts chosen, or the usage exit code after
    printing every mistake of the file, one line each. The single account's options, which the
    file replaces, are a usage error."""
    if choice.path is None:
        raise click.UsageError("--account needs --accounts FILE")
    given = credentials.given()
    if given:
        raise click.UsageError(
            f"--accounts names every account and its limits: drop {', '.join(given)}"
        )
    try:
        return select_accounts(load_accounts(choice.path), choice.names, path=choice.path)
    except ConfigurationError as error:
        return _usage_lines(error, command)


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
                        echo_json(report.json())
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
                            echo_json({**event_json(event), "account": name})
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
            echo_json(
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
        console.print(f"API calls: {calls_text(_total_calls(ordered))}")
        for line in _closing_lines(ordered, code):
            console.print(line)
        return code

    return run_async(run_all)


def _total_counts(reports: Sequence[AccountReport]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report_counts(report))
    return dict(total)


def _total_calls(reports: Sequence[AccountReport]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.calls)
    return dict(total)


def _usage_lines(error: ConfigurationError, command: str = "backfill") -> int:
    """Print an accounts file's mistakes, one `error:` line each; the usage exit code."""
    problems = getattr(error, "problems", None) or [str(error)]
    for problem in problems:
        click.echo(f"{PROG} {command}: error: {problem}", err=True)
    end_json("; ".join(problems), EXIT_USAGE)
    return EXIT_USAGE
