"""Typed destinations beside the files (`into`): DuckDB tables and Parquet files loaded from the
chunk files through the real client stack against the sandbox over loopback; a chunk fetched
again replaces its rows; types are decided from the data and kept (an empty chunk does not flip
them, a value that no longer fits is an error naming report, chunk and column); a load that did
not commit is made good by the next run; a bad URL costs no call."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest

from reportexport_async import Client, ConfigurationError, Dataset, ExportSpec
from reportexport_async.core.chunking import Chunk
from reportexport_async.core.models import ExportRequest
from reportexport_async.destinations import SavedChunk, parse_into
from reportexport_async.destinations.into import open_into
from reportexport_async.destinations.typed import LoadChunk
from reportexport_async.destinations.types import ColumnType, Schema, infer, judge
from reportexport_async.errors import ColumnTypeError, LoadError
from reportexport_async.sandbox import ManualClock, Sandbox

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
REPORT = "mp_action_listing_fast"
FIRST, LAST = date(2026, 5, 1), date(2026, 5, 6)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(clock=ManualClock(START), job_duration=(30, 300), rows_per_day=6) as sb:
        yield sb


def csv_rows(paths: list[Path]) -> Counter[tuple[str, ...]]:
    found: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            found.update(tuple(row) for row in reader)
    return found


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if isinstance(value, date) else str(value)


def table_rows(rows: list[tuple[Any, ...]]) -> Counter[tuple[str, ...]]:
    return Counter(tuple(as_text(v) for v in row) for row in rows)


def columns_of(files: list[Path]) -> list[str]:
    with open(files[0], newline="") as handle:
        return next(csv.reader(handle))


async def test_backfill_into_duckdb_holds_the_files_rows_typed_and_replaces_a_chunk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = f"duckdb:///{tmp_path / 'data.duckdb'}".replace(":///", ":////", 1)
    events: list[Any] = []
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        result = await client.backfill(
            REPORT, FIRST, LAST, out=tmp_path / "data", chunk="2d", into=url,
            on_event=events.append,
        )  # fmt: skip
    assert result.complete
    files = sorted((tmp_path / "data" / REPORT).glob("*.csv"))
    assert len(files) == 3
    loaded = [e for e in events if e.kind == "loaded"]
    assert {e.chunk for e in loaded} == {"2026-05-01_2026-05-02", "2026-05-03_2026-05-04",
                                         "2026-05-05_2026-05-06"}  # fmt: skip
    assert all(e.table == f"main.{REPORT}" and e.rows and e.target == url for e in loaded)
    names = columns_of(files)
    with duckdb.connect(str(tmp_path / "data.duckdb")) as db:
        types = dict(db.execute(f"SELECT column_name, data_type FROM duckdb_columns() "
                                f"WHERE table_name = '{REPORT}'").fetchall())  # fmt: skip
        got = db.execute(f"SELECT {', '.join(names)} FROM main.{REPORT}").fetchall()
        chunks = db.execute("SELECT count(*) FROM _reportexport_chunks").fetchone()
    assert types["Date"] == "DATE"
    assert types["Amount"] == "DECIMAL(38,2)"
    assert types["Payout"] == "DECIMAL(38,2)"
    assert types["ProgramId"] == "BIGINT"
    assert types["State"] == "VARCHAR"
    assert types["_chunk"] == "VARCHAR"
    assert table_rows(got) == csv_rows(files)
    assert chunks == (3,)

    # The same chunks loaded again (a refetch): replaced, never appended beside.
    into = FilesAndOnly(tmp_path / "data.duckdb", url)
    for path in files:
        start, end = (date.fromisoformat(p) for p in path.stem.split("_"))
        request = ExportRequest(report_id=REPORT, start=start, end=end)
        into.load(SavedChunk("fp", request, Chunk(start, end), path, "other", "J"))
    with duckdb.connect(str(tmp_path / "data.duckdb")) as db:
        again = db.execute(f"SELECT {', '.join(names)} FROM main.{REPORT}").fetchall()
    assert table_rows(again) == csv_rows(files)


class FilesAndOnly:
    """A DuckDB destination loaded by hand, chunk by chunk (schema `main`)."""

    def __init__(self, path: Path, url: str) -> None:
        self.url = url

    def load(self, saved: SavedChunk) -> None:
        into = open_into(self.url)
        try:
            into.load(LoadChunk(saved, "main"))
        finally:
            into.close()


async def test_a_load_that_did_not_commit_is_loaded_by_the_next_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A chunk recorded in the files but missing from the table (or loaded from another file)
    is loaded again by the next run, with no call spent on it."""
    db_path = tmp_path / "data.duckdb"
    url = "duckdb:////" + str(db_path).lstrip("/")
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        await client.backfill(REPORT, FIRST, LAST, out=tmp_path / "data", chunk="2d", into=url)
        with duckdb.connect(str(db_path)) as db:  # as if two loads had never committed
            db.execute(f"DELETE FROM main.{REPORT} WHERE _chunk = '2026-05-01_2026-05-02'")
            db.execute("DELETE FROM _reportexport_chunks WHERE chunk = '2026-05-01_2026-05-02'")
            db.execute("UPDATE _reportexport_chunks SET sha256 = 'x' "
                       "WHERE chunk = '2026-05-03_2026-05-04'")  # fmt: skip
        before = sandbox.stats()["total_calls"]
        again = await client.backfill(
            REPORT, FIRST, LAST, out=tmp_path / "data", chunk="2d", into=url
        )
        assert sandbox.stats()["total_calls"] - before <= 1  # the plan's look-up at most
    assert again.complete
    files = sorted((tmp_path / "data" / REPORT).glob("*.csv"))
    names = columns_of(files)
    with duckdb.connect(str(db_path)) as db:
        got = db.execute(f"SELECT {', '.join(names)} FROM main.{REPORT}").fetchall()
    assert table_rows(got) == csv_rows(files)


