"""The dlt source (`reportexport_async.dlt`) into dlt's duckdb destination, against a sandbox
served from its own thread (dlt's extraction is synchronous and runs the library in its own event
loop), over loopback through the real client stack:

- the rows in each report's table equal, as a multiset, one whole-range export of the window, with
  the dates, integers, decimals and booleans typed; a second run loads nothing and spends nothing;
- `sync` of a `datasets.toml` on the sandbox moved a day: the chunks still settling are refreshed,
  their rows replaced (each chunk's rows are its file's, none twice), and the chunks unchanged are
  not loaded again (their load id is the first run's);
- a chunk rule changed between runs: the new chunks replace the rows of the old ones they cover;
- every bad argument is a `ConfigurationError` naming it, before any call.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.pipeline.exceptions import PipelineStepFailed

from reportexport_async import Client, ClientConfig, ConfigurationError
from reportexport_async import dlt as source_module
from reportexport_async.destinations import Manifest, ManifestChunk, read_manifest
from reportexport_async.dlt import CHUNK_COLUMN, reportexport_source
from reportexport_async.errors import ColumnTypeError, UnreadableResult
from reportexport_async.jobs.orchestrator import ProgressEvent
from reportexport_async.jobs.sync import Dataset, SyncOptions
from reportexport_async.sandbox.clock import ScaledClock
from reportexport_async.sandbox.pytest_plugin import SandboxThread

REPORTS = ("mp_action_listing_fast", "mp_clicks_by_day")
DAY = 86_400
SETTLE = 3
NAMING = NamingConvention()
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d+\.\d+")


@pytest.fixture(autouse=True)
def _quiet_dlt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """dlt sends no telemetry (no network here) and keeps its files in the test's folder."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-home"))


def start_sandbox(
    factory: Callable[..., SandboxThread], start: datetime, **settings: Any
) -> SandboxThread:
    """A sandbox 100 times faster than real time (its jobs take 1 to 2 sandbox seconds)."""
    clock = ScaledClock(start=start, scale=100)
    return factory(clock=clock, job_duration=(1, 2), settle_days=SETTLE, **settings)


def client_of(sandbox: SandboxThread, tmp_path: Path) -> Client:
    """A client of the sandbox's account, not open (the source opens it), its ledger kept."""
    return Client.for_sandbox(sandbox.sandbox, ledger=tmp_path / "ledger.sqlite")


#: 2025-03-12 13:00: every day up to 03-06 has settled (its rows no longer change).
SETTLED = datetime(2025, 3, 12, 13, tzinfo=UTC)


def backfill_source(
    sandbox: SandboxThread, tmp_path: Path, exports: str | list[str], window: tuple[date, date],
    chunk: str,
) -> Any:  # fmt: skip
    """The source of a backfill of `exports` over `window`, its files in `tmp_path/files`."""
    first, last = window
    return reportexport_source(
        exports, first, last, out=tmp_path / "files", chunk=chunk,
        client=client_of(sandbox, tmp_path),
    )  # fmt: skip


