"""`reportexport ledger show|history`: what the ledger remembers, read-only (also a read-only
or locked ledger file)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import click

from ..ledger import LedgerEntry
from ..ledger.store import LedgerStore, is_ledger_url, open_ledger
from .credentials import default_ledger_path
from .events import echo_json
from .exits import EXIT_OK
from .options import json_option, ledger_option
from .output import Cell, make_console, print_count, print_table, shown_path, size_text, when_text
from .run import run_async

__all__ = ["entry_json", "entry_range", "ledger_group"]


@click.group("ledger")
def ledger_group() -> None:
    """What the ledger remembers: every export, its job, file and history."""


def entry_range(entry: LedgerEntry) -> str:
    if entry.range_start is None:
        return "default range"
    return f"{entry.range_start}..{entry.range_end}"


@asynccontextmanager
async def _existing_ledger(path: Path | str | None) -> AsyncIterator[LedgerStore]:
    where = default_ledger_path(path)
    if not is_ledger_url(where) and not await anyio.Path(where).exists():
        raise click.UsageError(
            f"--ledger: no ledger at {str(where)!r} (a backfill or an export makes one)"
        )
    async with open_ledger(where, read_only=True) as ledger:  # also a read-only or locked file
        yield ledger


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
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
@ledger_option()
@json_option
def ledger_show(report: str | None, ledger_path: Path | str | None, as_json: bool) -> int:
    """Every export the ledger knows: report, range, job, status, file."""

    async def work() -> int:
        async with _existing_ledger(ledger_path) as ledger:
            entries = await ledger.entries(report_id=report)
        if as_json:
            for entry in entries:
                echo_json(entry_json(entry))
            return EXIT_OK
        rows = [
            [
                # A pipe gets the whole fingerprint, as it gets whole job ids.
                Cell(entry.fingerprint[:12], entry.fingerprint),
                entry.report_id or entry.endpoint,
                entry_range(entry),
                # On a terminal the short id, which `jobs show|download|replay` take as it is.
                None if entry.job_id is None else Cell(entry.job_id[:8], entry.job_id),
                None if entry.status is None else entry.status.value,
                entry.records,
                # People read it from the current folder; a pipe gets the ledger's whole path.
                None
                if entry.file_path is None
                else Cell(shown_path(entry.file_path), str(entry.file_path)),
                Cell(
                    size_text(entry.file_size),
                    "-" if entry.file_size is None else str(entry.file_size),
                ),
            ]
            for entry in entries
        ]
        columns = ("fingerprint", "report", "range", "job", "status", "rows", "file", "bytes")
        console = make_console()
        print_table(console, columns, rows, right=("rows", "bytes"))
        # The count is for people: on a pipe it goes to stderr, out of the data.
        print_count(console, f"{len(entries)} exports in {ledger.path}")
        return EXIT_OK

    return run_async(work)


@ledger_group.command("history")
@click.argument("key")
@ledger_option()
@json_option
def ledger_history(key: str, ledger_path: Path | str | None, as_json: bool) -> int:
    """The events of one export: KEY is a fingerprint, a unique prefix of one, or a job id."""

    async def work() -> int:
        async with _existing_ledger(ledger_path) as ledger:
            entry = await ledger.find(key)
            if entry is None:
                raise click.ClickException(f"no export in {str(ledger.path)!r} matches {key!r}")
            events = await ledger.history(key)
        if as_json:
            for event in events:
                echo_json({"event": event.kind, **dataclasses.asdict(event)})
            return EXIT_OK
        console = make_console()
        console.print(
            f"{entry.fingerprint} {entry.report_id} {entry_range(entry)} {entry.result_format}"
        )
        rows = [
            [
                when_text(event.at),
                event.kind,
                event.job_id,
                ", ".join(f"{k}={v}" for k, v in event.detail.items()),
            ]
            for event in events
        ]
        print_table(console, ("at", "event", "job", "detail"), rows)
        print_count(console, f"{len(events)} events")
        return EXIT_OK

    return run_async(work)
