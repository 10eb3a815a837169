"""Smoke test of the strategies benchmark: a tiny backfill against the real sandbox
(its own process), the library beside the resubmit baseline, first and second run."""

from __future__ import annotations

import pytest

from benchmarks import strategies


def test_strategies_library_second_run_is_free_and_resubmit_is_not() -> None:
    args = strategies.parse_args(
        [
            "--days",
            "14",
            "--reports",
            "1",
            "--rounds",
            "1",
            "--scale",
            "600",
            "--job-duration",
            "30-300",
            "--methods",
            "library-polling,resubmit,naive",
            "--no-write",
        ]
    )
    figures = strategies.benchmark(args)
    table = strategies.medians(figures)
    calls = table["calls_per_chunk"]
    second = table["calls_second_run"]
    assert table["chunks"] == {"library-polling": 2, "resubmit": 2, "naive": 2}
    # The library: one submit and one download per chunk, listing calls shared by all jobs.
    assert table["ReportExport_per_chunk"]["library-polling"] == 1
    assert table["Download_per_chunk"]["library-polling"] == 1
    # Polling every job every 5 s costs far more than the library's listing ticks.
    assert calls["naive"] > 2 * calls["library-polling"]
    # The ledger: a second run costs nothing; without one, every chunk is submitted again.
    assert second["library-polling"] == 0
    assert second["resubmit"] > 0
    assert table["quota_second_run"]["resubmit"] == 2
    assert table["rate_limited"] == pytest.approx(dict.fromkeys(table["rate_limited"], 0))
    section = strategies.render_section(args, figures, "python -m benchmarks.strategies")
    assert "| API calls per chunk |" in section


def test_sync_days_sync_is_complete_where_the_alternatives_are_not() -> None:
    """Smoke test of the daily-sync benchmark: 3 simulated days."""
    from benchmarks import sync_days

    figures = sync_days.benchmark(3)
    sync = figures["sync"]
    reexport = figures["re-export last N days"]
    never = figures["backfill, never refreshed"]
    # Each later day: one submit per report, one replay per unsettled chunk (3 per report).
    assert sync.quota_per_day[1:] == [2, 2]
    assert sync.replays == 2 * 2 * 3
    assert sync.settled_missing == 0
    assert never.settled_missing > 0
    # Identical re-exports spend quota and return the old job: nothing is refreshed.
    assert reexport.quota_per_day[1:] == [8, 8]
    assert reexport.settled_missing > 0
    section = sync_days.render_section(3, figures, "python -m benchmarks.sync_days --days 3")
    assert "| Rows missing, settled days | 0 |" in section