def pipeline_in(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        "impact",
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="reports",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def table_rows(tmp_path: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The table's columns (without the source's and dlt's own) and its rows, with `_chunk`
    and `_dlt_load_id` last."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        names = [row[0] for row in con.sql(f"describe reports.{table}").fetchall()]
        data = [n for n in names if not n.startswith(("_chunk", "_dlt"))]
        chosen = ", ".join([*data, CHUNK_COLUMN, "_dlt_load_id"])
        return data, con.sql(f"select {chosen} from reports.{table}").fetchall()


def column_types(tmp_path: Path, table: str) -> dict[str, str]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return {row[0]: row[1] for row in con.sql(f"describe reports.{table}").fetchall()}


def as_loaded(cell: str) -> object:
    """A CSV cell as the table compares with it (numbers by value; dates stay text)."""
    if _INTEGER.fullmatch(cell):
        return int(cell)
    if _DECIMAL.fullmatch(cell):
        return Decimal(cell)
    return {"true": True, "false": False}.get(cell, cell)


def from_table(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def csv_rows(path: Path) -> tuple[list[str], Counter[tuple[object, ...]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, Counter(tuple(as_loaded(cell) for cell in row) for row in reader)


def loaded(rows: list[tuple[Any, ...]], columns: int) -> Counter[tuple[object, ...]]:
    return Counter(tuple(from_table(value) for value in row[:columns]) for row in rows)


def whole_export(
    sandbox: SandboxThread, tmp_path: Path, report: str, first: date, last: date
) -> Path:
    """One export of the whole window, by another client with a ledger of its own."""

    async def main() -> Path:
        ledger = tmp_path / "whole.sqlite"
        async with Client.for_sandbox(sandbox.sandbox, ledger=ledger) as client:
            outcome = await client.export(
                report, start=first, end=last, out=tmp_path / f"{report}.whole.csv"
            )
            return Path(outcome.path)

    return asyncio.run(main())


def cause_of(failed: PipelineStepFailed, kind: type[BaseException]) -> BaseException:
    """The exception of `kind` among the causes of dlt's failure (or its own exception)."""
    error: BaseException = failed.exception
    while not isinstance(error, kind) and error.__cause__ is not None:
        error = error.__cause__
    return error


def spent(sandbox: SandboxThread) -> Counter[str]:
    return Counter({k: v for k, v in sandbox.stats()["calls"].items() if v})


# -- backfill: the rows of one whole-range export -------------------------------------------------


def test_rows_through_the_dlt_source_equal_one_whole_range_export(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    sandbox = start_sandbox(impact_sandbox_factory, SETTLED, rows_per_day=7)
    first, last = date(2025, 3, 1), date(2025, 3, 6)
    pipeline = pipeline_in(tmp_path)
    info = pipeline.run(backfill_source(sandbox, tmp_path, list(REPORTS), (first, last), "2d"))
    assert not info.has_failed_jobs
    for report in REPORTS:
        header, expected = csv_rows(whole_export(sandbox, tmp_path, report, first, last))
        columns, rows = table_rows(tmp_path, report)
        assert columns == [NAMING.normalize_identifier(name) for name in header]
        assert expected.total() == 7 * 6
        assert loaded(rows, len(columns)) == expected
        assert len({row[-2] for row in rows}) == 3  # three chunks of two days
    types = column_types(tmp_path, "mp_action_listing_fast")
    assert types["date"] == "DATE"
    assert types["action_id"] == types["program_id"] == "BIGINT"
    assert types["amount"].startswith("DECIMAL")
    assert types["payout"].startswith("DECIMAL")
    assert types["state"] == types["currency"] == "VARCHAR"
    assert column_types(tmp_path, "mp_clicks_by_day")["unique_click"] == "BOOLEAN"

    # Again: the library spends nothing (its ledger), and dlt loads nothing (its state).
    _, before = table_rows(tmp_path, "mp_action_listing_fast")
    calls = spent(sandbox)
    again = pipeline.run(backfill_source(sandbox, tmp_path, list(REPORTS), (first, last), "2d"))
    assert (spent(sandbox) - calls).keys().isdisjoint({"ReportExport", "Replay"})
    assert again.loads_ids == []
    _, after = table_rows(tmp_path, "mp_action_listing_fast")
    assert Counter(after) == Counter(before)


def test_a_new_chunk_rule_replaces_the_rows_of_the_chunks_it_covers(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    sandbox = start_sandbox(impact_sandbox_factory, SETTLED, rows_per_day=5)
    first, last = date(2025, 3, 1), date(2025, 3, 4)
    pipeline = pipeline_in(tmp_path)
    report = REPORTS[0]
    for chunk in ("2d", "1d"):
        source = backfill_source(sandbox, tmp_path, report, (first, last), chunk)
        assert not pipeline.run(source).has_failed_jobs
    _, expected = csv_rows(whole_export(sandbox, tmp_path, report, first, last))
    columns, rows = table_rows(tmp_path, report)
    assert loaded(rows, len(columns)) == expected  # none twice: the 2-day chunks' rows went
    assert len({row[-2] for row in rows}) == 4  # four chunks of one day


class Stopped(Exception):
    """Raised by a progress callback: the run stops there, as a crash would stop it."""


def test_a_run_stopped_half_way_loads_nothing_and_the_next_loads_every_chunk_once(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    sandbox = start_sandbox(impact_sandbox_factory, SETTLED, rows_per_day=4)
    window = (date(2025, 3, 1), date(2025, 3, 4))
    report = REPORTS[0]
    pipeline = pipeline_in(tmp_path)

    def stop_after_the_first_chunk(event: ProgressEvent) -> None:
        if event.kind == "chunk" and event.status == "done":
            raise Stopped(event.chunk)

    stopped = reportexport_source(
        report, *window, out=tmp_path / "files", chunk="1d",
        client=client_of(sandbox, tmp_path), on_event=stop_after_the_first_chunk,
    )  # fmt: skip
    with pytest.raises(PipelineStepFailed) as caught:
        pipeline.run(stopped)
    assert isinstance(cause_of(caught.value, Stopped), Stopped)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert con.sql(
            "select count(*) from information_schema.tables where table_name = ?",
            params=[report],
        ).fetchall() == [(0,)]
    assert not pipeline.run(
        backfill_source(sandbox, tmp_path, report, window, "1d")
    ).has_failed_jobs
    _, expected = csv_rows(whole_export(sandbox, tmp_path, report, *window))
    columns, rows = table_rows(tmp_path, report)
    assert loaded(rows, len(columns)) == expected


# -- sync: a settling chunk refreshed, an unchanged one left alone --------------------------------


def test_a_refreshed_chunk_replaces_its_rows_and_an_unchanged_chunk_is_not_loaded_again(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    # 2025-03-10 13:00 (past the refresh hour): the last complete day is 03-09; the days from
    # 03-06 on are still gaining rows (a day settles 1 + 3 days after its start).
    sandbox = start_sandbox(
        impact_sandbox_factory, datetime(2025, 3, 10, 13, tzinfo=UTC), rows_per_day=24
    )
    config = tmp_path / "datasets.toml"
    config.write_text(
        f"[datasets.daily]\nreports = [{', '.join(repr(r) for r in REPORTS)}]\n".replace("'", '"')
        + "first_day = 2025-03-04\n"
        'chunk = "1d"\n'
        'out = "data"\n'
        f"settle_days = {SETTLE}\n"
    )
    pipeline = pipeline_in(tmp_path)

    def run() -> None:
        source = reportexport_source(datasets=config, client=client_of(sandbox, tmp_path))
        assert not pipeline.run(source).has_failed_jobs

    run()
    first_files = chunk_files(tmp_path / "data")
    first_rows = {report: table_rows(tmp_path, report)[1] for report in REPORTS}
    sandbox.advance(DAY)  # 2025-03-11 13:00
    run()
    files = chunk_files(tmp_path / "data")
    changed = {key for key, (_, sha) in files.items() if first_files.get(key, ("", ""))[1] != sha}
    unchanged = set(files) - changed
    assert any(key in first_files for key in changed), "no settling chunk came back changed"
    assert unchanged, "every chunk was fetched again"
    for report in REPORTS:
        columns, rows = table_rows(tmp_path, report)
        by_chunk: dict[str, Counter[tuple[object, ...]]] = {}
        load_of: dict[str, set[str]] = {}
        for row in rows:
            by_chunk.setdefault(row[-2], Counter())[
                tuple(map(from_table, row[: len(columns)]))
            ] += 1
            load_of.setdefault(row[-2], set()).add(row[-1])
        old_load = {row[-2]: row[-1] for row in first_rows[report]}
        mine = {key: path for key, (path, _) in files.items() if path.parent.name == report}
        assert set(by_chunk) == set(mine)  # 03-04 to 03-10, each chunk's rows once
        for key, path in mine.items():
            assert by_chunk[key] == csv_rows(path)[1], path.name  # replaced, not appended
            assert len(load_of[key]) == 1
            if key in unchanged:
                assert load_of[key] == {old_load[key]}, f"{path.name} was loaded again"
            else:
                assert load_of[key] != {old_load.get(key)}, f"{path.name} was not reloaded"


def chunk_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each chunk of the folder's manifest: its file and sha256."""
    manifest = read_manifest(folder / "manifest.json")
    assert manifest is not None
    return {
        chunk.fingerprint: (chunk.file(folder), chunk.sha256)
        for chunk in manifest.chunks
        if chunk.sha256 is not None
    }


# -- bad arguments: before any call ---------------------------------------------------------------


def nowhere() -> Client:
    """A client of an address nothing answers on: a call would fail loudly."""
    config = ClientConfig(
        account_sid="S", auth_token="T", account_type="Mediapartners",
        base_url="http://127.0.0.1:9",
    )  # fmt: skip
    return Client(config, ledger=None)


@pytest.mark.parametrize(
    ("arguments", "setting"),
    [
        ({"start": date(2025, 1, 1), "end": date(2025, 1, 2), "out": "x"}, "exports"),
        ({"exports": "R", "start": "2025-01-01", "end": date(2025, 1, 2), "out": "x"}, "start"),
        ({"exports": "R", "start": date(2025, 1, 1), "end": date(2025, 1, 2)}, "out"),
        ({"exports": ["R", "R"], "start": date(2025, 1, 1), "end": date(2025, 1, 2), "out": "x"},
         "exports"),
        ({"exports": "R", "start": date(2025, 1, 1), "end": date(2025, 1, 2), "out": "x",
          "chunk": "fortnight"}, "chunk"),
        ({"exports": "R", "start": date(2025, 1, 1), "end": date(2025, 1, 2), "out": "x",
          "options": SyncOptions()}, "options"),
        ({"exports": "R", "start": date(2025, 1, 1), "end": date(2025, 1, 2), "out": "x",
          "dry_run": True}, "dry_run"),
        ({"datasets": Dataset("d", ("R",), Path("x")), "out": "y"}, "out"),
        ({"datasets": Dataset("d", ("R",), Path("x")), "names": ["d"]}, "names"),
        ({"datasets": Dataset("d", ("R",), Path("x")), "chunk": "1d"}, "chunk"),
        ({"datasets": [Dataset("a", ("R",), Path("x")), Dataset("b", ("R",), Path("y"))]},
         "datasets"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_a_configuration_error_naming_it(
    arguments: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        reportexport_source(client=nowhere(), **arguments)
    assert caught.value.setting == setting


def test_a_datasets_file_with_a_mistake_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "datasets.toml"
    config.write_text('[datasets.d]\nreports = ["R"]\nchunks = "1d"\n')
    with pytest.raises(ConfigurationError, match="unknown key 'chunks'") as caught:
        reportexport_source(datasets=config, client=nowhere())
    assert caught.value.setting == str(config)


async def test_an_open_client_is_refused(tmp_path: Path) -> None:
    async with nowhere() as client:
        with pytest.raises(ConfigurationError) as caught:
            reportexport_source("R", date(2025, 1, 1), date(2025, 1, 2), out="x", client=client)
    assert caught.value.setting == "client"


def test_making_the_source_spends_no_call(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    sandbox = start_sandbox(impact_sandbox_factory, SETTLED)
    before = spent(sandbox)
    window = (date(2025, 3, 1), date(2025, 3, 2))
    source = backfill_source(sandbox, tmp_path, list(REPORTS), window, "1d")
    assert sorted(source.resources.selected) == sorted(REPORTS)
    assert spent(sandbox) == before
    assert not (tmp_path / "files").exists()


# -- chunks emptied, and values that no longer fit: files made by hand -------------------------


def hand_made_source(tmp_path: Path, chunks: dict[date, str]) -> Any:
    """The source's own resources over chunk files written here (report `R`, one day each) and
    a manifest naming them, instead of a run of the library: the sandbox never empties a day,
    nor changes a column's type."""
    folder = tmp_path / "files"
    (folder / "R").mkdir(parents=True, exist_ok=True)
    entries = []
    for day, text in chunks.items():
        path = folder / "R" / f"{day}_{day}.csv"
        path.write_text(text)
        entries.append(
            ManifestChunk(
                report="R", start=day, end=day, fingerprint=f"fp-{day}", status="done",
                job_id="J", rows=None, bytes=len(text), fetched_at=None, downloaded_at=None,
                final=None, sha256=hashlib.sha256(text.encode()).hexdigest(),
                path=f"R/{day}_{day}.csv",
            )
        )  # fmt: skip
    manifest = Manifest(
        run="backfill", generated_at=datetime.now(UTC), account_type="Mediapartners",
        folder=str(folder), counts={"done": len(entries)}, chunks=entries,
    )  # fmt: skip
    (folder / "manifest.json").write_bytes(manifest.document())

    async def run(client: Client) -> list[Path | None]:
        return [folder / "manifest.json"]

    return source_module._source(source_module._Work(nowhere(), ("R",), run))


def test_a_chunk_with_no_rows_any_more_deletes_its_rows(tmp_path: Path) -> None:
    pipeline = pipeline_in(tmp_path)
    one, two = date(2025, 1, 1), date(2025, 1, 2)
    header = "Date,Amount\n"
    pipeline.run(hand_made_source(tmp_path, {one: header + "2025-01-01,1.50\n" * 2,
                                             two: header + "2025-01-02,3\n"}))  # fmt: skip
    pipeline.run(hand_made_source(tmp_path, {one: header, two: header + "2025-01-02,3\n"}))
    columns, rows = table_rows(tmp_path, "r")
    assert columns == ["date", "amount"]
    assert [row[:3] for row in rows] == [(two, Decimal(3), f"fp-{two}")]


def test_a_value_that_no_longer_fits_its_column_stops_the_load_and_names_it(
    tmp_path: Path,
) -> None:
    pipeline = pipeline_in(tmp_path)
    day = date(2025, 1, 1)
    header = "Date,Amount\n"
    pipeline.run(hand_made_source(tmp_path, {day: header + "2025-01-01,1.50\n"}))
    for _ in range(2):  # the failed run recorded nothing: the chunk is tried again
        with pytest.raises(PipelineStepFailed) as caught:
            pipeline.run(hand_made_source(tmp_path, {day: header + "2025-01-01,n/a\n"}))
        error = cause_of(caught.value, ColumnTypeError)
        assert isinstance(error, ColumnTypeError), repr(caught.value.exception)
        assert (error.target, error.report, error.chunk, error.column, error.value) == (
            "dlt", "R", "2025-01-01..2025-01-01", "Amount", "n/a",
        )  # fmt: skip
        assert error.kind == "a decimal (scale 2)"
    _, rows = table_rows(tmp_path, "r")
    assert [row[:2] for row in rows] == [(day, Decimal("1.5"))]  # what the first run loaded


def test_a_decimal_keeps_every_digit_after_its_point(tmp_path: Path) -> None:
    pipeline = pipeline_in(tmp_path)
    text = "Date,Rate,Amount\n2025-01-01,0.1234567890123,1.50\n"
    pipeline.run(hand_made_source(tmp_path, {date(2025, 1, 1): text}))
    types = column_types(tmp_path, "r")
    assert (types["rate"], types["amount"]) == ("DECIMAL(38,13)", "DECIMAL(38,2)")
    _, rows = table_rows(tmp_path, "r")
    assert [row[1:3] for row in rows] == [(Decimal("0.1234567890123"), Decimal("1.50"))]


def test_a_value_that_would_widen_a_loaded_column_stops_the_load(tmp_path: Path) -> None:
    """dlt cannot change a loaded column's type (it would put the decimals in a variant column
    beside the integers): the widening the typed destinations make is refused here, by name."""
    pipeline = pipeline_in(tmp_path)
    day = date(2025, 1, 1)
    header = "Date,Clicks\n"
    pipeline.run(hand_made_source(tmp_path, {day: header + "2025-01-01,3\n"}))
    with pytest.raises(PipelineStepFailed) as caught:
        pipeline.run(hand_made_source(tmp_path, {day: header + "2025-01-01,2.5\n"}))
    error = cause_of(caught.value, ColumnTypeError)
    assert isinstance(error, ColumnTypeError), repr(caught.value.exception)
    assert (error.column, error.value, error.kind) == ("Clicks", "2.5", "an integer")
    assert column_types(tmp_path, "r")["clicks"] == "BIGINT"
    _, rows = table_rows(tmp_path, "r")
    assert [row[:2] for row in rows] == [(day, 3)]


def test_a_file_not_of_its_format_stops_the_load_and_names_it(tmp_path: Path) -> None:
    pipeline = pipeline_in(tmp_path)
    with pytest.raises(PipelineStepFailed) as caught:
        pipeline.run(hand_made_source(tmp_path, {date(2025, 1, 1): "Date,N\n2025-01-01,1,2\n"}))
    error = cause_of(caught.value, UnreadableResult)
    assert isinstance(error, UnreadableResult), repr(caught.value.exception)
    assert (error.report, error.chunk) == ("R", "2025-01-01..2025-01-01")
    assert error.path.endswith("2025-01-01_2025-01-01.csv")
    assert "line 2 has 3 cells" in str(error)


# -- the documentation's example ------------------------------------------------------------------


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """docs/dlt.md's example, run as it is in its own process: the second run loads nothing."""
    text = (Path(source_module.__file__).parent / "docs" / "dlt.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPACT_")}
    done = subprocess.run(
        [sys.executable, "example.py"], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[:2] == ["1 load(s)", "0 load(s)"]
    # Five 7-day chunks of each report, 100 sandbox rows a day.
    assert lines[2:] == [f"{report} 3100 rows" for report in REPORTS]


# -- where it runs, and what it needs -------------------------------------------------------------


async def test_inside_a_running_event_loop_the_run_has_a_thread_of_its_own(
    impact_sandbox_factory: Callable[..., SandboxThread], tmp_path: Path
) -> None:
    """`pipeline.run` called from async code (this test's loop is running): the library runs in
    an event loop of its own, on another thread, and reports its progress to `on_event`."""
    sandbox = start_sandbox(impact_sandbox_factory, SETTLED, rows_per_day=3)
    events: list[ProgressEvent] = []
    source = reportexport_source(
        REPORTS[1], date(2025, 3, 1), date(2025, 3, 2), out=tmp_path / "files", chunk="1d",
        client=client_of(sandbox, tmp_path), on_event=events.append,
    )  # fmt: skip
    assert not pipeline_in(tmp_path).run(source).has_failed_jobs
    _, rows = table_rows(tmp_path, REPORTS[1])
    assert len(rows) == 6
    done = [e for e in events if e.kind == "chunk" and e.status == "done"]
    assert sorted(e.chunk or "" for e in done) == [
        "2025-03-01..2025-03-01",
        "2025-03-02..2025-03-02",
    ]


def test_the_package_needs_no_dlt_and_the_source_names_its_extra() -> None:
    found = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "import reportexport_async, reportexport_async.destinations.typed\n"
         "assert 'dlt' not in sys.modules, 'dlt loaded'\n"
         "sys.modules['dlt'] = None  # as if it were not installed\n"
         "import reportexport_async.dlt\n"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.returncode == 1
    assert "pip install 'reportexport_async[dlt]'" in found.stderr, found.stderr
    assert "dlt loaded" not in found.stderr
