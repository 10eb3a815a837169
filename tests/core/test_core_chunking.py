"""Chunking, planning and tick arithmetic: pure functions, tables and Hypothesis properties."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reportexport_async.core.chunking import (
    AUTO_SPANS,
    EPOCH,
    Chunk,
    ChunkRule,
    auto_span,
    chunk_range,
    chunks_with_record,
    parse_chunk_rule,
    record_after,
)
from reportexport_async.core.models import ExportRequest, JobStatus
from reportexport_async.core.planning import Known, chunk_path, plan_chunks, safe_name
from reportexport_async.core.tracking import TickPolicy, calls_per_tick, tick_interval

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31))
rules = st.one_of(
    st.integers(min_value=1, max_value=400).map(lambda n: ChunkRule("days", n)),
    st.sampled_from([ChunkRule("week"), ChunkRule("month")]),
)


@settings(max_examples=300, deadline=None)
@given(start=days, length=st.integers(min_value=0, max_value=900), rule=rules)
def test_chunks_cover_the_range_in_order_without_gap_or_overlap(
    start: date, length: int, rule: ChunkRule
) -> None:
    end = start + timedelta(days=length)
    chunks = chunk_range(start, end, rule)
    assert chunks[0].start == start
    assert chunks[-1].end == end
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end + timedelta(days=1)  # no gap, no overlap, ordered
    assert sum(chunk.days for chunk in chunks) == length + 1
    for chunk in chunks:
        if rule.kind == "days":
            assert chunk.days <= rule.days
        elif rule.kind == "week":
            assert chunk.start.isocalendar()[:2] == chunk.end.isocalendar()[:2]
        else:
            assert (chunk.start.year, chunk.start.month) == (chunk.end.year, chunk.end.month)


@settings(max_examples=300, deadline=None)
@given(start=days, length=st.integers(min_value=0, max_value=900), rule=rules)
def test_inner_chunks_are_aligned(start: date, length: int, rule: ChunkRule) -> None:
    chunks = chunk_range(start, start + timedelta(days=length), rule)
    for chunk in chunks[1:]:
        if rule.kind == "days":
            assert (chunk.start - EPOCH).days % rule.days == 0
        elif rule.kind == "week":
            assert chunk.start.weekday() == 0
        else:
            assert chunk.start.day == 1


@settings(max_examples=200, deadline=None)
@given(start=days, extra=st.integers(min_value=0, max_value=300), n=st.integers(1, 60))
def test_overlapping_backfills_share_their_inner_chunks(start: date, extra: int, n: int) -> None:
    """Aligned to an epoch, not to the range: a later, longer backfill reuses the chunks (and
    so the ledger entries) of an earlier one wherever both are whole."""
    rule = ChunkRule("days", n)
    first = chunk_range(start, start + timedelta(days=200), rule)
    second = chunk_range(start - timedelta(days=extra), start + timedelta(days=400), rule)
    assert set(first[1:-1]) <= set(second)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("7d", ChunkRule("days", 7)),
        ("1D", ChunkRule("days", 1)),
        (" week ", ChunkRule("week")),
        ("month", ChunkRule("month")),
        ("auto", ChunkRule("auto")),
    ],
)
def test_parse_chunk_rule(text: str, rule: ChunkRule) -> None:
    assert parse_chunk_rule(text) == rule


@pytest.mark.parametrize("text", ["0d", "7", "d", "fortnight", "-1d", "9999d", ""])
def test_parse_chunk_rule_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="chunk rule"):
        parse_chunk_rule(text)


def test_chunk_range_refuses_a_reversed_range_and_auto_uses_its_span() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        chunk_range(date(2025, 2, 1), date(2025, 1, 1), ChunkRule("week"))
    auto = chunk_range(date(2025, 1, 6), date(2025, 2, 2), ChunkRule("auto"), auto_days=14)
    assert [c.days for c in auto] == [14, 14]


@pytest.mark.parametrize(
    ("rows_per_day", "target", "expected"),
    [
        (None, 1000, 7),  # nothing known: the default span
        (10.0, 1000, 91),
        (100.0, 1000, 7),
        (100_000.0, 1000, 1),  # even one day is over the target: one day
        (0.0, 1000, 364),
    ],
)
def test_auto_span(rows_per_day: float | None, target: int, expected: int) -> None:
    assert auto_span(rows_per_day, row_target=target) == expected


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(min_value=0.01, max_value=1e6), target=st.integers(1, 10**7))
def test_auto_span_keeps_rows_under_target_when_possible(rate: float, target: int) -> None:
    span = auto_span(rate, row_target=target)
    assert span == 1 or rate * span <= target


@pytest.mark.parametrize(
    ("days", "left", "expected"),
    [
        (56, 100, 7),  # 8 weekly chunks fit: the default span
        (730, 100, 14),  # two years: 105 weekly chunks would not fit, 53 fortnightly ones do
        (730, 20, 91),
        (3650, 5, 364),  # nothing fits: the largest span
        (730, None, 7),  # no daily quota: the default
    ],
)
def test_auto_span_before_any_rows_are_known_fits_the_quota(
    days: int, left: int | None, expected: int
) -> None:
    start = date(2024, 1, 1)
    end = start + timedelta(days=days - 1)
    assert auto_span(None, start=start, end=end, submits_left=left) == expected


@settings(max_examples=200, deadline=None)
@given(start=days, length=st.integers(0, 4000), left=st.integers(0, 200))
def test_auto_span_unknown_rows_never_needs_more_submits_than_the_default(
    start: date, length: int, left: int
) -> None:
    end = start + timedelta(days=length)
    span = auto_span(None, start=start, end=end, submits_left=left)
    chunks = len(chunk_range(start, end, ChunkRule("days", span)))
    default = len(chunk_range(start, end, ChunkRule("days", 7)))
    assert span >= 7
    assert chunks <= default
    assert chunks <= max(1, left) or span == max(AUTO_SPANS)


@st.composite
def records(draw: st.DrawFn) -> list[Chunk]:
    """Chunks without overlap, as the ledger records them: runs of chunks with gaps between."""
    day = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2024, 12, 31)))
    chunks = []
    for _ in range(draw(st.integers(0, 25))):
        day += timedelta(days=draw(st.integers(0, 40)))
        length = draw(st.integers(1, 120))
        chunks.append(Chunk(day, day + timedelta(days=length - 1)))
        day += timedelta(days=length)
    return chunks


@st.composite
def ranges(draw: st.DrawFn) -> tuple[date, date]:
    start = draw(st.dates(min_value=date(2019, 6, 1), max_value=date(2026, 6, 1)))
    return start, start + timedelta(days=draw(st.integers(0, 800)))


def tiles(chunks: list[Chunk], start: date, end: date) -> bool:
    """In order, from `start` to `end`, no gap and no overlap."""
    return (
        chunks[0].start == start
        and chunks[-1].end == end
        and all(b.start == a.end + timedelta(days=1) for a, b in itertools.pairwise(chunks))
    )


@settings(max_examples=300, deadline=None)
@given(recorded=records(), span_of_days=ranges(), span=st.sampled_from(AUTO_SPANS))
def test_a_record_is_reused_verbatim_and_the_rest_is_chunked_afresh(
    recorded: list[Chunk], span_of_days: tuple[date, date], span: int
) -> None:
    start, end = span_of_days
    chunks = chunks_with_record(recorded, start, end, auto_days=span)
    assert tiles(chunks, start, end)
    inside = [c for c in recorded if start <= c.start and c.end <= end]
    assert set(inside) <= set(chunks)  # recorded pieces inside the range, kept verbatim
    for fresh in set(chunks) - set(inside):
        assert fresh.days <= span
        # a fresh chunk only covers days no kept recorded chunk covers
        assert not any(c.start <= fresh.end and fresh.start <= c.end for c in inside)
    if not inside:
        assert chunks == chunk_range(start, end, ChunkRule("days", span))


@settings(max_examples=300, deadline=None)
@given(
    recorded=records(),
    span_of_days=ranges(),
    span=st.sampled_from(AUTO_SPANS),
    later=st.sampled_from(AUTO_SPANS),
    before=st.integers(0, 100),
    after=st.integers(0, 100),
)
def test_after_recording_a_rerun_plans_the_same_and_an_extension_keeps_it(
    recorded: list[Chunk],
    span_of_days: tuple[date, date],
    span: int,
    later: int,
    before: int,
    after: int,
) -> None:
    start, end = span_of_days
    chunks = chunks_with_record(recorded, start, end, auto_days=span)
    record = record_after(recorded, chunks)
    assert record == sorted(record)
    assert all(b.start > a.end for a, b in itertools.pairwise(record))  # no overlap
    assert set(chunks) <= set(record)
    outside = [c for c in recorded if c.end < start or c.start > end]
    assert set(outside) <= set(record)  # other days keep their chunks
    assert set(record) <= set(chunks) | set(recorded)
    # The same range again, whatever span the rows now suggest: the same chunks.
    assert chunks_with_record(record, start, end, auto_days=later) == chunks
    # A wider range: the recorded chunks stay, only the new days are chunked afresh.
    wider_start, wider_end = start - timedelta(days=before), end + timedelta(days=after)
    wider = chunks_with_record(record, wider_start, wider_end, auto_days=later)
    assert tiles(wider, wider_start, wider_end)
    assert set(chunks) <= set(wider)
    for fresh in set(wider) - set(record):
        assert fresh.end < start or fresh.start > end


@pytest.mark.parametrize(
    ("recorded", "start", "end", "expected"),
    [
        # nothing recorded: chunked afresh (14-day spans from the epoch: Jan 6, Jan 20, ...)
        ([], "2025-01-01", "2025-01-20", ["01-01..01-05", "01-06..01-19", "01-20..01-20"]),
        # the same range: the recorded chunks, whatever the span
        (
            ["01-01..01-05", "01-06..01-12", "01-13..01-19"],
            "2025-01-01",
            "2025-01-19",
            ["01-01..01-05", "01-06..01-12", "01-13..01-19"],
        ),
        # extended on both sides: the recorded chunks stay, the new days are chunked afresh
        (
            ["01-06..01-12", "01-13..01-19"],
            "2025-01-01",
            "2025-01-29",
            ["01-01..01-05", "01-06..01-12", "01-13..01-19", "01-20..01-26", "01-27..01-29"],
        ),
        # a subset: whole recorded chunks inside it are kept; one only partly inside is not,
        # its days inside the range are chunked afresh
        (
            ["01-01..01-05", "01-06..01-12", "01-13..01-19"],
            "2025-01-03",
            "2025-01-12",
            ["01-03..01-05", "01-06..01-12"],
        ),
        (
            ["01-01..01-19"],
            "2025-01-06",
            "2025-01-26",
            ["01-06..01-12", "01-13..01-19", "01-20..01-26"],
        ),
    ],
)
def test_chunks_with_record_table(
    recorded: list[str], start: str, end: str, expected: list[str]
) -> None:
    def chunk(text: str) -> Chunk:
        first, last = text.split("..")
        return Chunk(date.fromisoformat(f"2025-{first}"), date.fromisoformat(f"2025-{last}"))

    span = 14 if not recorded else 7
    chunks = chunks_with_record(
        [chunk(c) for c in recorded],
        date.fromisoformat(start),
        date.fromisoformat(end),
        auto_days=span,
    )
    assert chunks == [chunk(c) for c in expected]


def test_record_after_replaces_a_partly_covered_chunk_and_keeps_the_others() -> None:
    jan = Chunk(date(2025, 1, 1), date(2025, 1, 19))
    feb = Chunk(date(2025, 2, 1), date(2025, 2, 28))
    planned = chunks_with_record([jan, feb], date(2025, 1, 6), date(2025, 1, 26), auto_days=7)
    assert record_after([jan, feb], planned) == [*planned, feb]


def test_safe_names_and_paths_never_escape_the_output_folder() -> None:
    for hostile in ("../x", "a/b", "..", ".hidden", "con\x00trol", "", "a b"):
        name = safe_name(hostile)
        assert "/" not in name
        assert name not in ("", ".", "..")
        assert not name.startswith(".")
    request = ExportRequest(report_id="r1", start=date(2025, 1, 1), end=date(2025, 1, 7))
    path = chunk_path(request, Chunk(date(2025, 1, 1), date(2025, 1, 7)))
    assert str(path) == "r1/2025-01-01_2025-01-07.csv"
    filtered = request.model_copy(update={"filters": {"SUBAID": "1"}})
    other = request.model_copy(update={"filters": {"SUBAID": "2"}})
    assert chunk_path(filtered, Chunk(date(2025, 1, 1), date(2025, 1, 7))).parent != (
        chunk_path(other, Chunk(date(2025, 1, 1), date(2025, 1, 7))).parent
    )


def test_plan_states_and_cost() -> None:
    request = ExportRequest(report_id="r", start=date(2025, 1, 1), end=date(2025, 1, 1))
    chunk = Chunk(date(2025, 1, 1), date(2025, 1, 1))
    items = [(request, chunk, f"k{n}", "{}") for n in range(250)]
    known = {
        "k0": Known("j0", JobStatus.COMPLETED, True),  # done
        "k1": Known("j1", JobStatus.COMPLETED, False),  # file missing: re-download
        "k2": Known("j2", JobStatus.RUNNING, False),  # in flight: re-attach
        "k3": Known(None, None, False),  # intent without a job id: submit
    }
    plan = plan_chunks(items, known, quota_left_today=40, daily_limit=100)
    assert [p.state for p in plan.chunks[:4]] == ["done", "attach", "attach", "new"]
    cost = plan.cost
    assert (cost.done, cost.reattach, cost.submits, cost.downloads) == (1, 2, 247, 249)
    assert cost.quota_days == 4  # 40 today, then 100, 100, 7
    assert cost.status_calls_estimate > 0
    nothing = plan_chunks(items[:1], known, quota_left_today=0, daily_limit=100)
    assert (nothing.cost.submits, nothing.cost.quota_days, nothing.cost.status_calls_estimate) == (
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("jobs", "remaining", "seconds", "expected"),
    [
        (50, None, None, 10.0),  # nothing known: the base tick
        (50, 900, 3600, 10.0),  # plenty of budget: the base tick
        (50, 36, 3600, 100.0),  # 36 calls for an hour: one every 100 s
        (2500, 900, 3600, 12.0),  # three pages per tick
        (1, 0, 1800, 300.0),  # nothing left: wait (capped) for the reset
    ],
)
def test_tick_interval_adapts_to_budget_and_jobs(
    jobs: int, remaining: int | None, seconds: float | None, expected: float
) -> None:
    assert tick_interval(jobs, remaining=remaining, seconds_to_reset=seconds) == pytest.approx(
        expected
    )


@settings(max_examples=300, deadline=None)
@given(
    jobs=st.integers(1, 20000),
    remaining=st.integers(0, 5000),
    seconds=st.floats(min_value=0, max_value=3600),
)
def test_ticks_never_spend_more_than_the_budget(jobs: int, remaining: int, seconds: float) -> None:
    policy = TickPolicy()
    interval = tick_interval(jobs, remaining=remaining, seconds_to_reset=seconds, policy=policy)
    assert policy.minimum <= interval <= policy.maximum
    cost = calls_per_tick(jobs, policy.page_size)
    if cost <= remaining and interval < policy.maximum:
        # ticks that fit before the reset, times their cost, stay within what remains
        assert (seconds / interval) * cost <= remaining + cost


@pytest.mark.parametrize(
    ("age", "quiet", "expected"),
    [
        (None, 0, 10.0),  # nothing known: the base
        (30.0, 0, 10.0),  # young jobs: the base wins
        (120.0, 0, 20.0),  # 2 minutes old: looked at again after a sixth of that
        (120.0, 3, 33.75),  # quiet growth can win: 10 x 1.5^3
        (3600.0, 0, 60.0),  # never beyond the cap
    ],
)
def test_tick_grows_with_the_age_of_the_youngest_job(
    age: float | None, quiet: int, expected: float
) -> None:
    interval = tick_interval(
        5, remaining=None, seconds_to_reset=None, quiet=quiet, youngest_age=age
    )
    assert interval == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(duration=st.floats(min_value=60, max_value=24 * 3600))
def test_ticks_for_one_job_grow_so_its_status_calls_stay_few(duration: float) -> None:
    """Refreshing a job of any duration up to a day costs about age_divisor x ln(duration) calls
    before the cap, then one per cap: never one every base seconds, and the last refresh comes
    at most duration / age_divisor (or the cap) after the job is done."""
    policy = TickPolicy()
    now = ticks = 0.0
    while now < duration:
        step = tick_interval(1, remaining=None, seconds_to_reset=None, youngest_age=now)
        assert step <= max(policy.base, min(policy.cap, now / policy.age_divisor)) + 1e-9
        now += step
        ticks += 1
    assert now - duration <= max(policy.base, min(policy.cap, duration / policy.age_divisor))
    bound = policy.age_divisor * math.log(policy.cap * policy.age_divisor / policy.base) + 10
    assert ticks <= bound + duration / policy.cap
