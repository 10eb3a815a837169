"""The `reportexport` command group: every command of the package's modules under one name,
and `main`, the console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from .backfill import backfill_command
from .demo import demo_command, sandbox_group
from .exits import invoke
from .export import export_command
from .jobs import jobs_group
from .ledger import ledger_group
from .reports import reports_command
from .sync import sync_command
from .wording import PROG

__all__ = ["cli", "main"]


class Cli(click.Group):
    """Errors as one line on stderr with an exit code; never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = invoke(
            lambda: super(Cli, self).main(
                args, prog_name or PROG, complete_var, standalone_mode=False, **extra
            ),
            sys.argv[1:] if args is None else args,
            root=self,
        )
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
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


# In the order `reportexport --help` lists them (click sorts them by name).
for command in (
    backfill_command,
    demo_command,
    export_command,
    sync_command,
    reports_command,
    jobs_group,
    ledger_group,
    sandbox_group,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `reportexport`; returns the exit code."""
    code: int = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    return code
