"""The destination that owns the output: one canonical path per file (an export asked for again
through another spelling of its path costs no call), one manifest schema for backfill and sync,
one manifest per sync run, and the older manifests still read."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reportexport_async import AccountUnavailable, Client, Dataset
from reportexport_async.destinations import (
    FilesDestination,
    SavedChunk,
    canonical,
    manifest_schema,
    read_manifest,
)
from reportexport_async.sandbox import ManualClock, Sandbox

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
REPORT = "mp_action_listing_fast"
RANGE = {"start": date(2026, 5, 1), "end": date(2026, 5, 3)}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(clock=ManualClock(START), job_duration=(30, 300), rows_per_day=4) as sb:
        yield sb


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def total_calls(sandbox: Sandbox) -> int:
    return int(sandbox.stats()["total_calls"])


def recorded_paths(ledger: Path) -> list[str]:
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT file_path FROM exports WHERE file_path IS NOT NULL")
        return [row[0] for row in rows]


async def test_one_export_through_every_spelling_of_its_path_costs_calls_once(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`x.csv` from folder A, `../A/x.csv` from folder B, the absolute path, and the path
    through a symlink to A: one file, fetched once; the ledger records its canonical path."""
    folder_a, folder_b = tmp_path / "A", tmp_path / "B"
    folder_a.mkdir()
    folder_b.mkdir()
    (tmp_path / "link").symlink_to(folder_a, target_is_directory=True)
    ledger = tmp_path / "ledger.sqlite"
    async with Client.for_sandbox(sandbox, ledger=ledger) as client:
        monkeypatch.chdir(folder_a)
        first = await client.export(REPORT, out="x.csv", **RANGE)
        spent = total_calls(sandbox)
        outcomes = []
        for where, spelling in [
            (folder_b, "../A/x.csv"),
            (folder_b, str(folder_a / "x.csv")),
            (folder_b, "../link/x.csv"),
            (tmp_path, "link/../A/./x.csv"),
        ]:
            monkeypatch.chdir(where)
            outcomes.append(await client.export(REPORT, out=spelling, **RANGE))
            assert Path(outcomes[-1].path) == Path(spelling)  # the outcome says it as given
    assert first.submitted
    assert first.action == "downloaded"
    assert spent > 0
    assert total_calls(sandbox) == spent  # every other spelling: no call at all
    assert [o.action for o in outcomes] == ["cached"] * 4
    assert sandbox.stats()["calls"]["ReportExport"] == 1
    assert recorded_paths(ledger) == [str((folder_a / "x.csv").resolve())]
    assert sorted(p.name for p in folder_a.iterdir()) == ["x.csv"]  # and no manifest beside it


def test_canonical_paths() -> None:
    here = Path.cwd().resolve()
    assert canonical("x.csv") == here / "x.csv"
    assert canonical(f"../{here.name}/x.csv") == here / "x.csv"
    assert canonical(Path("~")) == Path.home().resolve()
    destination = FilesDestination(".")
    assert destination.root == here
    assert destination.relative(here / "r" / "a.csv") == "r/a.csv"
    assert destination.relative(here.parent / "other" / "a.csv") == "../other/a.csv"