@pytest.mark.parametrize("fmt", ["CSV", "JSON", "XML"])
async def test_parquet_holds_the_same_rows_read_back_with_duckdb_and_pyarrow(
    sandbox: Sandbox, tmp_path: Path, fmt: str
) -> None:
    lake = tmp_path / "lake"
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        await client.backfill(
            ExportSpec(REPORT, result_format=fmt), FIRST, LAST, out=tmp_path / "files",
            chunk="2d", into="parquet:////" + str(lake).lstrip("/"),
        )  # fmt: skip
        await client.backfill(
            REPORT, FIRST, LAST, out=tmp_path / "csv", chunk="2d", into=None,
        )  # fmt: skip
    files = sorted((tmp_path / "csv" / REPORT).glob("*.csv"))
    names = columns_of(files)
    pattern = f"{lake}/**/*.parquet"
    got = duckdb.sql(
        f"SELECT {', '.join(names)} FROM read_parquet('{pattern}', hive_partitioning = true)"
    ).fetchall()
    assert table_rows(got) == csv_rows(files)
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)"
    ).fetchall()
    kinds = {row[0]: row[1] for row in described}
    assert kinds["Date"] == "DATE"
    assert kinds["Amount"] == "DECIMAL(38,2)"
    assert kinds["report"] == "VARCHAR"
    assert kinds["chunk_start"] == "DATE"
    dataset = ds.dataset(lake, format="parquet", partitioning="hive",
                         exclude_invalid_files=True)  # fmt: skip
    assert dataset.count_rows() == sum(csv_rows(files).values())
    assert sorted(p.name for p in lake.glob("report=*/chunk_start=*/*.parquet")) == [
        "2026-05-01_2026-05-02.parquet", "2026-05-03_2026-05-04.parquet",
        "2026-05-05_2026-05-06.parquet",
    ]  # fmt: skip


# -- types ------------------------------------------------------------------------------------


def test_values_are_judged_to_the_narrowest_type() -> None:
    assert judge("true") == ColumnType("boolean")
    assert judge("-12") == ColumnType("integer")
    assert judge("12.50") == ColumnType("decimal", 2)
    assert judge("2025-01-31") == ColumnType("date")
    assert judge("2025-01-31T10:00:00") == ColumnType("timestamp")
    assert judge("2025-02-30") == ColumnType("text")
    assert judge("1" * 30) == ColumnType("decimal")  # past 64 bits
    assert infer(["1", "2.5", None, ""]) == (ColumnType("decimal", 1), "")


