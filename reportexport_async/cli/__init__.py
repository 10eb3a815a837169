"""`reportexport`: the command line (click for parsing, rich for progress and tables).

    reportexport demo
    reportexport backfill mp_action_listing_fast --start 2025-01-01 --end 2025-12-31 --sandbox
    reportexport export REPORT [--start DATE --end DATE] [--param KEY=VALUE] [--out FILE]
    reportexport sync --config datasets.toml   (or: sync REPORT... --first-day DATE --out DIR)
    reportexport jobs list|show|download|replay ...
    reportexport ledger show|history ...
    reportexport reports [--all] [--refresh]
    reportexport sandbox serve [the sandbox's options]

A thin layer that holds no logic the library lacks: it parses arguments, finds credentials,
starts the built-in sandbox for `--sandbox`, shows progress, and turns outcomes into exit codes.
Everything else is a call into the library's `Client` (`backfill`, `export`, `download`,
`replay`); the read-only commands (`jobs list|show`, `ledger show|history`) read the ledger
read-only beside the single calls of `ReportExportClient`.

Exit codes: 0 everything done; 1 some chunks failed or are stuck, a command failed, or the run
stopped because the API host cannot be reached (or every call failed for too long); 2 usage errors
(bad options, no credentials, an output folder that cannot be written), always one line on stderr
before any API call, and credentials the server refused (401/403), which stop a run at its first
call; 3 chunks left pending for the daily quota (run the same command again after the reset); 4
chunks deferred to a later time the guide sets, such as a replay allowed only an hour after the
submit (run the same command again after the time printed); 130 interrupted (Ctrl-C: the
message says what was recorded; the same command resumes). A reader that goes away (`| head`)
is no failure (0). Errors are one line, never a traceback, never the token, in command-line
words (`wording`). Tables, pipes, `-v` and the user's folders are in `output`, `pipes`,
`verbose` and `paths`, for every subcommand to share; the layout is `docs/command-line.md`.
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
