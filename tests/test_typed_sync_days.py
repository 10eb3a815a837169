"""`reportexport sync --into duckdb:///… / parquet:///…` once a day for five sandbox days, each
run its own process, the sandbox (another process) moved a day between runs: after the settle
window, each report's table holds, for the settled days, exactly the rows of one whole-range
export (as a multiset), with typed date and number columns. And a SIGKILL between a chunk's
delete and its commit never leaves the chunk half replaced: the next run makes the table equal
the files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from reportexport_async.destinations.duckdb_table import PAUSE_ENV

from .test_sync_days import (
    DAY,
    FIRST,
    PY,
    REPORTS,
    SETTLE,
    check_next_day,
    cli,
    sandbox_process,
    write_config,
)
from .test_typed_destinations import as_text


def day_of(row: tuple[str, ...]) -> date | None:
    for cell in row:
        try:
            return date.fromisoformat(cell)
        except ValueError:
            continue
    return None


def csv_rows(path: Path, last: date | None = None) -> tuple[list[str], Counter[tuple[str, ...]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = Counter(
            tuple(row)
            for row in reader
            if last is None or ((d := day_of(tuple(row))) is not None and d <= last)
        )
    return header, rows


def source(kind: str, tmp_path: Path, report: str) -> str:
    if kind == "duckdb":
        return f"daily.{report}"
    return (
        f"read_parquet('{tmp_path / 'lake'}/report={report}/**/*.parquet', "
        "hive_partitioning = true)"
    )


def table_rows(
    kind: str, tmp_path: Path, report: str, header: list[str], last: date | None = None
) -> tuple[Counter[tuple[str, ...]], dict[str, str]]:
    path = str(tmp_path / "data.duckdb") if kind == "duckdb" else ":memory:"
    with duckdb.connect(path, read_only=kind == "duckdb") as db:
        got = db.execute(f"SELECT {', '.join(header)} FROM {source(kind, tmp_path, report)}")
        rows = Counter(
            text
            for text in (tuple(as_text(v) for v in row) for row in got.fetchall())
            if last is None or ((d := day_of(text)) is not None and d <= last)
        )
        described = db.execute(f"DESCRIBE SELECT * FROM {source(kind, tmp_path, report)}")
        types = {row[0]: row[1] for row in described.fetchall()}
    return rows, types


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_five_days_of_sync_into_a_typed_destination_hold_one_whole_exports_rows(
    tmp_path: Path, kind: str
) -> None:
    config = write_config(tmp_path, REPORTS, FIRST)
    into = "duckdb:///data.duckdb" if kind == "duckdb" else "parquet:///lake"
    with sandbox_process(tmp_path, "--start-time", "2025-03-10T13:00:00+00:00") as sandbox:

        def sync() -> Any:
            return cli(sandbox, tmp_path, "sync", "--config", str(config), "--json", "--into", into)

        first = sync()
        assert first.code == 0, first.stderr
        loaded = [json.loads(line) for line in first.stdout.splitlines() if '"loaded"' in line]
        loaded = [event for event in loaded if event.get("event") == "loaded"]
        assert len(loaded) == 9 * len(REPORTS), first.stdout
        assert all(e["status"] == "done" and e["rows"] > 0 and e["target"] == into
                   for e in loaded)  # fmt: skip
        for day in range(2, 6):  # 2025-03-11 to 03-14
            sandbox.advance(DAY)
            run = sync()
            check_next_day(run, settling=SETTLE * len(REPORTS))
            (dataset,) = run.datasets
            assert dataset["account_day"] == (date(2025, 3, 9) + timedelta(days=day)).isoformat()
        last_day, settled = date(2025, 3, 13), date(2025, 3, 9)
        for report in REPORTS:
            whole = tmp_path / f"{report}.whole.csv"
            export = cli(
                sandbox, tmp_path, "export", report, "--start", FIRST.isoformat(),
                "--end", last_day.isoformat(), "--out", str(whole),
            )  # fmt: skip
            assert export.code == 0, export.stderr
            header, expected = csv_rows(whole, settled)
            got, types = table_rows(kind, tmp_path, report, header, settled)
            assert expected.total() > 0
            assert got == expected, (expected - got, got - expected)
            assert types["Date"] == "DATE"
            assert types["ProgramId"] == "BIGINT"
            if report == "mp_action_listing_fast":
                assert types["Amount"] == "DECIMAL(38,2)"
                assert types["Payout"] == "DECIMAL(38,2)"
            else:
                assert types["AdId"] == "BIGINT"
                assert types["UniqueClick"] == "BOOLEAN"
            # And every day, settled or not, is the files' (one chunk file a day).
            files = Counter[tuple[str, ...]]()
            for path in (tmp_path / "data" / report).glob("*.csv"):
                files.update(csv_rows(path)[1])
            assert table_rows(kind, tmp_path, report, header)[0] == files


def backfill_args(tmp_path: Path) -> list[str]:
    return [
        "backfill", REPORTS[0], "--start", "2025-03-01", "--end", "2025-03-08", "--chunk", "1d",
        "--out", "data", "--into", "duckdb:///data.duckdb", "--json",
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 3, 6])
def test_a_sigkill_between_delete_and_commit_never_leaves_a_chunk_half_replaced(
    tmp_path: Path, nth: int
) -> None:
    """The n-th load of the run waits between its delete+insert and its commit; the process is
    killed there. The chunks loaded before it are whole, the one killed is as it was; the next
    run (no pause) brings the table to equal the files with no call spent on chunk files."""
    with sandbox_process(tmp_path, "--start-time", "2025-03-10T13:00:00+00:00") as sandbox:
        # A first run loads every chunk; the clock moves so that the refresh replaces chunks.
        first = cli(sandbox, tmp_path, *backfill_args(tmp_path))
        assert first.code == 0, first.stderr
        marker = tmp_path / "paused"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMPACT_")}
        env.update(
            IMPACT_ACCOUNT_SID=sandbox.info["account_sid"],
            IMPACT_BASE_URL=sandbox.info["base_url"],
            IMPACT_ACCOUNT_TYPE="Mediapartners",
            NO_COLOR="1",
            **{PAUSE_ENV: f"{nth}:{marker}"},
        )
        # The table as if the chunks had other rows (another file): every chunk is replaced.
        with duckdb.connect(str(tmp_path / "data.duckdb")) as db:
            db.execute("UPDATE _reportexport_chunks SET sha256 = 'older'")
            before = db.execute(
                f"SELECT _chunk, count(*) FROM main.{REPORTS[0]} GROUP BY 1 ORDER BY 1"
            ).fetchall()
        child = subprocess.Popen(
            [PY, "-c", "import sys; from reportexport_async.cli import main; sys.exit(main())",
             *backfill_args(tmp_path), "--auth-token-file", str(sandbox.token_file),
             "--ledger", str(tmp_path / "ledger.sqlite")],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the run ended before its paused load"
            assert time.monotonic() < deadline, "the paused load never came"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with duckdb.connect(str(tmp_path / "data.duckdb")) as db:
            after = db.execute(
                f"SELECT _chunk, count(*) FROM main.{REPORTS[0]} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            replaced = db.execute(
                "SELECT count(*) FROM _reportexport_chunks WHERE sha256 <> 'older'"
            ).fetchone()
        assert after == before  # each chunk whole: its old rows (same counts) or its new ones
        assert replaced == (nth - 1,)  # the killed load did not commit
        again = cli(sandbox, tmp_path, *backfill_args(tmp_path))
        assert again.code == 0, again.stderr
        assert again.spent["ReportExport"] == 0
    files = Counter[tuple[str, ...]]()
    header: list[str] = []
    for path in (tmp_path / "data" / REPORTS[0]).glob("*.csv"):
        header, rows = csv_rows(path)
        files.update(rows)
    with duckdb.connect(str(tmp_path / "data.duckdb")) as db:
        got = db.execute(f"SELECT {', '.join(header)} FROM main.{REPORTS[0]}").fetchall()
        stale = db.execute("SELECT count(*) FROM _reportexport_chunks WHERE sha256 = 'older'")
        assert stale.fetchone() == (0,)
    assert Counter(tuple(as_text(v) for v in row) for row in got) == files