async def test_a_backfill_and_a_sync_write_one_schema_and_a_sync_writes_one_manifest(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Both documents validate against the package's JSON schema; a sync with `merge` leaves
    one manifest holding the sync's fields (its backfill writes none of its own)."""
    schema = manifest_schema()
    backfill_out, sync_out = tmp_path / "backfill", tmp_path / "sync"
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        result = await client.backfill(
            REPORT, date(2026, 6, 1), date(2026, 6, 4), out=backfill_out, chunk="1d", merge=True
        )
        dataset = Dataset("daily", (REPORT,), sync_out, first_day=date(2026, 6, 8), merge=True)
        written: list[str] = []
        original = FilesDestination.write_manifest

        def counting(self: FilesDestination, manifest: Any) -> Path:
            written.append(manifest.run)
            return original(self, manifest)

        FilesDestination.write_manifest = counting  # type: ignore[method-assign]
        try:
            synced = await client.sync(dataset)
        finally:
            FilesDestination.write_manifest = original  # type: ignore[method-assign]
    assert result.complete
    assert synced.complete
    assert written == ["sync"]  # one writer, once, in a sync run
    documents = {}
    for name, out in (("backfill", backfill_out), ("sync", sync_out)):
        documents[name] = json.loads((out / "manifest.json").read_text())
        jsonschema.validate(documents[name], schema)
        assert documents[name]["run"] == name
        assert documents[name]["folder"] == str(out.resolve())
        for chunk in documents[name]["chunks"]:
            path = out / chunk["path"]
            assert not Path(chunk["path"]).is_absolute()
            assert path.stat().st_size == chunk["bytes"]
            assert chunk["status"] == "done"
            assert chunk["fetched_at"]
            assert chunk["sha256"]
            assert chunk["rows"] is not None
    backfill_doc, sync_doc = documents["backfill"], documents["sync"]
    assert backfill_doc["dataset"] is None
    assert backfill_doc["chunks"][0]["final"] is None
    assert sync_doc["dataset"] == "daily"
    assert sync_doc["account_day"] == "2026-06-15"
    assert sync_doc["last_complete_day"] == "2026-06-14"
    assert sum(sync_doc["verdicts"].values()) == len(sync_doc["chunks"]) == 7
    assert sync_doc["counts"] == {"done": 7}
    assert {c["kind"] for c in sync_doc["chunks"]} <= {"new", "history"}
    assert set(sync_doc["merged"]) == {f"{REPORT}.csv"}
    assert set(backfill_doc["merged"]) == {f"{REPORT}.csv"}
    assert (sync_out / f"{REPORT}.csv").is_file()


async def test_a_merged_file_is_written_again_only_when_its_chunks_changed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        args = (REPORT, date(2026, 6, 1), date(2026, 6, 3))
        first = await client.backfill(*args, out=out, chunk="1d", merge=True)
        merged = out / f"{REPORT}.csv"
        made = merged.stat().st_mtime_ns
        again = await client.backfill(*args, out=out, chunk="1d", merge=True)
        assert merged.stat().st_mtime_ns == made
        merged.unlink()  # gone: made again
        third = await client.backfill(*args, out=out, chunk="1d", merge=True)
    assert first.merged == (merged,)
    assert again.merged == ()
    assert third.merged == (merged,)
    assert merged.is_file()


def test_older_manifests_are_read_in_the_current_layout(tmp_path: Path) -> None:
    """The layouts written before the one schema: a backfill's and a sync's."""
    old_backfill = {
        "generated_at": "2026-06-15T12:00:00+00:00",
        "account_type": "Mediapartners",
        "stopped": None,
        "counts": {"deferred": 1},
        "calls": {"ReportExport": 1},
        "chunks": [
            {
                "report": REPORT, "filters": {}, "start": "2026-06-01", "end": "2026-06-01",
                "fingerprint": "f1", "job_id": "J1", "status": "deferred", "rows": None,
                "bytes": None, "sha256": None, "path": str(tmp_path / "r" / "a.csv"),
                "replays": 0, "error": "a replay is allowed from ...",
                "resets_at": "2026-06-15T13:00:00+00:00",
            }
        ],
    }  # fmt: skip
    old_sync = {
        "generated_at": "2026-06-15T12:00:00+00:00",
        "dataset": "daily",
        "account_type": "Mediapartners",
        "account_day": "2026-06-15",
        "last_complete_day": "2026-06-14",
        "server_clock_offset_seconds": 0.5,
        "settle_days": 3,
        "refresh_hour": 12,
        "counts": {"final": 1},
        "merged": {f"{REPORT}.csv": "abc"},
        "chunks": [
            {
                "report": REPORT, "start": "2026-06-01", "end": "2026-06-01", "fingerprint": "f2",
                "kind": "final", "status": "done", "reason": "settled", "until": None,
                "job_id": "J2", "fetched_at": "2026-06-10T00:00:00+00:00",
                "downloaded_at": "2026-06-10T00:00:00+00:00", "rows": 4, "bytes": 10,
                "sha256": "00", "final": True, "path": str(tmp_path / "r" / "b.csv"),
            }
        ],
    }  # fmt: skip
    for name, document in (("b", old_backfill), ("s", old_sync)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(document))
    backfill = read_manifest(tmp_path / "b" / "manifest.json")
    synced = read_manifest(tmp_path / "s" / "manifest.json")
    assert backfill is not None
    assert synced is not None
    assert backfill.run == "backfill"
    assert synced.run == "sync"
    assert backfill.chunks[0].until == datetime(2026, 6, 15, 13, tzinfo=UTC)
    assert backfill.chunks[0].file(tmp_path / "b") == tmp_path / "r" / "a.csv"
    assert synced.verdicts == {"final": 1}
    assert synced.counts == {"done": 1}
    assert synced.chunks[0].error == "settled"
    assert synced.chunks[0].final is True
    # A sync keeps the merged file's digest from an older manifest: not merged again.
    assert FilesDestination(tmp_path / "s").previous_merged() == {f"{REPORT}.csv": "abc"}
    assert read_manifest(tmp_path / "missing.json") is None


def test_a_manifest_through_a_symlinked_folder_records_relative_paths(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    through = FilesDestination(tmp_path / "alias")
    assert through.root == real.resolve()
    assert through.relative(tmp_path / "alias" / "r" / "a.csv") == "r/a.csv"
    assert through.manifest_path == tmp_path / "alias" / "manifest.json"  # as given
    assert os.path.samefile(through.root, tmp_path / "alias")


async def test_a_sync_stopped_by_an_unreachable_host_writes_its_one_manifest_saying_so(
    tmp_path: Path,
) -> None:
    """Day 1 is synced; on day 2 the host is gone: the run stops with `AccountUnavailable`, and
    the folder's one manifest (the sync's) says why, listing every chunk."""
    out = tmp_path / "data"
    dataset = Dataset("daily", (REPORT,), out, first_day=date(2026, 6, 12), merge=True)
    sandbox = Sandbox(clock=ManualClock(START), job_duration=(30, 300), rows_per_day=4)
    await sandbox.__aenter__()
    try:
        async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
            first = await client.sync(dataset)
            assert first.complete
            sandbox.advance(86400)
            await sandbox.__aexit__(None, None, None)  # the host cannot be reached any more
            with pytest.raises(AccountUnavailable, match="cannot be reached"):
                await client.sync(dataset)
    finally:
        await sandbox.__aexit__(None, None, None)
    document = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(document, manifest_schema())
    assert document["run"] == "sync"
    assert "cannot be reached" in document["stopped"]
    assert document["account_day"] == "2026-06-16"
    assert len(document["chunks"]) == 4  # the 12th to the 15th
    assert document["counts"]["done"] == 3  # day 1's chunks, whole on disk
    assert not list(out.rglob("*.part"))


async def test_the_destination_hears_of_each_chunk_once_its_file_is_whole(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`saved` (where a typed destination loads a chunk) comes once per downloaded chunk, after
    its file is published with the sha256 the ledger records; a run that downloads nothing
    says nothing."""
    heard: list[SavedChunk] = []

    async def saved(self: FilesDestination, chunk: SavedChunk) -> tuple[()]:
        assert chunk.path.is_file()
        heard.append(chunk)
        return ()

    monkeypatch.setattr(FilesDestination, "saved", saved)
    out = tmp_path / "out"
    async with Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client:
        args = (REPORT, date(2026, 6, 1), date(2026, 6, 3))
        result = await client.backfill(*args, out=out, chunk="1d")
        again = await client.backfill(*args, out=out, chunk="1d")
    assert again.complete
    assert sorted(c.fingerprint for c in heard) == sorted(
        run.planned.fingerprint for run in result.chunks
    )
    for chunk in heard:
        assert chunk.path.is_relative_to(out.resolve())  # canonical, in the folder
        assert chunk.sha256 == sha256_of(chunk.path)
        assert chunk.chunk is not None
