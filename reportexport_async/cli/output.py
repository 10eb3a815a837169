"""How every subcommand shows things to people: consoles that respect the terminal (or its
absence), tables that pipe, counts that stay out of piped data, and figures (sizes, calls,
moments, paths) in the same words everywhere. The reader that goes away is `pipes`; the
library's words in the command line's, `wording`.

Written here rather than taken from a library: rich draws the tables on a terminal; what a pipe
gets (tab-separated lines, full values, no box, as `gh` prints) is a few lines on top of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table

from .pipes import READER, echo

__all__ = [
    "Cell",
    "calls_text",
    "is_terminal",
    "make_console",
    "moment_text",
    "print_count",
    "print_table",
    "rows_text",
    "shown_path",
    "size_text",
    "when_text",
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


# -- figures for people -------------------------------------------------------------------------


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def calls_text(calls: Mapping[str, int]) -> str:
    used = {name: count for name, count in calls.items() if count}
    if not used:
        return "0"
    parts = ", ".join(f"{name} {count}" for name, count in sorted(used.items()))
    return f"{sum(used.values())} ({parts})"


def rows_text(records: Sequence[int | None]) -> str:
    """Rows of the done chunks; `-` when none is known, `N+` when some are not (never a figure
    that reads as complete when it is not)."""
    known = [count for count in records if count is not None]
    if not known and records:
        return "-"
    return f"{sum(known)}{'+' if len(known) < len(records) else ''}"


def when_text(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def moment_text(moment: datetime | None, zone: tzinfo | None, offset: float = 0.0) -> str:
    """A time for people: a moment on the server's clock, to the second in the account's time
    zone, and as this machine's clock will read it (`offset` seconds behind the server's) when
    that differs."""
    if moment is None:
        return "an unknown time"
    account = moment.astimezone(zone or UTC).replace(microsecond=0)
    text = f"{account:%Y-%m-%d %H:%M:%S} {_zone_name(account)} (account)"
    local = (moment - timedelta(seconds=round(offset))).astimezone().replace(microsecond=0)
    if local.utcoffset() != account.utcoffset() or local != account:
        text += f", {local:%Y-%m-%d %H:%M:%S} {_zone_name(local)} here"
    return text


def _zone_name(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes > 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def shown_path(path: Path) -> str:
    """A recorded path as a person reads it: relative to the current folder when inside it (the
    ledger records paths absolute, in their one canonical spelling; `--json` gives them so)."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
