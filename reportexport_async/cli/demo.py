"""`reportexport demo` (a backfill on the built-in sandbox, twice: the second costs nothing) and
`reportexport sandbox serve` (the sandbox on its own)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import click

from ..core.chunking import Chunk
from ..jobs.orchestrator import BackfillOptions, ExportSpec
from .backfill import Backfill, run_backfill
from .credentials import Credentials
from .exits import EXIT_OK, check_writable_folder
from .local_sandbox import sandbox_banner
from .output import calls_text, make_console
from .run import open_run, run_async
from .wording import PROG

__all__ = ["demo_command", "sandbox_group"]

DEMO_REPORTS = ("mp_action_listing_fast", "mp_performance_by_day")


@click.command("demo")
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
    check_writable_folder(out, "--out")
    console = make_console()
    live = sys.stdout.isatty()

    async def work() -> int:
        async with open_run(Credentials(sandbox=True), out / "ledger.sqlite") as run:
            today = run.client.clock.now().date()
            end = today - timedelta(days=today.weekday() + 1)  # last Sunday
            window = Chunk(end - timedelta(weeks=8) + timedelta(days=1), end)
            specs = [ExportSpec(report, {}, "CSV") for report in DEMO_REPORTS]
            backfill = Backfill(specs, window, out / "out", BackfillOptions(chunk="7d", merge=True))
            sandbox_banner(run.sandbox, console, False)
            console.print(f"\n[bold]1.[/] {backfill.command()} --merge --sandbox")
            first, code = await run_backfill(run, backfill, console, live=live, as_json=False)
            if code != EXIT_OK:
                return code
            server_before = run.sandbox.stats()["total_calls"]
            console.print("\n[bold]2.[/] the same command again")
            second, code = await run_backfill(run, backfill, console, live=live, as_json=False)
            server_calls = run.sandbox.stats()["total_calls"] - server_before
            second_calls = sum(second.calls.values())  # each result counts its own calls
            first_calls = calls_text(first.calls)
            console.print(
                f"\nThe second run cost [bold]{second_calls}[/] API calls (the sandbox counted "
                f"{server_calls}) and no quota: the ledger ({run.client.ledger.path}) remembers "
                f"every chunk, and each file is still there with its checksum. The first run spent "
                f"{first_calls}."
            )
            console.print(
                f"Files: {backfill.out}/ (manifest.json; merged: "
                f"{', '.join(str(p) for p in first.merged)})"
            )
            return code

    return run_async(work)


@click.group("sandbox")
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
    from ..sandbox.__main__ import main as sandbox_main  # the server side, only when asked for

    return sandbox_main(list(sandbox_args), prog=f"{PROG} sandbox serve")