def write(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def saved(path: Path, day: int) -> SavedChunk:
    when = date(2025, 1, day)
    request = ExportRequest(report_id="R", start=when, end=when)
    return SavedChunk(f"fp{day}", request, Chunk(when, when), path, f"sha{day}", "J")


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_an_empty_chunk_keeps_the_types_and_a_misfit_names_report_chunk_column(
    tmp_path: Path, kind: str
) -> None:
    url = f"{kind}:////" + str(tmp_path / "out").lstrip("/")
    into = open_into(url)
    into.check()
    header = "Date,Amount,Clicks,Note"
    into.load(LoadChunk(saved(write(tmp_path / "a.csv", header, "2025-01-01,1.50,3,x"), 1), "main"))
    # Empty in this chunk: no type flips; Note was text, Clicks an integer.
    into.load(LoadChunk(saved(write(tmp_path / "b.csv", header, "2025-01-02,,,"), 2), "main"))
    # A whole-number chunk in a decimal column: still the decimal.
    into.load(LoadChunk(saved(write(tmp_path / "c.csv", header, "2025-01-03,7,4,y"), 3), "main"))
    bad = write(tmp_path / "d.csv", header, "2025-01-04,2.00,lots,z")
    with pytest.raises(ColumnTypeError) as raised:
        into.load(LoadChunk(saved(bad, 4), "main"))
    error = raised.value
    assert (error.report, error.chunk, error.column, error.value) == (
        "R", "2025-01-04_2025-01-04", "Clicks", "lots",
    )  # fmt: skip
    assert "R" in str(error)
    assert "2025-01-04_2025-01-04" in str(error)
    assert "Clicks" in str(error)
    assert isinstance(error, LoadError)
    assert "2025-01-04_2025-01-04" not in into.loaded("main", "R")
    into.close()
    if kind == "duckdb":
        with duckdb.connect(str(tmp_path / "out")) as db:
            types = dict(db.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                    "WHERE table_name = 'R'").fetchall())  # fmt: skip
            count = db.execute("SELECT count(*) FROM main.R").fetchone()
        assert count == (3,)
    else:
        described = duckdb.sql(
            f"DESCRIBE SELECT * FROM read_parquet('{tmp_path / 'out'}/**/*.parquet', "
            "hive_partitioning = true)"
        ).fetchall()
        types = {row[0]: row[1] for row in described}
    assert types["Amount"] == "DECIMAL(38,2)"
    assert types["Clicks"] == "BIGINT"
    assert types["Date"] == "DATE"
    assert types["Note"] == "VARCHAR"


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_column_undecided_in_the_first_chunk_is_typed_by_a_later_one(
    tmp_path: Path, kind: str
) -> None:
    url = f"{kind}:////" + str(tmp_path / "out").lstrip("/")
    into = open_into(url)
    header = "Date,Payout"
    into.load(LoadChunk(saved(write(tmp_path / "a.csv", header, "2025-01-01,"), 1), "main"))
    into.load(LoadChunk(saved(write(tmp_path / "b.csv", header, "2025-01-02,2.5"), 2), "main"))
    into.close()
    source = (
        f"read_parquet('{tmp_path / 'out'}/**/*.parquet', hive_partitioning = true)"
        if kind == "parquet"
        else "main.R"
    )
    with duckdb.connect(str(tmp_path / "out") if kind == "duckdb" else ":memory:") as db:
        rows = db.execute(f"SELECT Date, Payout FROM {source} ORDER BY Date").fetchall()
        types = {r[0]: r[1] for r in db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    assert types["Payout"] == "DECIMAL(38,1)"
    assert rows == [(date(2025, 1, 1), None), (date(2025, 1, 2), Decimal("2.5"))]


def test_schema_merge_refuses_a_decided_column_but_lets_a_new_chunk_decide_text() -> None:
    schema = Schema().merge({"A": ["1", "x"]}, target="t", report="R", chunk="c")
    assert schema.columns["A"] == ColumnType("text")  # decided by this chunk alone
    decided = Schema.of({"A": "integer"})
    with pytest.raises(ColumnTypeError):
        decided.merge({"A": ["x"]}, target="t", report="R", chunk="c2")


# -- where it is set ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///x.db", "unknown destination"),
        ("duckdb://", "names no path"),
        ("data.duckdb", "duckdb:///PATH"),
    ],
)
async def test_a_bad_into_is_refused_before_any_call(
    sandbox: Sandbox, tmp_path: Path, url: str, words: str
) -> None:
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        before = sandbox.stats()["total_calls"]
        with pytest.raises(ConfigurationError) as raised:
            await client.backfill(REPORT, FIRST, LAST, out=tmp_path / "data", into=url)
        assert raised.value.setting == "into"
        assert words in str(raised.value)
        with pytest.raises(ConfigurationError) as in_dataset:
            Dataset("d", (REPORT,), tmp_path / "d", first_day=FIRST, into=url)
        assert in_dataset.value.setting == "into"
        assert in_dataset.value.dataset == "d"
        assert sandbox.stats()["total_calls"] == before
    assert not (tmp_path / "data" / REPORT).exists()


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name)
    )
    with pytest.raises(ConfigurationError) as raised:
        parse_into("parquet:///lake")
    assert "pip install 'reportexport_async[parquet]'" in str(raised.value)


