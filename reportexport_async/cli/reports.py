"""`reportexport reports`: the account's report ids that the API can export (one call, then
cached for a day in the user's cache folder)."""

from __future__ import annotations

from typing import Any

import click

from ..transport.api import ReportExportClient
from .credentials import Credentials
from .events import echo_json
from .exits import EXIT_OK
from .options import credential_options, json_option, verbose_option
from .output import make_console, print_count, print_table
from .paths import read_catalog, write_catalog
from .run import open_run, run_async

__all__ = ["reports_command"]


@click.command("reports")
@click.option("--all", "show_all", is_flag=True, help="also the reports the API cannot export")
@click.option("--refresh", is_flag=True, help="ask the API again (one call) instead of the cache")
@credential_options(sandbox=True)
@json_option
@verbose_option
def reports_command(show_all: bool, refresh: bool, credentials: Credentials, as_json: bool) -> int:
    """The account's report ids that the API can export (GET /Reports: one call, then cached for
    a day in the user's cache folder)."""
    console = make_console()

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
                echo_json(report)
            return EXIT_OK
        rows = [
            [r["id"], r.get("name"), r.get("category"), _yes_no(r.get("api_accessible"))]
            for r in shown
        ]
        columns = ("report", "name", "category", "api")
        print_table(console, columns, rows)
        print_count(console, f"{len(shown)} reports ({source})")
        return EXIT_OK

    return run_async(work)


def _yes_no(value: object) -> str:
    return "-" if value is None else ("yes" if value else "no")
