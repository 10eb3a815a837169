"""`reportexport jobs list|show|download|replay`: the account's jobs, by id or by a unique
prefix of an id the ledger knows (only this account's: job ids are the server's, and another
account in the same ledger may use the same ones)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import anyio
import click

from ..client import Client
from ..core.models import Job
from ..ledger import LedgerEntry
from ..ledger.store import is_ledger_url, open_ledger
from ..transport.api import ReportExportClient
from ..transport.config import ClientConfig
from .credentials import Credentials, default_ledger_path
from .events import echo_json
from .exits import EXIT_OK, check_writable_folder
from .ledger import entry_json, entry_range
from .options import (
    DATE,
    credential_options,
    json_option,
    ledger_option,
    stacked,
    verbose_option,
)
from .output import make_console, print_count, print_table, shown_path, size_text, when_text
from .run import open_run, run_async

__all__ = ["job_by_prefix", "jobs_group"]


#: What every jobs command takes: the ledger, --json, the account and -v.
account_options = stacked(ledger_option(), json_option, credential_options(), verbose_option)


@click.group("jobs")
def jobs_group() -> None:
    """The account's jobs: list, show, download, replay."""


def job_by_prefix(given: str, known: Iterable[str]) -> str:
    """A job id, or a unique prefix of one of the `known` ids (the ledger's, as `git` takes a
    short hash); an ambiguous prefix is a usage error before any call. An id nothing knows is
    used as given (the account may have jobs this ledger never saw)."""
    ids = set(known)
    if given in ids:
        return given
    matches = sorted(job_id for job_id in ids if job_id.startswith(given))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:4]) + (", ..." if len(matches) > 4 else "")
        raise click.UsageError(
            f"ID: {given!r} starts {len(matches)} jobs in the ledger ({shown}); give more of it"
        )
    return given


async def _known_entries(
    ledger_path: Path | str | None, config: ClientConfig
) -> dict[str, LedgerEntry]:
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
    return config.account_key


async def _job_id(client: Client, given: str) -> str:
    """ID, or a unique prefix of one of the account's job ids in the client's ledger."""
    return job_by_prefix(given, _by_job(await client.ledger.entries(account=client.account)))


def _job_json(job: Job, entry: LedgerEntry | None) -> dict[str, Any]:
    payload = job.model_dump(mode="json", by_alias=False, exclude_none=True)
    if entry is not None:
        payload["ledger"] = entry_json(entry)
    return payload


@jobs_group.command("list")
@click.option("--since", **DATE, help="jobs created on or after this day")
@account_options
def jobs_list(
    since: date | None, ledger_path: Path | str | None, as_json: bool, credentials: Credentials
) -> int:
    """Jobs of the account (one listing call per page), with what the ledger knows of them."""
    config = credentials.config(sandbox_offered=False)

    async def work() -> int:
        known = await _known_entries(ledger_path, config)
        async with ReportExportClient(config) as client:
            jobs = await client.list_jobs(created_after=since)
        if as_json:
            for job in jobs:
                echo_json(_job_json(job, known.get(job.id)))
            return EXIT_OK
        rows = []
        for job in jobs:
            entry = known.get(job.id)
            rows.append(
                [
                    job.id,
                    job.status.value,
                    when_text(job.created_date),
                    when_text(job.completed_date),
                    job.records_processed,
                    None if entry is None else entry.report_id,
                    None if entry is None else entry_range(entry),
                ]
            )
        columns = ("job", "status", "created", "completed", "rows", "report", "range")
        console = make_console()
        print_table(console, columns, rows, right=("rows",), whole=("job",))
        print_count(console, f"{len(rows)} jobs" + (f" created since {since}" if since else ""))
        return EXIT_OK

    return run_async(work)


@jobs_group.command("show")
@click.argument("job_id", metavar="ID")
@account_options
def jobs_show(
    job_id: str, ledger_path: Path | str | None, as_json: bool, credentials: Credentials
) -> int:
    """One job (one call), with what the ledger knows of it. ID may be a unique prefix of a
    job id the ledger knows."""
    config = credentials.config(sandbox_offered=False)

    async def work() -> int:
        known = await _known_entries(ledger_path, config)
        async with ReportExportClient(config) as client:
            job = await client.get_job(job_by_prefix(job_id, known))
        entry = known.get(job.id)
        if as_json:
            echo_json(_job_json(job, entry))
            return EXIT_OK
        console = make_console()
        for name, value in job.model_dump(by_alias=True, exclude_none=True).items():
            console.print(f"{name}: {when_text(value) if isinstance(value, datetime) else value}")
        if entry is not None:
            file = "-" if entry.file_path is None else shown_path(entry.file_path)
            console.print(
                f"ledger: {entry.report_id} {entry_range(entry)} {entry.result_format}, "
                f"fingerprint {entry.fingerprint[:12]}, file {file}"
            )
        return EXIT_OK

    return run_async(work)


@jobs_group.command("download")
@click.argument("job_id", metavar="ID")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="result file (default ./<ID>.<ext>, the format from the ledger, else csv)",
)
@account_options
def jobs_download(
    job_id: str,
    out: Path | None,
    ledger_path: Path | str | None,
    as_json: bool,
    credentials: Credentials,
) -> int:
    """Download a job's result by its id (never by submitting again); waits while it runs. ID
    may be a unique prefix of a job id the ledger knows."""
    if out is not None:
        check_writable_folder(out.parent if str(out.parent) else Path("."), "--out")

    async def work() -> int:
        async with open_run(credentials, ledger_path) as run:
            full_id = await _job_id(run.client, job_id)
            result = await run.client.download(full_id, out)
            if as_json:
                echo_json({"event": "download", **dataclasses.asdict(result)})
            else:
                make_console().print(
                    f"{result.path}: {size_text(result.size)}, sha256 {result.sha256}"
                )
            return EXIT_OK

    return run_async(work)


@jobs_group.command("replay")
@click.argument("job_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="replay although the guard finds it unjustified or done today (never while running, "
    "in ERROR, or within an hour of the submit)",
)
@account_options
def jobs_replay(
    job_id: str,
    force: bool,
    ledger_path: Path | str | None,
    as_json: bool,
    credentials: Credentials,
) -> int:
    """Replay a job (PUT /Jobs/{Id}/Replay), if the guide's rules allow it. ID may be a unique
    prefix of a job id the ledger knows."""

    async def work() -> int:
        async with open_run(credentials, ledger_path) as run:
            outcome = await run.client.replay(await _job_id(run.client, job_id), force=force)
        if as_json:
            echo_json(
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
        console = make_console()
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

    return run_async(work)