def test_relative_and_absolute_paths_as_sqlalchemy_spells_them(tmp_path: Path) -> None:
    assert parse_into("duckdb:///x.duckdb", base=tmp_path).path == tmp_path / "x.duckdb"
    assert parse_into("duckdb:////tmp/x.duckdb").path == Path("/tmp/x.duckdb")


async def test_sync_dataset_into_duckdb_uses_the_dataset_schema(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = "duckdb:////" + str(tmp_path / "sync.duckdb").lstrip("/")
    dataset = Dataset("daily", (REPORT,), tmp_path / "daily", first_day=FIRST, into=url)
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        await client.sync(dataset)
    files = sorted((tmp_path / "daily" / REPORT).glob("*.csv"))
    names = columns_of(files)
    with duckdb.connect(str(tmp_path / "sync.duckdb")) as db:
        got = db.execute(f"SELECT {', '.join(names)} FROM daily.{REPORT}").fetchall()
    assert table_rows(got) == csv_rows(files)


# -- the command line ---------------------------------------------------------------------------

CLI_RANGE = ("--start", "2025-03-01", "--end", "2025-03-04", "--chunk", "2d")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from reportexport_async.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_backfill_into_duckdb_says_what_was_loaded_where(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        capsys, "backfill", REPORT, *CLI_RANGE, "--sandbox", "--json", "--out", "out",
        "--ledger", "l.sqlite", "--into", "duckdb:///t.duckdb",
    )  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    loaded = [e for e in events if e["event"] == "loaded"]
    assert sorted(e["chunk"] for e in loaded) == ["2025-03-01_2025-03-02", "2025-03-03_2025-03-04"]
    assert all(e["table"] == f"main.{REPORT}" and e["target"] == "duckdb:///t.duckdb"
               for e in loaded)  # fmt: skip
    with duckdb.connect(str(tmp_path / "t.duckdb")) as db:
        count = db.execute(f"SELECT count(*) FROM main.{REPORT}").fetchone()
    assert count == (sum(e["rows"] for e in loaded),)
    assert count[0] > 0


@pytest.mark.parametrize("command", ["backfill", "export", "sync"])
def test_cli_a_bad_into_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ("--first-day", "2025-03-01") if command == "sync" else CLI_RANGE[:4]
    code, _, err = run_cli(
        capsys, command, REPORT, *extra, "--sandbox", "--ledger", "l.sqlite",
        "--into", "postgres:///x",
    )  # fmt: skip
    assert code == 2, err
    assert "--into" in err
    assert "unknown destination" in err
    assert not (tmp_path / "l.sqlite").exists()


def test_cli_a_value_that_no_longer_fits_names_report_chunk_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table says `State` is an integer (decided by earlier chunks): the files are written
    and recorded all the same, the run ends with the error naming report, chunk and column."""
    monkeypatch.chdir(tmp_path)
    into = open_into("duckdb:///t.duckdb")
    into.check()
    into.close()
    with duckdb.connect(str(tmp_path / "t.duckdb")) as db:
        db.execute(
            "INSERT INTO _reportexport_columns VALUES ('main', ?, 'State', 'integer', 0)", [REPORT]
        )
    code, out, err = run_cli(
        capsys, "backfill", REPORT, *CLI_RANGE, "--sandbox", "--out", "out",
        "--ledger", "l.sqlite", "--into", "duckdb:///t.duckdb",
    )  # fmt: skip
    assert code == 1, out + err
    assert REPORT in err
    assert "'State'" in err
    assert "chunk 2025-03-0" in err
    assert len(list((tmp_path / "out" / REPORT).glob("*.csv"))) == 2  # the files are whole


def test_into_in_datasets_toml_is_relative_to_the_file_and_checked(tmp_path: Path) -> None:
    from reportexport_async.jobs.datasets import load_datasets

    config = tmp_path / "conf" / "datasets.toml"
    config.parent.mkdir()
    config.write_text(
        '[datasets.daily]\nreports = ["R"]\nfirst_day = 2025-01-01\ninto = "duckdb:///d.duckdb"\n'
    )
    (dataset,) = load_datasets(config)
    assert dataset.into is not None
    assert dataset.into.path == tmp_path / "conf" / "d.duckdb"
    config.write_text('[datasets.daily]\nreports = ["R"]\ninto = "mysql:///x"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_datasets(config)
    assert "dataset 'daily'" in str(raised.value)
    assert "into" in str(raised.value)


def test_into_per_account_in_the_accounts_file(tmp_path: Path) -> None:
    from reportexport_async.accounts import AccountsFileError, load_accounts

    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        '[[account]]\nname = "acme"\nsid = "IR1"\naccount_type = "Mediapartners"\n'
        'token_env = "T"\ninto = "parquet:///lake/acme"\n'
    )
    (account,) = load_accounts(accounts, environ={"T": "secret"})
    assert account.into is not None
    assert account.into.path == tmp_path / "lake" / "acme"
    accounts.write_text(accounts.read_text().replace("parquet:///lake/acme", "parquet:/x"))
    with pytest.raises(AccountsFileError) as raised:
        load_accounts(accounts, environ={"T": "secret"})
    assert "account 'acme': into:" in str(raised.value)


def test_the_plain_install_imports_neither_duckdb_nor_pyarrow() -> None:
    """Every entry point imports without the extras: DuckDB and pyarrow load only when a
    destination of theirs is opened."""
    import subprocess
    import sys

    code = (
        "import sys; import reportexport_async.cli, reportexport_async.client, "
        "reportexport_async.jobs.sync, reportexport_async.destinations; "
        "from reportexport_async.destinations import parse_into; parse_into('duckdb:///x'); "
        "print(sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_export_into_duckdb_loads_the_file_once_and_a_default_range_replaces_the_last(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = "duckdb:////" + str(tmp_path / "x.duckdb").lstrip("/")
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        dated = await client.export(REPORT, out=tmp_path / "a.csv", start=FIRST, end=LAST, into=url)
        again = await client.export(REPORT, out=tmp_path / "a.csv", start=FIRST, end=LAST, into=url)
        default = await client.export(REPORT, out=tmp_path / "d.csv", into=url)
    assert [(x.chunk, x.table) for x in dated.loaded] == [
        ("2026-05-01_2026-05-06", f"main.{REPORT}")
    ]
    assert again.loaded == ()  # the same file: held already, nothing loaded
    assert [x.chunk for x in default.loaded] == ["default-range"]
    names = columns_of([tmp_path / "a.csv"])
    with duckdb.connect(str(tmp_path / "x.duckdb")) as db:
        got = db.execute(f"SELECT {', '.join(names)} FROM main.{REPORT}").fetchall()
    assert table_rows(got) == csv_rows([tmp_path / "a.csv", tmp_path / "d.csv"])


async def test_a_database_failure_during_a_load_is_a_load_error_naming_report_and_chunk(
    tmp_path: Path,
) -> None:
    """Whatever the database raises (a lock held by another process, a full disk) reaches the
    run as a `LoadError` naming the destination, report and chunk."""
    from reportexport_async.destinations import FilesInto

    class Refusing:
        url = "duckdb:///locked.duckdb"

        def check(self) -> None: ...

        def loaded(self, schema: str, table: str) -> dict[str, str]:
            return {}

        def load(self, chunk: LoadChunk) -> Any:
            raise RuntimeError("IO Error: Could not set lock on file\nmore")

        def close(self) -> None: ...

    into = FilesInto(tmp_path, Refusing())
    path = write(tmp_path / "a.csv", "Date", "2025-01-01")
    with pytest.raises(LoadError) as raised:
        await into.saved(saved(path, 1))
    assert str(raised.value) == (
        "duckdb:///locked.duckdb: report R, chunk 2025-01-01_2025-01-01: "
        "IO Error: Could not set lock on file"
    )
