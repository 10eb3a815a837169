"""What every subcommand of the command line shares in how it speaks: consoles that respect
the terminal (or its absence), tables that pipe, the library's messages in command-line words,
a reader that goes away (`| head`), which stops the command as it stops a Unix tool, and
`-v/--verbose` logging that never shows a secret.

Written here rather than taken from a library: rich draws the tables on a terminal; what a pipe
gets (tab-separated lines, full values, no box, as `gh` prints) is a few lines on top of it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

import anyio
import click
from rich.console import Console
from rich.table import Table

from ..client import unwrapped

__all__ = [
    "READER",
    "Cell",
    "cli_language",
    "echo",
    "is_terminal",
    "job_by_prefix",
    "make_console",
    "print_count",
    "print_table",
    "quiet_broken_pipe",
    "reader_watched",
    "register_origin",
    "register_secret",
    "silence_library_log",
    "verbose_logging",
]

#: The width of a console that is not a terminal and has no `COLUMNS`: wide enough for a line.
PIPE_WIDTH = 200


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr): on a terminal, its width; elsewhere `COLUMNS` when set,
    else wide; never colour codes on a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    width: int | None = None
    if not is_terminal(stream):
        columns = os.environ.get("COLUMNS", "").strip()
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return _Console(file=stream, highlight=False, soft_wrap=True, width=width, stderr=stderr)


class _Console(Console):
    """A console whose closed pipe stops the command through `READER`: rich's own reaction, a
    `SystemExit` raised wherever the write happened, escapes the event loop from inside a task
    and leaves its worker threads waiting forever (the interpreter then never exits)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.file is sys.stdout:
            READER.lost()


@dataclass(frozen=True)
class Cell:
    """A value shown one way to people (`text`) and another way on a pipe (`plain`), such as
    `87.5 kB` and `87512`."""

    text: str
    plain: str

    def __str__(self) -> str:
        return self.text


def _cell(value: object, *, plain: bool) -> str:
    if isinstance(value, Cell):
        return value.plain if plain else value.text
    return "-" if value is None else str(value)


def _tsv_field(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
    whole: Iterable[str] = (),
    header_on_pipe: bool = False,
) -> None:
    """A table: boxed and aligned on a terminal; on a pipe or in a file, one line per row with
    its fields separated by tabs and nothing cut (`cut -f1`, `awk -F'\\t'`, `sort` work). A
    listing prints no header line on a pipe (as `gh` does); a report of figures, such as a
    run's summary, passes `header_on_pipe=True`. The `whole` columns (ids people copy) are
    never cut on a terminal either: the others wrap first."""
    materialised = [list(row) for row in rows]
    if not console.is_terminal:
        lines: list[str] = []
        if title is not None:
            lines.append(f"# {title}")
        if header_on_pipe:
            lines.append("\t".join(columns))
        for row in materialised:
            lines.append("\t".join(_tsv_field(_cell(value, plain=True)) for value in row))
        if lines:
            echo("\n".join(lines), console.file)
        return
    right_aligned, kept = set(right), set(whole)
    table = Table(title=title)
    for index, name in enumerate(columns):
        widest = max((len(_cell(row[index], plain=False)) for row in materialised), default=0)
        table.add_column(
            name,
            justify="right" if name in right_aligned else "left",
            no_wrap=name in kept,
            min_width=max(widest, len(name)) if name in kept else None,
        )
    for row in materialised:
        table.add_row(*(_cell(value, plain=False) for value in row))
    console.print(table)


def print_count(console: Console, text: str) -> None:
    """A listing's count (`7 jobs`): under the table on a terminal; on stderr when stdout is a
    pipe, so that what is piped holds only the rows; not at all once the reader is gone."""
    if READER.gone:
        return
    where = console if console.is_terminal else make_console(stderr=True)
    where.print(text, markup=False, highlight=False)


# -- the library's words, in the command line's --------------------------------------------------

#: A library keyword argument -> what the command line calls it.
FLAGS: Mapping[str, str] = {
    "start": "--start",
    "end": "--end",
    "account_sid": "--account-sid",
    "auth_token": "--auth-token-file",
    "account_type": "--account-type",
    "base_url": "--base-url",
    "check_reports": "--check-reports",
    "wait_for_quota": "--wait-for-quota",
    "wait_for_replays": "--wait-for-replays",
    "outage_limit": "--outage-limit",
    "force": "--force",
    "ledger": "--ledger",
    "postback_listen": "--postback-listen",
    "postback_token": "--postback-token",
}

#: What a message about a setting names when no flag holds the setting itself.
SUBJECTS: Mapping[str, str] = {
    "auth_token": "the auth token",
    "report_id": "REPORT",
    "report": "REPORT",
    # The arguments of `export` and `backfill`, checked by the library before any call.
    "start": "--start",
    "end": "--end",
    "out": "--out",
    "out_dir": "--out",
    "chunk": "--chunk",
    "filters": "--param",
    "result_format": "--format",
}

#: The flags that turn off a setting that is on unless told otherwise.
NEGATIONS: Mapping[str, str] = {"check_reports": "--no-check-reports"}

