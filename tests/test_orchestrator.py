"""Backfills against the sandbox: chunked, quota-aware, tracked with one listing call per tick,
resumable, merged. Time is the sandbox's (`SandboxTime`): the client's sleeps move its clock."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import anyio
import pytest

from reportexport_async import (
    ConfigurationError,
    ExportRequest,
)
from reportexport_async.jobs.orchestrator import ExportSpec, ProgressEvent, backfill

from .conftest import SANDBOX_START, simulated_account

REPORTS = ["mp_action_listing_fast", "mp_performance_by_day", "mp_clicks_by_day"]
YEAR_START, YEAR_END = date(2025, 1, 1), date(2025, 12, 31)


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


async def test_year_in_weekly_chunks_for_three_reports_merges_to_the_whole_range(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    specs = [ExportSpec(report) for report in REPORTS]
    async with simulated_account(tmp_path, daily_export_limit=0, daily_limit=None) as (
        sandbox,
        client,
        ledger,
    ):
        result = await backfill(
            client, ledger, specs, YEAR_START, YEAR_END, out_dir=out, chunk="7d", merge=True
        )
        first_stats = sandbox.stats()
        # One export of the whole range per report, to compare row by row.
        whole = {}
        for report in REPORTS:
            ticket = await client.export(
                ExportRequest(report_id=report, start=YEAR_START, end=YEAR_END)
            )
            await client.wait(ticket.job_id)
            whole[report] = await client.download(ticket.job_id, tmp_path / f"{report}.whole")
        sandbox.reset()
        again = await backfill(
            client, ledger, specs, YEAR_START, YEAR_END, out_dir=out, chunk="7d", merge=True
        )
        second_stats = sandbox.stats()
    chunks_per_report = 53  # 2025-01-01 (a Wednesday) to 2025-12-31 in epoch-aligned weeks
    assert result.counts == {
        "done": 3 * chunks_per_report,
        "failed": 0,
        "pending": 0,
        "deferred": 0,
        "stuck": 0,
    }
    assert first_stats["calls"]["ReportExport"] == 3 * chunks_per_report
    assert first_stats["calls"]["Download"] == 3 * chunks_per_report
    assert first_stats["rate_limited"] == 0
    for report in REPORTS:
        merged = out / f"{report}.csv"
        assert merged in result.merged
        assert rows_of(merged) == rows_of(whole[report].path)
        assert len(rows_of(merged)) == 1 + 365 * 4
    assert again.complete
    assert second_stats["total_calls"] == 0  # the second run costs no call at all
    manifest = json.loads(result.manifest_path.read_text())  # type: ignore[union-attr]
    assert len(manifest["chunks"]) == 3 * chunks_per_report
    first_chunk = manifest["chunks"][0]
    assert first_chunk["status"] == "done"
    assert (out / first_chunk["path"]).read_bytes()
    assert {"report", "start", "end", "job_id", "rows", "bytes", "sha256", "path"} <= set(
        first_chunk
    )


async def test_quota_of_100_with_156_new_chunks_leaves_56_pending_until_the_reset(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    specs = [ExportSpec(REPORTS[0]), ExportSpec(REPORTS[1]), ExportSpec(REPORTS[2])]
    start, end = date(2025, 1, 6), date(2025, 1, 6) + timedelta(days=51)  # 52 days x 3 reports
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        first = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="1d")
        stats_first = sandbox.stats()
        sandbox.advance(24 * 3600)
        second = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="1d")
        stats_second = sandbox.stats()
    assert len(first.chunks) == 156
    assert first.counts == {"done": 100, "failed": 0, "pending": 56, "deferred": 0, "stuck": 0}
    assert first.pending_resets_at == (SANDBOX_START + timedelta(days=1)).replace(hour=0)
    assert stats_first["calls"]["ReportExport"] == 100
    assert stats_first["rate_limited"] == 0
    assert second.complete
    assert stats_second["calls"]["ReportExport"] == 156  # 56 more, nothing else submitted
    assert stats_second["jobs_created"] == 156
    assert stats_second["rate_limited"] == 0


async def test_fifty_jobs_in_flight_cost_one_status_call_per_tick(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    async with simulated_account(tmp_path, job_duration=(600, 600)) as (sandbox, client, ledger):
        result = await backfill(
            client,
            ledger,
            [ExportSpec(REPORTS[0])],
            date(2025, 1, 1),
            date(2025, 2, 19),
            out_dir=tmp_path / "out",
            chunk="1d",
            on_event=events.append,
        )
        stats = sandbox.stats()
    assert result.complete
    assert len(result.chunks) == 50
    submitted = [e for e in events if e.status == "submitted"]
    assert len(submitted) == 50
    # Jobs take 600 s; ticks of ~10 s: about 60 ticks, each one listing call for all 50 jobs.
    status_calls = stats["calls"]["ListJobs"] + stats["calls"]["GetJob"]
    assert status_calls <= 70
    # One GET of a single job is cheaper than a listing: only while one job is in flight (the
    # probe submit of a report never used before, the last one to finish).
    assert stats["calls"]["GetJob"] <= 5
    assert stats["rate_limited"] == 0


async def test_dry_run_plans_and_costs_without_any_call(tmp_path: Path) -> None:
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        await backfill(
            client, ledger, [ExportSpec(REPORTS[0])], date(2025, 1, 1), date(2025, 1, 14),
            out_dir=tmp_path / "out", chunk="7d",
        )  # fmt: skip
        sandbox.reset()
        result = await backfill(
            client, ledger, [ExportSpec(REPORTS[0])], date(2025, 1, 1), date(2025, 3, 31),
            out_dir=tmp_path / "out", chunk="7d", dry_run=True,
        )  # fmt: skip
        stats = sandbox.stats()
    assert result.dry_run
    assert stats["total_calls"] == 0
    cost = result.plan.cost
    assert cost.chunks == 14  # epoch-aligned weeks (Monday to Sunday) of Q1 2025
    # Jan 1-5 and 6-12 are done; the earlier run's Jan 13-14 is not this run's Jan 13-19.
    assert cost.done == 2
    assert cost.submits == 12
    assert cost.quota_days == 1
    assert cost.quota_left_today == 97


async def test_cancelled_halfway_then_resumed_makes_no_duplicate_submit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    specs = [ExportSpec(REPORTS[0])]
    start, end = date(2025, 3, 1), date(2025, 4, 29)
    async with simulated_account(tmp_path, job_duration=(60, 600)) as (sandbox, client, ledger):
        done = 0

        def count(event: ProgressEvent) -> None:
            nonlocal done
            if event.status == "done":
                done += 1
                if done == 20:
                    scope.cancel()

        with anyio.CancelScope() as scope:
            await backfill(
                client, ledger, specs, start, end, out_dir=out, chunk="1d", on_event=count
            )
        halfway = sandbox.stats()
        resumed = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="1d")
        stats = sandbox.stats()
    assert scope.cancelled_caught
    assert 20 <= halfway["jobs_created"] <= 60
    assert resumed.complete
    assert stats["jobs_created"] == 60  # every chunk has exactly one job
    # A submit cancelled after the server made its job but before the answer was recorded is
    # sent again on resume and answered with the same job (docs/api-facts.md §1d): at most one per
    # submitter (4) that was mid-call when the cancel came.
    assert 60 <= stats["calls"]["ReportExport"] <= 64
    assert not list(out.rglob("*.part"))
    manifest = json.loads((out / "manifest.json").read_text())
    for chunk in manifest["chunks"]:
        assert chunk["status"] == "done"
        assert (out / chunk["path"]).stat().st_size == chunk["bytes"]


async def test_failed_jobs_are_replayed_and_one_failure_never_stops_the_others(
    tmp_path: Path,
) -> None:
    async with simulated_account(tmp_path, faults={"job_fail": 0.3}, seed=2) as (
        sandbox,
        client,
        ledger,
    ):
        events: list[ProgressEvent] = []
        result = await backfill(
            client, ledger, [ExportSpec(REPORTS[0])], date(2025, 1, 1), date(2025, 1, 20),
            out_dir=tmp_path / "out", chunk="1d", wait_for_replays=True, on_event=events.append,
        )  # fmt: skip
        stats = sandbox.stats()
    assert stats["faults_injected"]["job_fail"] >= 3
    assert stats["replays"] >= 3
    # The hour before a replay is allowed is announced, with its end, never waited in silence.
    waits = [e for e in events if e.kind == "wait" and "to replay job" in (e.message or "")]
    assert len(waits) >= 3
    assert all(e.until is not None and e.until.isoformat()[:16] in (e.message or "") for e in waits)
    assert result.counts["done"] >= 17
    assert result.counts["done"] + result.counts["failed"] == 20
    assert stats["calls"]["ReportExport"] == 20


async def test_stuck_jobs_are_reported_not_resubmitted(tmp_path: Path) -> None:
    async with simulated_account(tmp_path, faults={"job_stuck": 1.0}) as (sandbox, client, ledger):
        result = await backfill(
            client, ledger, [ExportSpec(REPORTS[0])], date(2025, 1, 1), date(2025, 1, 3),
            out_dir=tmp_path / "out", chunk="1d", stuck_after=timedelta(hours=2),
        )  # fmt: skip
        stats = sandbox.stats()
    assert result.counts == {"done": 0, "failed": 0, "pending": 0, "deferred": 0, "stuck": 3}
    assert stats["calls"]["ReportExport"] == 3


@pytest.mark.parametrize(
    ("start", "end", "chunk", "message"),
    [
        (date(2025, 2, 1), date(2025, 1, 1), "7d", "after it ends"),
        (date(2025, 1, 1), date(2031, 1, 1), "7d", "in the future"),
        (date(2025, 1, 1), date(2025, 2, 1), "fortnight", "unknown chunk rule"),
    ],
)
async def test_bad_input_fails_before_any_call(
    tmp_path: Path, start: date, end: date, chunk: str, message: str
) -> None:
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        with pytest.raises((ConfigurationError, ValueError), match=message):
            await backfill(
                client, ledger, [ExportSpec(REPORTS[0])], start, end, out_dir=tmp_path / "o",
                chunk=chunk,
            )  # fmt: skip
        assert sandbox.stats()["total_calls"] == 0


async def test_unwritable_output_folder_fails_before_any_call(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        with pytest.raises(ConfigurationError, match="out_dir"):
            await backfill(
                client, ledger, [ExportSpec(REPORTS[0])], date(2025, 1, 1), date(2025, 1, 2),
                out_dir=blocker / "out",
            )  # fmt: skip
        assert sandbox.stats()["total_calls"] == 0


def files_in(out: Path) -> set[Path]:
    return {path.relative_to(out) for path in out.rglob("*") if path.is_file()}


async def test_auto_chunks_are_recorded_so_a_rerun_costs_nothing_and_an_extension_only_new_days(
    tmp_path: Path,
) -> None:
    """The first run knows no rows per day (7-day chunks); later runs know 4 rows a day, for
    which the auto rule alone would pick 364-day chunks and export the quarter again."""
    out = tmp_path / "out"
    specs = [ExportSpec(REPORTS[0])]
    start, end = date(2025, 1, 1), date(2025, 3, 31)
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        first = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="auto")
        first_stats = sandbox.stats()
        sandbox.reset()
        dry = await backfill(
            client, ledger, specs, start, end, out_dir=out, chunk="auto", dry_run=True
        )
        second = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="auto")
        second_stats = sandbox.stats()
        second_files = files_in(out)
        sandbox.reset()
        wider_start, wider_end = date(2024, 12, 16), date(2025, 4, 20)
        third = await backfill(
            client, ledger, specs, wider_start, wider_end, out_dir=out, chunk="auto"
        )
        third_stats = sandbox.stats()
    planned = [p.chunk for p in first.plan.chunks]
    assert first.complete
    assert len(planned) == 14  # nothing known yet: epoch-aligned weeks
    assert first_stats["calls"]["ReportExport"] == 14
    # The dry run shows the plan the real run uses, and the real run costs nothing.
    assert [p.chunk for p in dry.plan.chunks] == planned
    assert dry.plan.cost.submits == 0
    assert [p.chunk for p in second.plan.chunks] == planned
    assert second.complete
    assert sum(second.calls.values()) == 0
    assert second_stats["total_calls"] == 0
    assert second_files == {Path("manifest.json")} | {p.path for p in second.plan.chunks}
    # The extended range keeps every recorded chunk and submits only the new days.
    wider = [p.chunk for p in third.plan.chunks]
    new = [c for c in wider if c not in planned]
    assert set(planned) <= set(wider)
    assert sorted(wider) == wider
    assert wider[0].start == wider_start
    assert wider[-1].end == wider_end
    assert sum(c.days for c in wider) == (wider_end - wider_start).days + 1
    assert sum(c.days for c in new) == 16 + 20  # Dec 16-31 and Apr 1-20
    assert all(c.end < start or c.start > end for c in new)
    assert third.complete
    assert third_stats["calls"]["ReportExport"] == len(new) == third.plan.cost.submits
    assert files_in(out) == {Path("manifest.json")} | {p.path for p in third.plan.chunks}


async def test_auto_chunks_are_recorded_before_the_first_submit_so_a_crash_resumes_them(
    tmp_path: Path,
) -> None:
    """Cancelled once a chunk is done (its rows per day now known, for which the auto rule alone
    would pick one 364-day chunk): the resumed run plans the recorded chunks, no job twice."""
    out = tmp_path / "out"
    specs = [ExportSpec(REPORTS[0])]
    start, end = date(2025, 1, 1), date(2025, 3, 31)
    plans = []
    async with simulated_account(tmp_path, job_duration=(60, 600)) as (sandbox, client, ledger):

        def watch(event: ProgressEvent) -> None:
            if event.plan is not None:
                plans.append([p.chunk for p in event.plan.chunks])
            if event.status == "done":
                scope.cancel()

        with anyio.CancelScope() as scope:
            await backfill(
                client, ledger, specs, start, end, out_dir=out, chunk="auto", on_event=watch
            )
        halfway = sandbox.stats()
        resumed = await backfill(client, ledger, specs, start, end, out_dir=out, chunk="auto")
        stats = sandbox.stats()
    assert scope.cancelled_caught
    assert halfway["jobs_created"] >= 1
    assert len(plans[0]) == 14
    assert [p.chunk for p in resumed.plan.chunks] == plans[0]
    assert resumed.complete
    assert stats["jobs_created"] == 14  # each recorded chunk has exactly one job
    assert files_in(out) == {Path("manifest.json")} | {p.path for p in resumed.plan.chunks}


async def test_an_export_given_twice_is_planned_and_pulled_once(tmp_path: Path) -> None:
    """The same report with the same filters and format (`csv` is `CSV`, 3629 is "3629"), given
    again, is merged into the first before planning: one submit and one download per chunk."""
    specs = [
        ExportSpec(REPORTS[2]),
        ExportSpec(REPORTS[1], {"SUBAID": 3629}),
        ExportSpec(REPORTS[2], {}, "csv"),
        ExportSpec(REPORTS[1], {"SUBAID": "3629"}),
    ]
    events: list[ProgressEvent] = []
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        result = await backfill(
            client, ledger, specs, date(2025, 1, 1), date(2025, 1, 31),
            out_dir=tmp_path / "out", chunk="7d", on_event=events.append,
        )  # fmt: skip
        stats = sandbox.stats()
    weeks = 5  # Jan 1-5, 6-12, 13-19, 20-26, 27-31
    assert stats["calls"]["ReportExport"] == 2 * weeks
    assert stats["calls"]["Download"] == 2 * weeks
    assert result.plan.cost.chunks == result.plan.cost.submits == 2 * weeks
    assert [p.report_id for p in result.plan.chunks] == [REPORTS[2]] * weeks + [REPORTS[1]] * weeks
    assert result.counts["done"] == 2 * weeks
    duplicates = [e for e in events if e.kind == "duplicate"]
    assert [e.report_id for e in duplicates] == [REPORTS[2], REPORTS[1]]
    assert events.index(duplicates[-1]) < [e.kind for e in events].index("plan")
    manifest = json.loads(result.manifest_path.read_text())  # type: ignore[union-attr]
    assert len(manifest["chunks"]) == 2 * weeks


async def test_exports_that_differ_are_kept_and_ones_sharing_files_are_refused(
    tmp_path: Path,
) -> None:
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        # Other filters or another format: other exports, in other files.
        result = await backfill(
            client, ledger,
            [ExportSpec(REPORTS[0]), ExportSpec(REPORTS[0], {"SUBAID": "1"}),
             ExportSpec(REPORTS[0], {"SUBAID": "2"}), ExportSpec(REPORTS[0], {}, "JSON")],
            date(2025, 1, 6), date(2025, 1, 12), out_dir=tmp_path / "out", dry_run=True,
        )  # fmt: skip
        paths = [str(p.path) for p in result.plan.chunks]
        assert len(set(paths)) == len(paths) == 4
        # Different report ids whose folders are one (`:` becomes `_`; `R` and `r` are one
        # folder on a case-insensitive file system): refused before any call.
        for pair in (["mp:x", "mp_x"], ["Mp_Clicks", "mp_clicks"]):
            with pytest.raises(ConfigurationError, match="would write to the same files"):
                await backfill(
                    client, ledger, [ExportSpec(r) for r in pair], date(2025, 1, 6),
                    date(2025, 1, 12), out_dir=tmp_path / "out",
                )  # fmt: skip
        assert sandbox.stats()["total_calls"] == 0


async def test_one_report_in_two_formats_merges_into_one_file_per_format(tmp_path: Path) -> None:
    out = tmp_path / "out"
    specs = [ExportSpec(REPORTS[2]), ExportSpec(REPORTS[2], {}, "JSON")]
    async with simulated_account(tmp_path) as (_, client, ledger):
        result = await backfill(
            client, ledger, specs, date(2025, 1, 1), date(2025, 1, 14), out_dir=out,
            chunk="7d", merge=True,
        )  # fmt: skip
    assert sorted(result.merged) == [out / f"{REPORTS[2]}.csv", out / f"{REPORTS[2]}.json"]
    rows = rows_of(out / f"{REPORTS[2]}.csv")
    assert rows[0][0] == "Date"
    assert len(rows) == 1 + 14 * 4
    records = json.loads((out / f"{REPORTS[2]}.json").read_text())
    assert len(records) == 14 * 4
