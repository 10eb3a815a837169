"""`reportexport export REPORT`: one export, submitted (or re-attached to, or taken from a file
that is still intact), waited on, downloaded."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path, PurePosixPath

import anyio
import click

from ..client import Client
from ..core.chunking import Chunk
from ..core.models import ExportRequest, checked
from ..core.planning import chunk_path, default_range_path
from ..destinations import IntoURL
from ..destinations.outputs import prepare_file
from ..errors import ConfigurationError
from .credentials import Credentials
from .events import echo_json
from .exits import EXIT_OK, SAID, as_usage, leaf
from .local_sandbox import sandbox_banner
from .options import (
    DEFAULT_OUT,
    FORMAT,
    check_reports_option,
    credential_options,
    into_option,
    json_option,
    ledger_option,
    param_option,
    verbose_option,
    window_options,
)
from .output import calls_text, make_console, size_text
from .run import open_run, run_async

__all__ = ["export_command"]


@click.command("export")
@click.argument("report")
@window_options(required=False,
                start_help="first day (YYYY-MM-DD); omit both for the default range",
                end_help="last day (YYYY-MM-DD), inclusive")  # fmt: skip
@param_option()
@click.option("--format", "result_format", type=FORMAT, default="csv", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"result file (default {DEFAULT_OUT}/<report>/<start>_<end>.<ext>)",
)
@into_option()
@ledger_option(sandbox=True)
@check_reports_option
@credential_options(sandbox=True)
@json_option
@verbose_option
def export_command(
    report: str,
    window: Chunk | None,
    filters: dict[str, str],
    result_format: str,
    out: Path | None,
    into: IntoURL | None,
    ledger_path: Path | str | None,
    check_reports: bool,
    credentials: Credentials,
    as_json: bool,
) -> int:
    """One export: submitted (or re-attached to, or taken from a file that is still intact),
    waited on, downloaded."""
    start, end = (None, None) if window is None else (window.start, window.end)
    try:
        request = checked(
            partial(
                ExportRequest, report_id=report, start=start, end=end, filters=filters,
                result_format=result_format.upper(),
            ),
        )  # fmt: skip
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from None
    if out is not None:
        with as_usage("--out"):
            prepare_file(out)  # the one check `Client.export` makes again, before any call
    console = make_console()

    async def work() -> int:
        async with open_run(credentials, ledger_path, sandbox_offered=True) as run:
            dest = out
            if dest is None:
                dest = DEFAULT_OUT / await _default_path(run.client, request, window)
                with as_usage("--out"):
                    prepare_file(dest)
            if not as_json:
                sandbox_banner(run.sandbox, console, as_json)
            try:
                outcome = await run.client.export(
                    request, out=dest, check_reports=check_reports, into=into
                )
            except BaseException as raised:
                if isinstance(leaf(raised), KeyboardInterrupt | anyio.get_cancelled_exc_class()):
                    SAID.resume = _export_interrupted(run.client, dest)
                raise
            calls = dict(run.client.usage.calls)
            if as_json:
                echo_json({"event": "export", **dataclasses.asdict(outcome), "calls": calls})
            else:
                how = (
                    "from the intact file (no call)"
                    if outcome.action == "cached"
                    else ("submitted and downloaded" if outcome.submitted else "downloaded")
                )
                console.print(
                    f"{outcome.path}: {size_text(outcome.size)}, {outcome.records} rows, job "
                    f"{outcome.job_id}, {how}{', replayed' if outcome.replayed else ''}"
                )
                for loaded in outcome.loaded:
                    console.print(f"loaded: {loaded.message}", markup=False, highlight=False)
                console.print(f"sha256 {outcome.sha256}\nAPI calls: {calls_text(calls)}")
            return EXIT_OK

    return run_async(work)


async def _default_path(
    client: Client, request: ExportRequest, window: Chunk | None
) -> PurePosixPath:
    """The result's path under the default folder: by its range, or by the account's day for
    the default range (on the server's clock: one call, no quota, if needed)."""
    if window is not None:
        return chunk_path(request, window)
    now = await client.clock.fresh_now()
    today = now.astimezone(await client.limiter.account_timezone()).date()
    return default_range_path(request, today)


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
