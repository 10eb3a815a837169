"""A typed destination's load holds a bounded part of a chunk at a time, whatever its size:
DuckDB runs under its stated `memory_limit` (spilling beside the database), and the Parquet
destination writes a chunk in row groups of its bounds and lets Arrow's memory go after each
file. (How much the process grows is measured in `benchmarks.destinations`.)"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from reportexport_async.core.chunking import Chunk
from reportexport_async.core.models import ExportRequest
from reportexport_async.destinations import SavedChunk
from reportexport_async.destinations.duckdb_table import MEMORY_LIMIT, DuckDBDestination
from reportexport_async.destinations.parquet_files import Bounds, ParquetDestination
from reportexport_async.destinations.typed import LoadChunk

DAY = date(2026, 5, 1)
ROWS = 20_000


def chunk_file(tmp_path: Path) -> tuple[LoadChunk, Counter[tuple[str, ...]]]:
    path = tmp_path / "chunk.csv"
    rows = [
        (DAY.isoformat(), str(1000 + n), f"{n % 977}.{n % 100:02d}", "Online Sale" if n % 3 else "")
        for n in range(ROWS)
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Date", "ActionId", "Amount", "Tracker"])
        writer.writerows(rows)
    request = ExportRequest(report_id="mp_action_listing_fast", start=DAY, end=DAY)
    saved = SavedChunk("fp", request, Chunk(DAY, DAY), path, "sha", "J1")
    return LoadChunk(saved, "main"), Counter(rows)


def text_of(row: tuple[object, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else v.isoformat() if isinstance(v, date) else str(v) for v in row)


def test_duckdb_loads_under_its_memory_limit_spilling_beside_the_database(tmp_path: Path) -> None:
    chunk, rows = chunk_file(tmp_path)
    database = tmp_path / "db" / "data.duckdb"
    destination = DuckDBDestination(database, "duckdb:///data.duckdb")
    destination.check()
    assert destination.load(chunk).rows == ROWS
    settings = (
        destination._connect()
        .execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('preserve_insertion_order'), current_setting('temp_directory')"
        )
        .fetchone()
    )
    destination.close()
    assert settings is not None
    limit, threads, ordered, spill = settings
    stated = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    expected = stated.execute("SELECT current_setting('memory_limit')").fetchone()
    stated.close()
    assert expected is not None
    assert limit == expected[0]
    assert (threads, ordered) == (2, False)
    assert Path(spill) == database.with_name("data.duckdb.tmp")
    with duckdb.connect(str(database), read_only=True) as db:
        found = db.execute(
            'SELECT "Date", "ActionId", "Amount", "Tracker" FROM main.mp_action_listing_fast'
        ).fetchall()
    assert Counter(text_of(r) for r in found) == rows


def test_parquet_writes_a_chunk_in_row_groups_of_its_bounds_and_lets_arrow_memory_go(
    tmp_path: Path,
) -> None:
    chunk, rows = chunk_file(tmp_path)
    bounds = Bounds(block=64 << 10, row_group_rows=4096)
    destination = ParquetDestination(tmp_path / "lake", "parquet:///lake", bounds=bounds)
    destination.check()
    held_before = pa.total_allocated_bytes()
    loaded = destination.load(chunk)
    assert pa.total_allocated_bytes() == held_before  # no batch of the chunk kept alive
    assert loaded.rows == ROWS
    written = pq.ParquetFile(tmp_path / "lake" / loaded.table)
    groups = [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)]
    assert sum(groups) == ROWS
    assert len(groups) >= ROWS // (2 * bounds.row_group_rows)
    # A group is made of whole blocks: at least the bound (but the last), under the bound plus
    # one block's rows (64 KiB of text: far fewer than 4096 rows more).
    assert all(bounds.row_group_rows <= n < 2 * bounds.row_group_rows for n in groups[:-1])
    table = written.read(columns=["Date", "ActionId", "Amount", "Tracker"])
    assert Counter(text_of(r) for r in zip(*table.to_pydict().values(), strict=True)) == rows
