"""`reportexport backfill REPORT... --start DATE --end DATE`: pull a date range, one export per
chunk, for one account or (`--accounts`) for every account of a file."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..accounts import Account
from ..client import Client
from ..core.chunking import Chunk
from ..destinations import IntoURL
from ..jobs.orchestrator import BackfillOptions, BackfillResult, ExportSpec
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
from .exits import (
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    check_could_write,
    check_writable_folder,
)
from .local_sandbox import sandbox_banner
from .options import (
    AccountsChoice,
    Output,
    PostbackArgs,
    accounts_options,
    backfill_options,
    credential_options,
    json_option,
    ledger_option,
    output_options,
    postback_options,
    verbose_option,
    window_options,
)
from .output import Cell, calls_text, make_console, moment_text, print_table, rows_text, size_text
from .run import Run, open_run, postback_receiver, run_async
from .view import BackfillView, ended_early
from .wording import PROG

__all__ = ["Backfill", "backfill_command", "backfill_exit_code", "run_backfill"]


@dataclass(frozen=True)
class Backfill:
    """A backfill as the command line asks for it: the exports, the range, where, how."""

    specs: list[ExportSpec]
    window: Chunk
    out: Path
    options: BackfillOptions
    postbacks: PostbackArgs | None = None
    into: IntoURL | None = None

    async def run(
        self,
        client: Client,
        on_event: Notices,
        receiver: PostbackReceiver | None,
        *,
        out: Path | None = None,
        into: IntoURL | None = None,
    ) -> BackfillResult:
        return await client.backfill(
            self.specs, self.window.start, self.window.end, out=out or self.out,
            options=self.options, on_event=on_event, postbacks=receiver, into=into or self.into,
        )  # fmt: skip

    def command(self) -> str:
        """The arguments as a command line (for the demo's display)."""
        words = [PROG, "backfill", *(spec.report_id for spec in self.specs)]
        words += ["--start", str(self.window.start), "--end", str(self.window.end)]
        words += ["--chunk", str(self.options.chunk), "--out", str(self.out)]
        return " ".join(words)


@click.command("backfill")
@click.argument("reports", metavar="REPORT...", nargs=-1, required=True)
@window_options(required=True, start_help="first day (YYYY-MM-DD)",
                end_help="last day (YYYY-MM-DD), inclusive")  # fmt: skip
@backfill_options
@output_options
@ledger_option(sandbox=True)
@postback_options
@accounts_options
@credential_options(sandbox=True, outage=True)
@json_option
@verbose_option
def backfill_command(
    reports: tuple[str, ...],
    window: Chunk,
    options: BackfillOptions,
    output: Output,
    ledger_path: Path | str | None,
    postbacks: PostbackArgs | None,
    accounts: AccountsChoice | None,
    credentials: Credentials,
    as_json: bool,
) -> int:
    """Pull REPORT... over --start..--end into --out, one export per chunk.

    Nothing is submitted twice: the ledger remembers every chunk, so a second run of the same
    command costs no call for what is done, and an interrupted or quota-limited run continues
    where it stopped.
    """
    if options.dry_run:
        check_could_write(output.out, "--out")  # and make nothing: a dry run leaves no trace
    else:
        check_writable_folder(output.out, "--out")
    if output.into is not None and accounts is not None:
        raise click.UsageError("--into: with --accounts, set `into` per account in the file")
    backfill = Backfill(
        output.specs(reports), window, output.out, options, postbacks, into=output.into
    )
    console, live = make_console(), sys.stdout.isatty()
    if accounts is not None:
        return _backfill_accounts(
            backfill, accounts, credentials, ledger_path, console, live=live, as_json=as_json
        )

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            sandbox_banner(run.sandbox, console, as_json)
            _, code = await run_backfill(run, backfill, console, live=live, as_json=as_json)
            return code

    return run_async(work)


async def run_backfill(
    run: Run, backfill: Backfill, console: Console, *, live: bool, as_json: bool
) -> tuple[BackfillResult, int]:
    """One backfill through the orchestrator, displayed; returns the result and the exit code."""
    client = run.client
    view = BackfillView.for_client(client, console, live=live, as_json=as_json)
    try:
        async with postback_receiver(run, backfill.postbacks, console, as_json=as_json) as receiver:
            with view:
                result = await backfill.run(client, view, receiver)
    except BaseException as raised:
        ended_early(raised, view, client.ledger.path, as_json=as_json)
        raise
    # `result.calls` are this backfill's own (the demo's client made others before).
    return result, report_result(
        result, console, as_json=as_json, calls=dict(result.calls),
        zone=client.limiter.timezone, offset=client.clock.offset,
    )  # fmt: skip


def backfill_exit_code(result: BackfillResult) -> int:
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
                rows_text([run.records for run in done]),
                Cell(size_text(size), str(size)),
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
    code = backfill_exit_code(result)
    if as_json:
        echo_json(
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
    console.print(f"API calls: {calls_text(calls)}")
    for run in result.chunks:
        if run.status in ("failed", "stuck"):
            console.print(f"[red]{run.status}[/]: {run.label}: {run.error}")
    if result.counts["pending"]:
        console.print(
            f"[yellow]{result.counts['pending']} chunks wait for the daily ReportExport quota"
            f"[/] (resets at {moment_text(result.pending_resets_at, zone, offset)}): run the same "
            "command again after that, or pass --wait-for-quota"
        )
    if result.counts["deferred"]:
        console.print(
            f"[yellow]{result.counts['deferred']} chunks are deferred[/] until "
            f"{moment_text(result.deferred_until, zone, offset)}: run the same command again after "
            "that, or pass --wait-for-replays"
        )
    for path in result.merged:
        console.print(f"merged: {path}")
    console.print(f"manifest: {result.manifest_path}")
    return code


# -- --accounts ----------------------------------------------------------------------------------


def _backfill_accounts(
    backfill: Backfill,
    choice: AccountsChoice,
    credentials: Credentials,
    ledger_path: Path | str | None,
    console: Console,
    *,
    live: bool,
    as_json: bool,
) -> int:
    """The backfill for every account chosen, each into `<out>/<name>`."""
    picked = chosen(choice, credentials, "backfill")
    if isinstance(picked, int):
        return picked

    async def one(
        client: Client,
        account: Account,
        on_event: Notices,
        receiver: PostbackReceiver | None,
    ) -> AccountReport:
        result = await backfill.run(
            client, on_event, receiver, out=backfill.out / account.name, into=account.into
        )
        return _account_report(account.name, result, client)

    return run_accounts(
        picked, one, BACKFILL, postbacks=backfill.postbacks,
        ledger_path=default_ledger_path(ledger_path), parallel=choice.parallel, console=console,
        live=live, as_json=as_json, dry_run=backfill.options.dry_run,
    )  # fmt: skip


def _account_cells(report: AccountReport) -> list[object]:
    result = report.result
    counts = report_counts(report)
    size = None
    if isinstance(result, BackfillResult):
        size = sum(run.size or 0 for run in result.chunks if run.status == "done")
    return [
        "-" if not isinstance(result, BackfillResult) else str(len(result.chunks)),
        str(counts["done"]),
        str(counts["failed"] + counts["stuck"]),
        str(counts["pending"]),
        str(counts["deferred"]),
        size_text(size) if size is None else Cell(size_text(size), str(size)),
    ]


BACKFILL = SummaryColumns(
    ("chunks", "done", "failed", "pending", "deferred", "bytes"),
    _account_cells,
    lambda report: f"{report_counts(report)['done']} chunks",
)


def _account_report(name: str, result: BackfillResult, client: Client) -> AccountReport:
    code = backfill_exit_code(result)
    counts = result.counts
    zone: tzinfo | None = client.limiter.timezone
    calls = dict(result.calls)
    if code == EXIT_FAILED:
        bad = [run for run in result.chunks if run.status in ("failed", "stuck")]
        first = f": {bad[0].label}: {bad[0].error}" if bad and bad[0].error else ""
        reason = f"{counts['failed'] + counts['stuck']} chunks failed or stuck{first}"
        return AccountReport(name, code, "failed", reason, result, calls)
    if code == EXIT_PENDING:
        reason = (
            f"{counts['pending']} chunks wait for the daily ReportExport quota (resets at "
            f"{moment_text(result.pending_resets_at, zone)})"
        )
        return AccountReport(name, code, "quota", reason, result, calls)
    if code == EXIT_DEFERRED:
        reason = (
            f"{counts['deferred']} chunks deferred until {moment_text(result.deferred_until, zone)}"
        )
        return AccountReport(name, code, "deferred", reason, result, calls)
    return AccountReport(name, EXIT_OK, "complete", None, result, calls)
