"""Splitting a date range into chunks: one export each (the guide's rule 6 in docs/guide.md:
smaller ranges download faster; and each chunk is one unit of the daily ReportExport quota).

Rules:

- `Nd` (e.g. `1d`, `7d`, `30d`): spans of N days, aligned to a fixed epoch (1970-01-05, a Monday)
  rather than to the range's start, so two backfills that overlap share their chunks (and their
  ledger entries, so nothing is exported twice); `ChunkRule(..., from_start=True)` counts the
  spans from the range's start instead (the fewest chunks for one range: 30d over a quarter is 3
  chunks, not 4, and a range starting on a Sunday has no 1-day first chunk);
- `week`: calendar weeks, Monday to Sunday;
- `month`: calendar months;
- `auto`: the largest span that keeps the expected rows of one file under a target, learned from
  earlier jobs of the same report (a default span before anything is known). The largest such span
  also needs the fewest submits, which is what the daily quota asks for. Its choice changes as
  rows are learned, so the chunks it chose are recorded (`chunks_with_record`,
  `record_after`) and a later run over the same days reuses them instead of exporting the days
  again in other chunks.

The first and last chunks are clipped to the range. Chunks are ordered, with no gap and no overlap.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "AUTO_SPANS",
    "Chunk",
    "ChunkRule",
    "auto_span",
    "chunk_range",
    "chunks_with_record",
    "parse_chunk_rule",
    "record_after",
]

EPOCH = date(1970, 1, 5)  # a Monday: N-day spans that divide 7 line up with weeks
AUTO_SPANS = (1, 2, 7, 14, 28, 91, 182, 364)
DEFAULT_AUTO_DAYS = 7
DEFAULT_ROW_TARGET = 1_000_000


@dataclass(frozen=True, slots=True, order=True)
class Chunk:
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"chunk end {self.end} is before its start {self.start}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


@dataclass(frozen=True, slots=True)
class ChunkRule:
    kind: str  # "days", "week", "month" or "auto"
    days: int = 0
    #: `days` only: spans counted from the range's start, not from the Monday epoch.
    from_start: bool = False

    def __str__(self) -> str:
        return f"{self.days}d" if self.kind == "days" else self.kind


_DAYS = re.compile(r"^(\d+)d$")


#: The longest `Nd` chunk: ten years.
MAX_CHUNK_DAYS = 3660


def parse_chunk_rule(text: str) -> ChunkRule:
    """`1d`, `7d`, `30d` (any N from 1 to 3660), `week`, `month` or `auto`."""
    value = text.strip().lower()
    if value in ("week", "month", "auto"):
        return ChunkRule(value)
    match = _DAYS.match(value)
    # A digit string too long for `int` is out of range as well.
    days = int(match.group(1)) if match and len(match.group(1).lstrip("0")) <= 9 else -1
    if match and 1 <= days <= MAX_CHUNK_DAYS:
        return ChunkRule("days", days)
    if match:
        raise ValueError(
            f"chunk rule {text!r} is out of range: Nd takes N from 1 to {MAX_CHUNK_DAYS} days"
        )
    raise ValueError(f"unknown chunk rule {text!r}: use Nd (e.g. 1d, 7d, 30d), week, month or auto")


def _next_boundary(day: date, rule: ChunkRule, origin: date = EPOCH) -> date:
    """The first day of the chunk after the one containing `day` (`Nd` spans counted from
    `origin`)."""
    if rule.kind == "week":
        return day + timedelta(days=7 - day.weekday())
    if rule.kind == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    offset = (day - origin).days % rule.days
    return day + timedelta(days=rule.days - offset)


def chunk_range(
    start: date, end: date, rule: ChunkRule, *, auto_days: int | None = None
) -> list[Chunk]:
    """The chunks of `[start, end]` (both included). `auto` uses `auto_days` (see `auto_span`)."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    if rule.kind == "auto":
        rule = ChunkRule("days", auto_days or DEFAULT_AUTO_DAYS)
    chunks: list[Chunk] = []
    day = start
    while day <= end:
        following = _next_boundary(day, rule, start if rule.from_start else EPOCH)
        last = min(end, following - timedelta(days=1))
        chunks.append(Chunk(day, last))
        day = last + timedelta(days=1)
    return chunks


def auto_span(
    rows_per_day: float | None,
    *,
    row_target: int = DEFAULT_ROW_TARGET,
    default_days: int = DEFAULT_AUTO_DAYS,
    spans: tuple[int, ...] = AUTO_SPANS,
    start: date | None = None,
    end: date | None = None,
    submits_left: int | None = None,
) -> int:
    """The largest span whose expected rows stay under `row_target` (one day when even one day
    is over the target): the fewest submits the row target allows.

    Before anything is known, `default_days`; but when `[start, end]` in such chunks would need
    more submits than `submits_left` (the export's share of today's quota), the smallest larger
    span that fits (or the largest span) instead, so the range is not spread over more quota days
    than needed only because no rows were seen yet."""
    if rows_per_day is None or rows_per_day < 0:
        if start is None or end is None or submits_left is None:
            return default_days
        larger = sorted({default_days, *(span for span in spans if span > default_days)})
        for span in larger:
            if len(chunk_range(start, end, ChunkRule("days", span))) <= max(1, submits_left):
                return span
        return larger[-1]
    fitting = [span for span in spans if rows_per_day * span <= row_target]
    return max(fitting) if fitting else min(spans)


def chunks_with_record(
    recorded: Sequence[Chunk], start: date, end: date, *, auto_days: int
) -> list[Chunk]:
    """The `auto` chunks of `[start, end]` when earlier runs recorded `recorded`: each recorded
    chunk that lies wholly inside the range, verbatim; the days they leave uncovered (before,
    between, after), chunked afresh in `auto_days` spans (epoch-aligned, clipped to the gap).

    A recorded chunk only partly inside the range is not used: its days inside the range are
    chunked afresh (its file covers days the range does not ask for). Recorded chunks are
    expected not to overlap; one that overlaps a chunk already kept is ignored."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    rule = ChunkRule("days", auto_days)
    chunks: list[Chunk] = []
    day = start  # the first day not covered yet
    for piece in sorted(set(recorded)):
        if piece.start < day or piece.end > end:
            continue  # before the range, overlapping a kept chunk, or past the range's end
        if piece.start > day:
            chunks.extend(chunk_range(day, piece.start - timedelta(days=1), rule))
        chunks.append(piece)
        day = piece.end + timedelta(days=1)
    if day <= end:
        chunks.extend(chunk_range(day, end, rule))
    return chunks


def record_after(recorded: Sequence[Chunk], planned: Sequence[Chunk]) -> list[Chunk]:
    """What to record once `planned` (the chunks of a range, without overlap, as
    `chunks_with_record` makes them) is chosen: `planned`, and every recorded chunk that
    overlaps none of it (the days outside the range keep their chunks). Sorted."""
    mine = sorted(set(planned))
    ends = [piece.end for piece in mine]

    def overlaps(piece: Chunk) -> bool:
        # The first planned chunk that ends on or after `piece` starts is the only candidate.
        index = bisect_left(ends, piece.start)
        return index < len(mine) and mine[index].start <= piece.end

    return sorted([*mine, *(piece for piece in set(recorded) if not overlaps(piece))])
