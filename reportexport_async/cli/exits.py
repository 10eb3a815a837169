"""Exit codes and errors: every failure is one line on stderr in command-line words (never a
traceback, never the token) and an exit code; with `--json` the stream ends with one `error`
object. `invoke` runs a command under these rules.

Exit codes: 0 everything done (also when the reader of stdout went away); 1 chunks failed or
are stuck, a command failed, or the API host cannot be reached; 2 usage errors and refused
credentials; 3 chunks pending for the daily quota; 4 chunks deferred; 130 interrupted.
"""

from __future__ import annotations

import sys
from asyncio import CancelledError
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from ..destinations.outputs import check_folder, prepare_folder
from ..errors import (
    AccountUnavailable,
    ConfigurationError,
    LedgerError,
    LedgerProblem,
    QuotaExhausted,
    ReportExportError,
)
from ..jobs.orchestrator import BackfillResult
from .events import echo_json
from .pipes import READER
from .verbose import silence_library_log
from .wording import PROG, cli_language

__all__ = [
    "EXIT_DEFERRED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PENDING",
    "EXIT_USAGE",
    "SAID",
    "FileProblem",
    "as_usage",
    "check_could_write",
    "check_writable_folder",
    "end_json",
    "error_text",
    "invoke",
    "leaf",
    "stopped_code",
    "typed_command",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_DEFERRED = 0, 1, 2, 3, 4

#: What the command line adds to the library's LedgerError advice: its own flags and commands.
LEDGER_ADVICE: Mapping[LedgerProblem, str] = {
    "corrupt": " (--ledger PATH)",
    "newer": " (--ledger PATH)",
    "folder": " (--ledger PATH)",
    "older": " (a backfill or an export does)",
    "read-only": " (ledger show, ledger history, jobs list and jobs show)",
}


@dataclass
class Said:
    """What this command said: with `--json` (`json`), whether its stream has ended with an
    `error` object (`ended`); what a backfill said when Ctrl-C stopped it (what was recorded,
    how to resume), so the last line does not repeat it in fewer words."""

    json: bool = False
    ended: bool = False
    interrupted: str | None = None
    #: What an interrupted command other than a backfill says about resuming (None: the usual).
    resume: str | None = None
    argv: tuple[str, ...] = ()
    #: The top-level group, for the command as typed.
    root: click.Command | None = None


SAID = Said()


class FileProblem(click.ClickException):
    """A mistake in a file the command read (`--config`): exit 2 as a usage error, without the
    usage error's "see --help", which says nothing about a file's contents."""

    exit_code = EXIT_USAGE


def leaf(error: BaseException) -> BaseException:
    """The one error inside (nested) exception groups from task groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def typed_command(argv: Sequence[str]) -> str:
    """The command as typed (`reportexport jobs show`), read off the arguments: the words that
    name a command and its subcommands, from the first one on (the top level has no options but
    --help and --version)."""
    words = [PROG]
    command = SAID.root
    for word in argv:
        found = command.commands.get(word) if isinstance(command, click.Group) else None
        if found is None:
            break
        words.append(word)
        command = found
    return " ".join(words)


def _fail(message: str, code: int) -> int:
    click.echo(f"{typed_command(SAID.argv)}: error: {message}", err=True)
    end_json(message, code)
    return code


def end_json(message: str, code: int, *, counts: Mapping[str, int] | None = None) -> None:
    """With `--json`, a failure ends the stream with one `error` object (once): its one-line
    message and the exit code; a command that runs chunks adds their `counts` so far."""
    if not SAID.json or SAID.ended:
        return
    SAID.ended = True
    payload: dict[str, Any] = {"event": "error", "message": message}
    if counts is not None:
        payload["counts"] = dict(counts)
    echo_json({**payload, "exit_code": code})


def error_text(error: BaseException) -> tuple[str, int]:
    """A library error as one line in command-line words, and its exit code."""
    if isinstance(error, click.UsageError):
        return error.format_message(), EXIT_USAGE
    if isinstance(error, click.ClickException):
        return error.format_message(), error.exit_code
    if isinstance(error, AccountUnavailable):
        return _stopped_text(error), stopped_code(error)
    if isinstance(error, LedgerError):
        return str(error) + LEDGER_ADVICE.get(error.problem, ""), EXIT_USAGE
    if isinstance(error, ConfigurationError):
        return cli_language(str(error)), EXIT_USAGE
    if isinstance(error, QuotaExhausted):
        return cli_language(str(error)), EXIT_PENDING
    if isinstance(error, ReportExportError):
        return cli_language(str(error)), EXIT_FAILED
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), EXIT_FAILED
    return f"unexpected {type(error).__name__}: {error}", EXIT_FAILED


def stopped_code(error: AccountUnavailable) -> int:
    """Credentials the server refused are configuration (2); an unreachable host or an outage
    is a failure (1)."""
    return EXIT_USAGE if error.problem == "credentials" else EXIT_FAILED


def _stopped_text(error: AccountUnavailable) -> str:
    """One line: what stopped the run, that nothing more was tried, and where things stand."""
    text = f"stopped: {error}; no further chunk was tried"
    result = error.result
    if isinstance(result, BackfillResult):
        done = result.counts["done"]
        text += f" ({done} of {len(result.chunks)} chunks done"
        if result.manifest_path is not None:
            text += f", manifest {result.manifest_path}"
        text += "); run the same command again to continue"
    return text


def invoke(call: Callable[[], Any], argv: Sequence[str], root: click.Command) -> int:
    """`call` (click's parsing and the command), its outcome as an exit code."""
    SAID.json, SAID.ended, SAID.interrupted, SAID.resume = False, False, None, None
    SAID.argv, SAID.root = tuple(argv), root
    READER.reset()
    silence_library_log()
    code = _invoke_once(call)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        READER.lost()
    except (OSError, ValueError):  # pragma: no cover - stdout closed otherwise
        pass
    # A reader that went away (`| head`) is no failure, whatever was cut short by it.
    return EXIT_OK if READER.gone else code


def _interrupted() -> int:
    said, SAID.interrupted = SAID.interrupted, None
    if said is not None:  # the backfill said it already, with what was recorded
        return 130
    resume, SAID.resume = SAID.resume, None
    return _fail(resume or "interrupted; run the same command again to resume", 130)


def _invoke_once(call: Callable[[], Any]) -> int:
    try:
        result = call()
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        message = cli_language(error.format_message())
        click.echo(f"{typed_command(SAID.argv)}: error: {message} (see --help)", err=True)
        if error.ctx is not None and any(p.name == "as_json" for p in error.ctx.command.params):
            # A mistake click finds before it reads the options (`--bogus`) ends it too.
            SAID.json = SAID.json or "--json" in SAID.argv
        end_json(message, EXIT_USAGE)
        return EXIT_USAGE
    except click.ClickException as error:
        return _fail(cli_language(error.format_message()), error.exit_code)
    except click.Abort:
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    except BaseException as raised:
        found = leaf(raised)
        if isinstance(found, SystemExit):
            return found.code if isinstance(found.code, int) else EXIT_FAILED
        if isinstance(found, BrokenPipeError) or (
            READER.gone and isinstance(found, CancelledError)
        ):
            # `| head`: the reader has what it wanted; that is no failure.
            READER.lost()
            return EXIT_OK
        if isinstance(found, KeyboardInterrupt):
            return _interrupted()
        if isinstance(found, click.ClickException):
            return _invoke_once(lambda: _reraise(found))
        if not isinstance(found, Exception):
            raise
        return _fail(*error_text(found))
    return result if isinstance(result, int) else EXIT_OK


def _reraise(error: BaseException) -> NoReturn:
    raise error


@contextmanager
def as_usage(option: str) -> Iterator[None]:
    """A library check's `ConfigurationError` as a usage error naming the command's `option`."""
    try:
        yield
    except ConfigurationError as error:
        raise click.UsageError(f"{option}: {error.problem}") from None


def check_could_write(path: Path, option: str) -> None:
    """Would `check_writable_folder` pass? Making nothing (for `--dry-run`)."""
    with as_usage(option):
        check_folder(path)


def check_writable_folder(path: Path, option: str) -> None:
    """A folder for results exists (or is made) and takes a file, before any call."""
    with as_usage(option):
        prepare_folder(path)