_REWRITES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # "base_url: plain http:// ...": the setting the message is about, by its flag.
    (
        re.compile(r"^(\w+): "),
        lambda m: (
            f"{SUBJECTS.get(m[1]) or FLAGS[m[1]]}: " if m[1] in FLAGS or m[1] in SUBJECTS else m[0]
        ),
    ),
    # "pass check_reports=False to let the server decide": the flag that turns it off, or
    # leaving out the flag that turns it on.
    (
        re.compile(r"pass (\w+)=False"),
        lambda m: (
            f"pass {NEGATIONS[m[1]]}"
            if m[1] in NEGATIONS
            else (f"leave out {FLAGS[m[1]]}" if m[1] in FLAGS else m[0])
        ),
    ),
    (
        re.compile(r"pass (\w+)=True"),
        lambda m: f"pass {FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
    # "(set IMPACT_BASE_URL or pass base_url=...)"
    (
        re.compile(r"pass (\w+)=\.\.\."),
        lambda m: f"pass {FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
    # A setting named in backquotes: `wait_for_quota`.
    (
        re.compile(r"`(\w+)`"),
        lambda m: f"{FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
)


def cli_language(message: str) -> str:
    """A library message as the command line says it: its keyword arguments become the flags
    that set them (`pass base_url=...` -> `pass --base-url`)."""
    for pattern, rewrite in _REWRITES:
        message = pattern.sub(rewrite, message)
    return message


# -- ids ----------------------------------------------------------------------------------------


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


# -- a reader that goes away --------------------------------------------------------------------


def quiet_broken_pipe() -> None:
    """After the reader of stdout went away (`| head`): point stdout at /dev/null, so the
    interpreter's last flush does not fail too (the recipe of Python's `signal` docs). The
    command then ends with exit code 0: what was asked for was printed as far as anyone reads
    it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no real stdout
        pass


class _Reader:
    """Whether the reader of stdout is still there. When it goes away, the command stops as a
    Unix tool does, but through cancellation: the running command's scope is cancelled, so a
    run cleans up as after Ctrl-C (the manifest written, the ledger's jobs kept for the next
    run to re-attach to), nothing more is printed, nothing is said on stderr, and the exit code
    is 0. Found by the first write that fails or, on a pipe, by the pipe itself, at once, when
    the command has nothing to print for a while (a backfill's chunks on a pipe)."""

    def __init__(self) -> None:
        self.gone = False
        self.scope: anyio.CancelScope | None = None

    def reset(self) -> None:
        self.gone, self.scope = False, None

    def lost(self) -> None:
        if self.gone:
            return
        self.gone = True
        quiet_broken_pipe()
        if self.scope is not None:
            self.scope.cancel()


READER = _Reader()


def echo(text: str, stream: IO[str] | None = None) -> None:
    """`text` and a newline on stdout (or `stream`), flushed; nothing once the reader is gone."""
    stream = sys.stdout if stream is None else stream
    if READER.gone and stream is sys.stdout:
        return
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            READER.lost()


def _watched_pipe() -> int | None:
    """stdout's descriptor when it is a pipe that poll(2) can watch, else None."""
    try:
        fd = sys.stdout.fileno()
        return fd if hasattr(select, "poll") and stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, AttributeError):  # replaced by a test, or closed
        return None


def _reader_closed(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


async def _watch(fd: int) -> None:
    # The write end of a pipe is never readable: waiting "for reading" wakes only when the pipe
    # reports an error, which it does once its last reader is gone.
    while not READER.gone and not _reader_closed(fd):
        try:
            await anyio.wait_readable(fd)
        except OSError:  # stdout is no pipe any more (the reader left: it is /dev/null now)
            break
        if not _reader_closed(fd):  # a wake-up for something else: look again later
            await anyio.sleep(0.5)
    READER.lost()


@asynccontextmanager
async def reader_watched() -> AsyncIterator[None]:
    """The body runs until it ends, or until the reader of stdout goes away: then it is
    cancelled, and the block ends normally with `READER.gone` set."""
    with anyio.CancelScope() as scope:
        READER.scope = scope
        try:
            fd = _watched_pipe()
            if fd is None:
                yield
            else:
                with unwrapped():
                    async with anyio.create_task_group() as group:
                        group.start_soon(_watch, fd)
                        yield
                        group.cancel_scope.cancel()
        finally:
            READER.scope = None


def reader_gone_error() -> BrokenPipeError:
    return BrokenPipeError(errno.EPIPE, "the reader of stdout went away")


# -- -v/--verbose --------------------------------------------------------------------------------


#: Secrets the command line holds (a token read from a file, the sandbox's token), besides the
#: ones in the environment: never printed, not even by `-v`.
_SECRETS: set[str] = set()
SECRET_ENV = ("IMPACT_AUTH_TOKEN", "IMPACT_POSTBACK_TOKEN")


def register_secret(value: str | None) -> None:
    if value:
        _SECRETS.add(value)


#: API origins: `-v` shows paths on them (the origin is said once, by the command).
_ORIGINS: set[str] = set()


def register_origin(base_url: str) -> None:
    _ORIGINS.add(base_url.rstrip("/"))


def known_secrets() -> Iterable[str]:
    yield from _SECRETS
    for name in SECRET_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            yield value


class _Scrub(logging.Filter):
    """Replaces every secret in a record's final text by `***` (a belt to the braces of the
    library, which never logs a token)."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in self.secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        for origin in _ORIGINS:
            text = text.replace(f" {origin}/", " /")
        record.msg, record.args = text, None
        return True


#: The library's log has no place on stderr without `-v`: each error it logs reaches the user as
#: the command's own one line (without a handler, Python's last resort would print it too).
_SILENT = logging.NullHandler()


def silence_library_log() -> None:
    logging.getLogger("reportexport_async").addHandler(_SILENT)  # added once, however often


def verbose_logging(
    enabled: bool,
    *,
    secrets: Callable[[], Iterable[str]] = known_secrets,
    stream: IO[str] | None = None,
) -> Callable[[], None]:
    """`-v`: the library's log on stderr, one line each: every call (method, path, status, time)
    and every wait. Returns the function that undoes it."""
    if not enabled:
        return lambda: None
    logger = logging.getLogger("reportexport_async")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_Scrub(secrets))
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before)

    return undo
