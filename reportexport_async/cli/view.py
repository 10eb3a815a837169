"""The live view of a run (backfill, sync): receives the orchestrator's `ProgressEvent`s and
shows them as live bars on a terminal, JSON lines with `--json`, a few plain lines otherwise;
and what a run that ends early (an error, Ctrl-C) says about where it stopped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any, get_args

import anyio
import click
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from ..client import Client
from ..core.planning import Plan
from ..jobs.orchestrator import ChunkStatus, ProgressEvent
from .events import echo_json, event_json, plan_text, quota_spent_text
from .exits import SAID, end_json, error_text, leaf, typed_command
from .output import calls_text, size_text
from .pipes import READER
from .wording import cli_language

__all__ = ["BackfillView", "ended_early"]

STATES: tuple[str, ...] = get_args(ChunkStatus)
STATE_STYLE = {
    "planned": "dim",
    "submitted": "cyan",
    "running": "blue",
    "downloading": "magenta",
    "elsewhere": "dim cyan",
    "done": "green",
    "failed": "red",
    "pending": "yellow",
    "deferred": "yellow",
    "stuck": "red",
}
STATE_LABEL = {"pending": "pending quota", "elsewhere": "other workers"}


class _Bars(Progress):
    """One bar per report, then a line with bytes, API calls and quota left."""

    def __init__(self, *columns: Any, footer: Callable[[], RenderableType], **options: Any) -> None:
        self.footer = footer  # before Progress.__init__, which may render already
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.footer()


class BackfillView:
    """Receives the orchestrator's `ProgressEvent`s: live bars on a terminal, JSON lines with
    `--json`, a few plain lines otherwise."""

    def __init__(
        self,
        console: Console,
        *,
        live: bool,
        as_json: bool,
        zone: Callable[[], tzinfo | None] = lambda: None,
        offset: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.console = console
        self.zone = zone
        self.offset = offset
        self.quota_told = False
        self.live = live and not as_json
        self.as_json = as_json
        self.states: dict[tuple[str, str], str] = {}
        self.bytes: dict[tuple[str, str], int] = {}
        self.calls: Mapping[str, int] = {}
        self.quota_left: int | None = None
        self.plan: Plan | None = None
        self.bars: _Bars | None = None
        self.tasks: dict[str, TaskID] = {}

    @classmethod
    def for_client(
        cls, client: Client, console: Console, *, live: bool, as_json: bool
    ) -> BackfillView:
        """A view that says its times in the client's account time zone, and as this
        machine's clock will read them."""
        return cls(
            console, live=live, as_json=as_json, zone=lambda: client.limiter.timezone,
            offset=lambda: client.clock.offset,
        )  # fmt: skip

    def __enter__(self) -> BackfillView:
        if self.live:
            self.bars = _Bars(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                console=self.console,
                footer=self.footer,
                refresh_per_second=12,
            )
            self.bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bars is not None:
            self.refresh()
            self.bars.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.calls:  # the backfill's own calls so far
            self.calls = event.calls
        if event.quota_left is not None:
            self.quota_left = event.quota_left
        if event.kind == "plan" and event.plan is not None:
            self.plan = event.plan
            for planned in event.plan.chunks:
                key = (planned.report_id, str(planned.chunk))
                self.states[key] = "done" if planned.state == "done" else "planned"
            if self.quota_left is None:
                self.quota_left = event.plan.cost.quota_left_today
        elif event.kind == "chunk" and event.report_id and event.chunk and event.status:
            key = (event.report_id, event.chunk)
            self.states[key] = event.status
            if event.status == "done" and event.bytes:
                self.bytes[key] = event.bytes
        if self.as_json:
            echo_json(event_json(event))
        elif event.kind == "duplicate":
            self.console.print(f"note: {event.message}")
        elif event.kind == "quota":
            # Each submitter that meets the spent quota says so; people need it said once.
            if not self.quota_told:
                self.quota_told = True
                self.console.print(
                    f"quota: {quota_spent_text(event.until, self.zone(), self.offset())}",
                    markup=False,
                )
            self.refresh()
        elif event.kind == "plan" and event.plan is not None:
            # Above the bars on a terminal: the cost is said once, before anything moves.
            self.console.print(f"plan: {plan_text(event.plan)}", markup=False)
            self.refresh()
        elif self.live:
            self.refresh()
        elif event.kind in ("error", "retry"):
            self.console.print(f"{event.kind}: {cli_language(event.message or '')}", markup=False)
        if (
            not self.as_json
            and event.kind == "loaded"
            and (event.status != "done" or not self.live)
        ):
            self.console.print(f"loaded: {event.message}", markup=False, highlight=False)
        if not self.as_json and event.kind == "wait":
            # On a terminal too: a wait always says what it waits for and until when. (What
            # stopped a run is its one error line, on stderr.)
            self.console.print(f"{event.kind}: {event.message}", markup=False, highlight=False)

    def by_report(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for (report, _), state in self.states.items():
            counts.setdefault(report, Counter())[state] += 1
        return counts

    def refresh(self) -> None:
        if self.bars is None:
            return
        for report, counts in self.by_report().items():
            states = "  ".join(
                f"[{STATE_STYLE[s]}]{STATE_LABEL.get(s, s)} {counts[s]}[/]"
                for s in STATES
                if counts[s]
            )
            total = sum(counts.values())
            # The bar fills with what is done: pending and deferred chunks are still to do.
            finished = counts["done"]
            if report not in self.tasks:
                self.tasks[report] = self.bars.add_task(report, total=total, states=states)
            self.bars.update(self.tasks[report], total=total, completed=finished, states=states)

    def footer(self) -> RenderableType:
        quota = "unknown" if self.quota_left is None else str(self.quota_left)
        return Text.from_markup(
            f"[bold]{size_text(sum(self.bytes.values()))}[/] downloaded · API calls "
            f"[bold]{calls_text(self.calls)}[/] · ReportExport quota left today "
            f"[bold]{quota}[/]"
        )


def _interrupted_text(view: BackfillView, ledger: Path | str) -> str:
    counts = Counter(view.states.values())
    recorded = sum(counts[s] for s in ("submitted", "running", "downloading"))
    text = f"interrupted: {counts['done']} of {len(view.states)} chunks done"
    if recorded:
        text += f", {recorded} submitted jobs recorded in the ledger {ledger}"
    else:
        text += f" (ledger {ledger})"
    text += "; run the same command again to resume"
    if recorded:
        text += ": it re-attaches to those jobs and submits nothing twice"
    return text


def ended_early(
    raised: BaseException, view: BackfillView, ledger: Path | str, *, as_json: bool
) -> None:
    """A run that ends by an exception (Ctrl-C included) still ends its `--json` stream with
    an `error` object, and a Ctrl-C says what was recorded and how to resume."""
    if READER.gone:  # `| head`: no failure, and nothing more to say
        return
    found = leaf(raised)
    interrupted = isinstance(found, (KeyboardInterrupt, anyio.get_cancelled_exc_class()))
    if interrupted:
        message, code = _interrupted_text(view, ledger), 130
        SAID.interrupted = message
    else:
        message, code = error_text(found)
    if as_json:
        SAID.json = True
        end_json(message, code, counts=Counter(view.states.values()))
    if interrupted:
        click.echo(f"{typed_command(SAID.argv)}: {message}", err=True)
