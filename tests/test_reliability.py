"""Reliability and security under faults, crashes and bad input.

Five groups, each test saying what must happen:

- crash loop: a backfill in a child process (`tests/backfill_child.py`) SIGKILLed at seeded moments
  over planning, submitting, waiting, downloading and writing the manifest, against a sandbox in
  its own process (scaled time); run again after each kill until it completes. Then every file has
  the sha256 the manifest records, the rows equal one export of the whole range, and the sandbox
  created exactly one job per chunk. Two loops: `REPORTEXPORT_CRASH_KILLS` kills (default 5)
  on 60 chunks, and 20 kills on 730 chunks;
- a fault matrix (in process, simulated time): each sandbox fault alone, all at once, and a disk
  that fills up: the run finishes with the right data, or stops with a clear error and a
  consistent ledger and folder, and never submits a chunk twice;
- bad input through the Python API: a clear error naming what was wrong, before any API call,
  with nothing written;
- security: no token (nor its Basic form) in any artifact, Authorization never sent to the signed
  URL origin, the postback receiver on loopback with a token, a size cap and a flood of forged
  requests, file names from the plan only;
- load: 2,000 chunks over 20 exports within the default hourly and daily limits, zero 429s.

Figures and commands: RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from reportexport_async import (
    ClientConfig,
    ConfigurationError,
    ExportRequest,
    JobStatus,
    RateLimiter,
    ReportExportClient,
    ReportExportError,
    ScaledClock,
)
from reportexport_async.errors import LedgerError
from reportexport_async.jobs.orchestrator import BackfillResult, ExportSpec, ProgressEvent, backfill
from reportexport_async.ledger import SCHEMA_VERSION, Ledger
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.transport.postbacks import PostbackReceiver

from .conftest import SANDBOX_START, simulated_account

REPORT = "mp_action_listing_fast"
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


# -- shared helpers -------------------------------------------------------------------------------


def secret_forms(account_sid: str, auth_token: str) -> list[bytes]:
    """The token as given and as it travels in an Authorization header (Basic sid:token)."""
    basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    return [auth_token.encode(), basic.encode(), basic.rstrip("=").encode()]


def assert_no_secret(secrets: Sequence[bytes], artifacts: dict[str, bytes | str]) -> int:
    """No artifact contains any form of the secret; returns how many artifacts were scanned."""
    for name, content in artifacts.items():
        data = content.encode() if isinstance(content, str) else content
        for secret in secrets:
            assert secret not in data, f"the auth token leaked into {name}"
    return len(artifacts)


def disk_artifacts(*roots: Path) -> dict[str, bytes]:
    """Every file under `roots` (ledger, its WAL, manifest, outputs), as bytes."""
    found: dict[str, bytes] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[str(path)] = path.read_bytes()
    return found


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def chunk_file(manifest: dict[str, Any], chunk: dict[str, Any]) -> Path:
    """A chunk's file: its path is relative to the manifest's folder."""
    return Path(manifest["folder"]) / chunk["path"]


def chunk_rows(manifest: dict[str, Any], report: str) -> list[list[str]]:
    """The rows of a report's chunk files, in date order, with one header."""
    chunks = sorted(
        (c for c in manifest["chunks"] if c["report"] == report), key=lambda c: c["start"]
    )
    rows: list[list[str]] = []
    for index, chunk in enumerate(chunks):
        body = csv_rows(chunk_file(manifest, chunk))
        rows.extend(body if index == 0 else body[1:])
    return rows


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ledger_rows(path: Path) -> list[dict[str, Any]]:
    """The ledger's exports table, read with plain sqlite3 (not through the library)."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM exports")]
    finally:
        db.close()


def assert_consistent(
    ledger_path: Path, out: Path, *, chunks: int, stats: dict[str, Any], all_submitted: bool = True
) -> None:
    """The invariants of a run that ended, however it ended:

    - the sandbox created one job per chunk that has one, never two (no duplicate submit);
    - every ledger entry has a job id (or, if its submit never succeeded, holds no claim);
    - a file exists under `out` only where the ledger records it, with the recorded sha256;
    - no `.part` file is left.
    """
    rows = ledger_rows(ledger_path)
    recorded_ids = [row["job_id"] for row in rows if row["job_id"] is not None]
    job_ids = set(recorded_ids)
    assert len(job_ids) == len(recorded_ids), "two ledger entries share a job"
    # The sandbox makes a job only for parameters it has not seen (docs/api-facts.md §1d), so more
    # jobs than chunks would mean two submits of one chunk under different parameters. A submit
    # whose answer was lost (a 5xx or a malformed body after the job was made) leaves a job the
    # ledger cannot know; the next run's submit is answered with that same job.
    assert len(job_ids) <= stats["jobs_created"] <= chunks, "a chunk was submitted twice"
    if all_submitted:
        assert stats["jobs_created"] == len(job_ids)
    for row in rows:
        if all_submitted:
            assert row["job_id"] is not None, f"ledger entry without a job id: {row}"
        else:
            assert row["job_id"] is not None or row["claimed_by"] is None, row
    recorded = {row["file_path"]: row for row in rows if row["file_path"] is not None}
    assert not list(out.rglob("*.part")), "a .part file was left behind"
    for path in out.rglob("*"):
        if not path.is_file() or path.name == "manifest.json":
            continue
        row = recorded.get(str(path))
        assert row is not None, f"{path} is on disk but the ledger does not record it"
        assert row["file_sha256"] == sha256_of(path), f"{path} differs from the ledger's sha256"
        assert row["file_size"] == path.stat().st_size


def assert_manifest_matches_disk(manifest: dict[str, Any]) -> int:
    """Every chunk the manifest calls done is on disk with the recorded size and sha256."""
    done = 0
    for chunk in manifest["chunks"]:
        if chunk["status"] == "done":
            path = chunk_file(manifest, chunk)
            assert path.is_file(), f"{path} is missing"
            assert path.stat().st_size == chunk["bytes"]
            assert sha256_of(path) == chunk["sha256"], f"{path} does not match the manifest"
            done += 1
    return done


async def whole_range_rows(
    sandbox: Sandbox, client: ReportExportClient, report: str, start: date, end: date, dest: Path
) -> list[list[str]]:
    """One clean export of the whole range (faults switched off), for comparison."""
    sandbox.set_faults({})
    ticket = await client.export(ExportRequest(report_id=report, start=start, end=end))
    job = await client.wait(ticket.job_id)
    assert job.status is JobStatus.COMPLETED
    result = await client.download(ticket.job_id, dest)
    return csv_rows(result.path)


# -- 1. crash loop --------------------------------------------------------------------------------

CRASH_SCALE = 600.0
CRASH_REPORTS = [["mp_action_listing_fast", {}], ["mp_performance_by_day", {}]]
CRASH_START = date(2025, 3, 1)  # 1-day chunks of two reports from here
CRASH_DAYS = 30  # the default run: 60 chunks; the 20-kill run takes 365 days (730 chunks)
ROWS_PER_DAY = 3  # the crash sandbox's --rows-per-day
#: Both sides' daily ReportExport quota: room for every chunk and the re-submits after kills
#: between a submit's answer and its record (the quota path is tested elsewhere).
CRASH_DAILY_LIMIT = 1000
SUBMIT_CONCURRENCY = 4  # the backfill's default: submits that may be answered at one kill


@contextlib.contextmanager
def sandbox_process(tmp_path: Path, *extra: str) -> Iterator[dict[str, Any]]:
    """The sandbox as its own process (it outlives the children), on scaled time."""
    with sandbox_command(
        tmp_path, "--time-scale", str(CRASH_SCALE), "--job-duration", "5-120",
        "--rows-per-day", str(ROWS_PER_DAY), "--seed", "11",
        "--daily-export-limit", str(CRASH_DAILY_LIMIT), *extra,
    ) as info:  # fmt: skip
        yield info


@contextlib.contextmanager
def sandbox_command(tmp_path: Path, *args: str) -> Iterator[dict[str, Any]]:
    """`python -m reportexport_async.sandbox --port 0 ARGS` as its own process, until the block
    ends: its first line (base URL, credentials, its clock). Its stderr goes to a file."""
    log = open(tmp_path / "sandbox.stderr", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PY, "-m", "reportexport_async.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=log, cwd=REPO, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, (tmp_path / "sandbox.stderr").read_text()
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def sandbox_stats(info: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(info["base_url"] + "/_sandbox/stats", timeout=10) as answer:
        return dict(json.load(answer))


@dataclass
class CrashLog:
    kills: list[str] = field(default_factory=list)  # the phases that really killed a child
    missed: list[str] = field(default_factory=list)  # kills asked for that never came
    runs: int = 0
    outputs: dict[str, bytes] = field(default_factory=dict)  # every child's stdout and stderr
    final: dict[str, Any] = field(default_factory=dict)


def kill_plan(kills: int, seed: int) -> list[str]:
    """Seeded kill moments spread over the run's phases, in the order a run meets them."""
    rng = random.Random(seed)
    cycle = ["timed", "submit-after", "event", "submit-before", "refresh", "download", "manifest"]
    plan: list[str] = []
    for index in range(kills):
        phase = cycle[index % len(cycle)] if kills > 5 else cycle[[0, 1, 4, 5, 6][index]]
        if phase == "timed":
            plan.append(f"timed:{rng.uniform(0.2, 0.8):.2f}")
        elif phase.startswith("submit"):
            plan.append(f"{phase}:{rng.randint(1, 3)}")
        elif phase == "event":
            plan.append(f"event:{rng.randint(1, 30)}")
        elif phase == "refresh":
            plan.append(f"refresh:{rng.randint(1, 6)}")
        elif phase == "download":
            plan.append(f"download:{rng.randint(1, 4)}")
        else:
            plan.append("manifest:1")
    # Kills that need work left go first; manifest kills (which come when all else is done)
    # close the plan.
    return sorted(plan, key=lambda kill: kill.startswith("manifest"))


def run_child(
    info: dict[str, Any], tmp_path: Path, kill: str | None, log: CrashLog, end: date
) -> int:
    payload = {
        "base_url": info["base_url"],
        "account_sid": info["account_sid"],
        "auth_token": info["auth_token"],
        "time_scale": CRASH_SCALE,
        "ledger": str(tmp_path / "ledger.sqlite"),
        "out": str(tmp_path / "out"),
        "start": CRASH_START.isoformat(),
        "end": end.isoformat(),
        "reports": CRASH_REPORTS,
        "chunk": "1d",
        "daily_limit": CRASH_DAILY_LIMIT,
    }
    env = dict(os.environ)
    env.pop("BACKFILL_CHILD_KILL", None)
    delay: float | None = None
    if kill is not None and kill.startswith("timed:"):
        delay = float(kill.partition(":")[2])
    elif kill is not None:
        env["BACKFILL_CHILD_KILL"] = kill
    proc = subprocess.Popen(
        [PY, "-m", "tests.backfill_child", json.dumps(payload)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
    )  # fmt: skip
    if delay is not None:
        try:
            out, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    else:
        out, err = proc.communicate(timeout=120)
    log.runs += 1
    log.outputs[f"child {log.runs} stdout"] = out
    log.outputs[f"child {log.runs} stderr"] = err
    if proc.returncode == 0:
        log.final = json.loads(out.decode().strip().splitlines()[-1])
    return proc.returncode


def crash_loop(tmp_path: Path, kills: int, seed: int, days: int = CRASH_DAYS) -> None:
    log = CrashLog()
    end = CRASH_START + timedelta(days=days - 1)
    chunks = len(CRASH_REPORTS) * days
    with sandbox_process(tmp_path) as info:
        for kill in kill_plan(kills, seed):
            code = run_child(info, tmp_path, kill, log, end)
            if code == -9:
                log.kills.append(kill)
            else:
                assert code == 0, log.outputs[f"child {log.runs} stderr"][-3000:].decode()
                log.missed.append(kill)
            # After each kill the same command runs again (without a kill) until it completes,
            # except that the next planned kill interrupts that rerun instead.
        for _ in range(5):
            if run_child(info, tmp_path, None, log, end) == 0:
                break
        stats = sandbox_stats(info)
        out = tmp_path / "out"
        manifest = json.loads((out / "manifest.json").read_text())
        rows = {report: chunk_rows(manifest, report) for report, _ in CRASH_REPORTS}

        async def reference() -> dict[str, list[list[str]]]:
            config = ClientConfig(
                account_sid=info["account_sid"],
                auth_token=info["auth_token"],
                account_type="Mediapartners",
                base_url=info["base_url"],
            )
            now = datetime.fromisoformat(sandbox_stats(info)["now"])
            clock = ScaledClock(start=now, scale=CRASH_SCALE)
            found = {}
            async with ReportExportClient(
                config, limiter=RateLimiter(clock=clock), clock=clock
            ) as client:
                for report, _ in CRASH_REPORTS:
                    ticket = await client.export(
                        ExportRequest(report_id=report, start=CRASH_START, end=end)
                    )
                    await client.wait(ticket.job_id)
                    path = tmp_path / "whole" / f"{report}.csv"
                    path.parent.mkdir(exist_ok=True)
                    found[report] = csv_rows((await client.download(ticket.job_id, path)).path)
            return found

        whole = asyncio.run(reference())
    print(
        f"\ncrash loop: {len(log.kills)} kills survived ({', '.join(log.kills)}), "
        f"{len(log.missed)} planned kills not reached ({', '.join(log.missed)}), "
        f"{log.runs} child runs, ReportExport calls {stats['calls']['ReportExport']}, "
        f"jobs created {stats['jobs_created']} for {chunks} chunks"
    )
    # The run completed, and every one of its files is the one the manifest records.
    assert log.final["counts"] == {
        "done": chunks,
        "failed": 0,
        "pending": 0,
        "deferred": 0,
        "stuck": 0,
    }
    assert assert_manifest_matches_disk(manifest) == chunks
    assert not list(out.rglob("*.part"))
    # The kills really happened, over the phases planned.
    assert len(log.kills) >= kills - 1, f"too few kills reached: missed {log.missed}"
    assert {k.partition(":")[0] for k in log.kills} >= {"timed", "refresh", "download", "manifest"}
    # Rows equal one clean export of the whole range.
    for report, _ in CRASH_REPORTS:
        assert rows[report] == whole[report]
        assert len(rows[report]) == 1 + days * ROWS_PER_DAY
    # No submit beyond one per chunk: the sandbox created one job per chunk. ReportExport calls
    # beyond that are re-submits after a kill between the answer and the ledger's record,
    # answered by the service's de-duplication with the same job (docs/api-facts.md §1d).
    assert stats["jobs_created"] == chunks
    resubmits = stats["calls"]["ReportExport"] - chunks
    in_window = sum(1 for k in log.kills if not k.startswith(("manifest", "download")))
    assert 0 <= resubmits <= SUBMIT_CONCURRENCY * in_window
    assert stats["rate_limited"] == 0
    # The token appears in no child's output (DEBUG logs included), the ledger, the manifest or
    # the files.
    secrets = secret_forms(info["account_sid"], info["auth_token"])
    scanned = assert_no_secret(secrets, {**log.outputs, **disk_artifacts(out)})
    scanned += assert_no_secret(secrets, disk_artifacts(tmp_path.joinpath("ledger.sqlite").parent))
    assert scanned > chunks
    assert any(b"DEBUG" in err for name, err in log.outputs.items() if "stderr" in name)


def test_crash_loop_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Killed with SIGKILL `REPORTEXPORT_CRASH_KILLS` times (default 5: planning, between a
    submit and its record, waiting, mid-download, mid-manifest) and rerun: complete, intact,
    the same rows as a clean export, one job per chunk."""
    crash_loop(tmp_path, int(os.environ.get("REPORTEXPORT_CRASH_KILLS", "5")), seed=8)


@pytest.mark.slow
def test_crash_loop_survives_twenty_kills(tmp_path: Path) -> None:
    """20 kills, spread round-robin over every phase, on 730 chunks: enough work
    that no run finishes before its kill on a fast machine, and about 20 s, so CI runs it."""
    crash_loop(tmp_path, 20, seed=20, days=365)


# -- 2. the fault matrix --------------------------------------------------------------------------

FAULT_START, FAULT_END = date(2025, 2, 1), date(2025, 2, 10)
FAULT_CHUNKS = 10
ALL_FAULTS = {
    "http_5xx": 0.3,
    "burst_429": 0.03,
    "drop_connection": 0.2,
    "truncate_body": 0.2,
    "malformed_json": 0.1,
    "status_error_200": 0.1,
    "expired_signed_url": 0.3,
    "job_error": 0.2,
    "job_fail": 0.1,
    "job_stuck": 0.1,
    "lost_postback": 0.5,
}


@dataclass(frozen=True)
class Scenario:
    faults: dict[str, float]
    #: "finish": every chunk done with the right rows; a chunk whose retries ran out may fail
    #: with a clear error, and then the same command without the fault finishes the rest with
    #: no second submit. "settle": each chunk done, or failed/stuck with a clear error.
    must: str
    postbacks: bool = False
    seed: int = 5


SCENARIOS = {
    "http_5xx at 30%: retried, finishes with the right data": Scenario({"http_5xx": 0.3}, "finish"),
    "bursts of 429: waited out, finishes": Scenario({"burst_429": 0.1}, "finish"),
    "connections dropped mid-download: downloaded again, finishes": Scenario(
        {"drop_connection": 0.4}, "finish"
    ),
    "truncated bodies: detected by length, downloaded again, finishes": Scenario(
        {"truncate_body": 0.4}, "finish"
    ),
    "malformed JSON (after the call took effect): the resubmit is de-duplicated, finishes": (
        Scenario({"malformed_json": 0.3}, "finish")
    ),
    "HTTP 200 with Status ERROR: retried, finishes": Scenario({"status_error_200": 0.3}, "finish"),
    "expired signed URLs: a fresh one is asked for, finishes": Scenario(
        {"expired_signed_url": 0.5}, "finish"
    ),
    "jobs that go ERROR then recover: waited on, finishes": Scenario({"job_error": 0.5}, "finish"),
    "jobs that fail: replayed; what still fails is reported with its job id": Scenario(
        {"job_fail": 0.3}, "settle"
    ),
    "jobs stuck RUNNING: reported stuck, never resubmitted": Scenario({"job_stuck": 0.3}, "settle"),
    "lost postbacks: the polling safety net finishes": Scenario(
        {"lost_postback": 0.6}, "finish", postbacks=True
    ),
    "every fault at once: done or a clear stop, consistent, no duplicate": Scenario(
        ALL_FAULTS, "settle", postbacks=True, seed=9
    ),
}
RERUNS: list[str] = []  # "finish" scenarios that needed the rerun (reported by the summary)


def assert_settled(result: BackfillResult, manifest: dict[str, Any]) -> None:
    """Each chunk done (its file as recorded) or failed/stuck with an error saying why."""
    assert result.counts["pending"] == 0
    for run in result.chunks:
        assert run.status in ("done", "failed", "stuck")
        if run.status != "done":
            assert run.error, f"{run.label} ended {run.status} without saying why"
            if run.status == "failed" and run.job_id is not None:
                assert run.job_id in run.error or "HTTP" in run.error, run.error
    assert result.counts["done"] == assert_manifest_matches_disk(manifest)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_fault_matrix(tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str) -> None:
    scenario = SCENARIOS[name]
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    raised: list[BaseException] = []
    receiver: PostbackReceiver | None = None
    rerun: BackfillResult | None = None
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {"faults": scenario.faults, "seed": scenario.seed}
        if scenario.postbacks:
            receiver = await stack.enter_async_context(
                PostbackReceiver(token="reliability-postback-token")
            )
            options["postback_url"] = receiver.url
        sandbox, client, ledger = await stack.enter_async_context(
            simulated_account(tmp_path, **options)
        )

        async def run() -> BackfillResult | None:
            try:
                return await backfill(
                    client, ledger, [ExportSpec(REPORT)], FAULT_START, FAULT_END, out_dir=out,
                    chunk="1d", stuck_after=timedelta(hours=2), postbacks=receiver,
                    wait_for_replays=True,  # the replay machinery under faults, in one run
                )  # fmt: skip
            except ReportExportError as error:
                raised.append(error)
                return None

        result = await run()
        stats = sandbox.stats()
        assert_consistent(
            tmp_path / "ledger.sqlite", out, chunks=FAULT_CHUNKS, stats=stats,
            all_submitted=scenario.must == "finish" and result is not None and result.complete,
        )  # fmt: skip
        manifest = json.loads((out / "manifest.json").read_text())
        if result is not None:
            assert_settled(result, manifest)
        if scenario.must == "finish" and not (result is not None and result.complete):
            RERUNS.append(name)
            sandbox.set_faults({})
            rerun = await run()
        final_stats = sandbox.stats()
        whole = await whole_range_rows(
            sandbox, client, REPORT, FAULT_START, FAULT_END, tmp_path / "whole.csv"
        )
    injected = sum(stats["faults_injected"].get(fault, 0) for fault in scenario.faults)
    final_counts = (rerun or result).counts if (rerun or result) is not None else None
    print(
        f"\nfault matrix: {name}: faults injected {injected}, first run "
        f"{result.counts if result is not None else 'raised ' + repr(raised)}, "
        f"rerun needed {rerun is not None}, final {final_counts}, ReportExport calls "
        f"{final_stats['calls']['ReportExport']}, jobs created {final_stats['jobs_created']} "
        f"for {FAULT_CHUNKS} chunks"
    )
    assert injected > 0, "the fault was never injected"
    assert stats["internal_failure"] is None
    if scenario.must == "finish":
        assert not raised
        final = rerun or result
        assert final is not None
        assert final.complete, final.counts
        assert final_stats["jobs_created"] == FAULT_CHUNKS
        manifest = json.loads((out / "manifest.json").read_text())
        assert chunk_rows(manifest, REPORT) == whole
        assert_consistent(tmp_path / "ledger.sqlite", out, chunks=FAULT_CHUNKS, stats=final_stats)
    else:
        assert result is not None or raised
    if set(scenario.faults) == {"job_stuck"}:
        assert result is not None
        assert result.counts["stuck"] >= 1
    if scenario.postbacks:
        assert stats["postbacks"]["lost"] > 0
    # No form of the token in the logs, the errors, the manifest, the ledger or the files.
    artifacts: dict[str, bytes | str] = {
        "log records": "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records),
        "exceptions": "\n".join(f"{e!r} {e}" for e in raised),
        **disk_artifacts(tmp_path),
    }
    for label, outcome in (("result", result), ("rerun", rerun)):
        if outcome is not None:
            artifacts[label] = repr(outcome) + "\n".join(str(r.error) for r in outcome.chunks)
    assert_no_secret(secret_forms(sandbox.account_sid, sandbox.auth_token), artifacts)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs (root only); skipped when it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            "a disk that fills up needs a small tmpfs: `mount -t tmpfs` failed "
            f"({done.stderr.decode().strip() or 'not root?'})"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def full_disk_run(
    tmp_path: Path, out: Path
) -> tuple[BackfillResult | None, BaseException | None, dict[str, Any]]:
    """Ten chunks of ~21 KB each into a 200 KiB disk: it fills up around the ninth."""
    async with simulated_account(tmp_path, rows_per_day=300, seed=1) as (sandbox, client, ledger):
        try:
            result = await backfill(
                client, ledger, [ExportSpec(REPORT)], FAULT_START, FAULT_END, out_dir=out,
                chunk="1d",
            )  # fmt: skip
        except BaseException as error:
            return None, error, sandbox.stats()
        return result, None, sandbox.stats()


async def test_disk_that_fills_up_leaves_ledger_and_folder_consistent(
    tmp_path: Path, small_disk: Path
) -> None:
    """A full disk mid-run: whatever is on disk is recorded with its sha256, no `.part` is
    left, nothing is submitted twice, and the next run (with room) finishes the rest."""
    _, _, stats = await full_disk_run(tmp_path, small_disk)
    assert_consistent(tmp_path / "ledger.sqlite", small_disk, chunks=FAULT_CHUNKS, stats=stats)
    assert len([p for p in small_disk.rglob("*.csv")]) < FAULT_CHUNKS  # it really filled up


async def test_disk_that_fills_up_gives_a_clear_error(tmp_path: Path, small_disk: Path) -> None:
    result, error, _ = await full_disk_run(tmp_path, small_disk)
    if error is not None:
        assert isinstance(error, ReportExportError), repr(error)
        assert "space" in str(error).lower()
    else:
        assert result is not None
        failed = [run for run in result.chunks if run.status == "failed"]
        assert failed
        assert all("space" in (run.error or "").lower() for run in failed)


async def test_after_a_full_disk_the_next_run_finishes_without_a_second_submit(
    tmp_path: Path, small_disk: Path
) -> None:
    """The disk fills up: the chunk being written fails saying so, the run spends no more calls
    on submits or downloads; with room again, the same backfill finishes every chunk, each
    submitted once, the finished jobs downloaded by job id."""
    async with simulated_account(tmp_path, rows_per_day=300, seed=1) as (sandbox, client, ledger):
        run = {
            "client": client, "ledger": ledger, "exports": [ExportSpec(REPORT)],
            "start": FAULT_START, "end": FAULT_END, "out_dir": small_disk, "chunk": "1d",
        }  # fmt: skip
        first = await backfill(**run)
        stats = sandbox.stats()
        assert_consistent(
            tmp_path / "ledger.sqlite", small_disk, chunks=FAULT_CHUNKS, stats=stats,
            all_submitted=False,
        )  # fmt: skip
        full = [r for r in first.chunks if r.status == "failed"]
        assert full
        assert all("no space left" in (r.error or "") for r in full)
        assert any((r.error or "").startswith("download failed") for r in full)
        remount = subprocess.run(
            ["mount", "-o", "remount,size=4m", str(small_disk)], capture_output=True, check=False
        )
        assert remount.returncode == 0, remount.stderr
        second = await backfill(**run)
        final = sandbox.stats()
    print(
        f"\nfull disk: first run {first.counts} (ReportExport {stats['calls']['ReportExport']}, "
        f"Download {stats['calls']['Download']}); with room again {second.counts}; ReportExport "
        f"calls in all {final['calls']['ReportExport']} for {FAULT_CHUNKS} chunks"
    )
    assert second.complete, second.counts
    assert final["jobs_created"] == FAULT_CHUNKS
    assert final["calls"]["ReportExport"] == FAULT_CHUNKS  # never a chunk submitted twice
    assert_consistent(tmp_path / "ledger.sqlite", small_disk, chunks=FAULT_CHUNKS, stats=final)
    manifest = json.loads((small_disk / "manifest.json").read_text())
    assert assert_manifest_matches_disk(manifest) == FAULT_CHUNKS


# -- 3. bad input through the Python API ----------------------------------------------------------

GOOD = (date(2025, 1, 1), date(2025, 1, 3))


@dataclass(frozen=True)
class Bad:
    specs: tuple[ExportSpec, ...] = (ExportSpec(REPORT),)
    start: Any = GOOD[0]
    end: Any = GOOD[1]
    options: tuple[tuple[str, Any], ...] = ()
    match: str = ""


BAD_INPUTS = {
    "start after end": Bad(start=date(2025, 2, 1), end=date(2025, 1, 1), match="start.*after"),
    "a range in the future": Bad(end=date(2031, 1, 1), match="end.*future"),
    "a range starting in the future": Bad(
        start=date(2030, 1, 1), end=date(2031, 1, 1), match="future"
    ),
    "an unknown chunk rule": Bad(options=(("chunk", "fortnight"),), match="chunk"),
    "zero concurrency": Bad(options=(("download_concurrency", 0),), match="concurrency"),
    "no report at all": Bad(specs=(), match="exports"),
    "a path-like report id ../x": Bad(specs=(ExportSpec("../x"),), match=r"report_id.*\.\./x"),
    "a path-like report id a/b": Bad(specs=(ExportSpec("a/b"),), match="report_id"),
    "a path-like report id ..\\x": Bad(specs=(ExportSpec("..\\x"),), match="report_id"),
    "a report id with a space": Bad(specs=(ExportSpec("mp action"),), match="report_id"),
    "a filter value that is a list": Bad(
        specs=(ExportSpec(REPORT, {"SUBAID": [1, 2]}),), match="SUBAID.*list"
    ),
    "a filter value that is None": Bad(
        specs=(ExportSpec(REPORT, {"SUBAID": None}),), match="SUBAID.*NoneType"
    ),
    "a filter value that is NaN": Bad(
        specs=(ExportSpec(REPORT, {"SUBAID": math.nan}),), match="SUBAID.*finite"
    ),
    "a filter value that is a datetime": Bad(
        specs=(ExportSpec(REPORT, {"SUBAID": datetime(2025, 1, 1)}),), match="SUBAID.*datetime"
    ),
    "a filter name with a space": Bad(
        specs=(ExportSpec(REPORT, {"Start Date": "x"}),), match="Start Date"
    ),
    "a date passed as a filter": Bad(
        specs=(ExportSpec(REPORT, {"START_DATE": "2025-01-01"}),), match="START_DATE"
    ),
    "an unknown result format": Bad(
        specs=(ExportSpec(REPORT, result_format="PDF"),), match="result_format"
    ),
}

# Dates in the wrong type or format: backfill compares them before checking their type.
BAD_DATES = {
    "a date as an ISO string": ("2025-01-01", "2025-01-03"),
    "a date in the wrong format": ("01/02/2025", "03/02/2025"),
    "a datetime instead of a date": (datetime(2025, 1, 1, 12), date(2025, 1, 3)),
}


async def assert_rejected_before_any_call(
    tmp_path: Path, bad: Bad, *, out: Path | None = None
) -> ConfigurationError:
    out = out or tmp_path / "out"
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        with pytest.raises(ConfigurationError) as caught:
            await backfill(
                client, ledger, list(bad.specs), bad.start, bad.end, out_dir=out,
                **dict(bad.options),
            )  # fmt: skip
        assert sandbox.stats()["total_calls"] == 0
        assert await ledger.entries() == []
    assert re.search(bad.match, str(caught.value), re.IGNORECASE | re.DOTALL), str(caught.value)
    # Nothing half-written: at most an empty output folder.
    assert not [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else True
    assert not list(tmp_path.rglob("*.part"))
    return caught.value


@pytest.mark.parametrize("name", list(BAD_INPUTS))
async def test_bad_input_is_refused_before_any_call(tmp_path: Path, name: str) -> None:
    await assert_rejected_before_any_call(tmp_path, BAD_INPUTS[name])


@pytest.mark.parametrize("name", list(BAD_DATES))
async def test_dates_of_the_wrong_type_are_refused_clearly(tmp_path: Path, name: str) -> None:
    start, end = BAD_DATES[name]
    error = await assert_rejected_before_any_call(
        tmp_path, Bad(start=start, end=end, match="start.*datetime.date")
    )
    assert error.setting == "start"


async def test_an_output_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    error = await assert_rejected_before_any_call(
        tmp_path, Bad(match="out_dir.*a-file"), out=blocker / "out"
    )
    assert error.setting == "out_dir"
    assert blocker.read_text() == "not a folder"
    error = await assert_rejected_before_any_call(tmp_path, Bad(match="out_dir"), out=blocker)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("account_type", ["Influencers", "brand-ish", ""])
async def test_an_unknown_account_type_is_refused_when_configuring(
    tmp_path: Path, account_type: str
) -> None:
    async with Sandbox(clock=ManualClock(SANDBOX_START)) as sandbox:
        with pytest.raises(ConfigurationError) as caught:
            ClientConfig(
                account_sid=sandbox.account_sid,
                auth_token=sandbox.auth_token,
                account_type=account_type,
                base_url=sandbox.base_url,
            )
        assert sandbox.stats()["total_calls"] == 0
    assert caught.value.setting == "account_type"
    assert sandbox.auth_token not in str(caught.value)
    assert caught.value.__cause__ is None  # pydantic's text (with the inputs) is not chained
    assert list(tmp_path.iterdir()) == []


async def test_without_the_catalog_an_unknown_report_costs_one_submit(tmp_path: Path) -> None:
    """With `check_reports=False` (or a catalog that cannot be read) the server judges: the
    first chunk of a report never used before is submitted alone, its 404 fails it with a
    message naming the report, and the report's other chunks fail without a call; nothing is
    downloaded; the ledger keeps no claim."""
    out = tmp_path / "out"
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        result = await backfill(
            client, ledger, [ExportSpec("no_such_report")], *GOOD, out_dir=out, chunk="1d",
            check_reports=False,
        )  # fmt: skip
        stats = sandbox.stats()
    assert result.counts == {"done": 0, "failed": 3, "pending": 0, "deferred": 0, "stuck": 0}
    for run in result.chunks:
        assert "no_such_report" in (run.error or "")
        assert "404" in (run.error or "")
    assert stats["jobs_created"] == 0
    assert stats["calls"]["ReportExport"] == 1  # the first chunk's; the others cost nothing
    assert stats["calls"]["Reports"] == 0
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["manifest.json"]
    assert all(row["claimed_by"] is None for row in ledger_rows(tmp_path / "ledger.sqlite"))


async def test_an_unknown_report_is_refused_with_at_most_one_call(tmp_path: Path) -> None:
    """By default (`check_reports`), one `GET /Reports` before the first submit: an unknown
    report (and one that is not API accessible) is refused with a clear error, no quota spent,
    no ledger entry written."""
    async with simulated_account(tmp_path) as (sandbox, client, ledger):
        with pytest.raises(ConfigurationError, match="no_such_report") as caught:
            await backfill(
                client, ledger, [ExportSpec(REPORT), ExportSpec("no_such_report")], *GOOD,
                out_dir=tmp_path / "o", chunk="1d", check_reports=True,
            )  # fmt: skip
        stats = sandbox.stats()
        assert stats["total_calls"] == 1
        assert stats["calls"]["Reports"] == 1
        assert stats["calls"]["ReportExport"] == 0
        assert await ledger.entries() == []
        hidden = [r.id for r in await client.reports() if r.api_accessible is False]
        assert hidden, "the sandbox's catalog has a report that is not API accessible"
        with pytest.raises(ConfigurationError, match="not API accessible"):
            await backfill(
                client, ledger, [ExportSpec(hidden[0])], *GOOD, out_dir=tmp_path / "o",
                chunk="1d", check_reports=True,
            )  # fmt: skip
        assert sandbox.stats()["calls"]["ReportExport"] == 0
    assert caught.value.setting == "report_id"
    assert not list((tmp_path / "o").rglob("*.*"))


def make_newer_ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future_things (x)")
    db.execute("INSERT INTO future_things VALUES (42)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty-header", "newer-schema"])
async def test_a_corrupt_or_newer_ledger_is_refused_and_left_alone(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "ledger.sqlite"
    if kind == "garbage":
        path.write_bytes(b"this is not a database\n" * 500)
    elif kind == "truncated":
        make_newer_ledger(tmp_path / "source.sqlite")
        data = (tmp_path / "source.sqlite").read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])
    elif kind == "empty-header":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    else:
        make_newer_ledger(path)
    before_rows = None
    if kind == "newer-schema":
        before_rows = sqlite3.connect(path).execute("SELECT * FROM future_things").fetchall()
    before = path.read_bytes()
    with pytest.raises(LedgerError) as caught:
        async with Ledger(path):
            pass
    message = str(caught.value)
    assert str(path) in message
    assert ("newer" in message) if kind == "newer-schema" else ("corrupt" in message)
    if before_rows is not None:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert db.execute("SELECT * FROM future_things").fetchall() == before_rows
        assert "exports" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        db.close()
    else:
        assert path.read_bytes() == before


async def test_a_newer_ledger_is_not_modified_at_all(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    make_newer_ledger(path)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="newer"):
        async with Ledger(path):
            pass
    assert path.read_bytes() == before


# -- 4. security ----------------------------------------------------------------------------------


async def test_a_full_run_leaks_no_token_and_sends_no_credentials_elsewhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logging on, a few faults to make retries and errors happen, then every artifact is
    scanned for the token and its Basic form: log records (and their arguments), the reprs of
    the client, config, ledger, limiter and results, the str and repr of errors raised on
    purpose, the manifest, the ledger file, the output files. Downloads go through 302s to the
    signed-URL origin, which never sees Authorization. File names are the plan's, never the
    server's Content-Disposition."""
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    events: list[ProgressEvent] = []
    errors: list[BaseException] = []
    faults = {"http_5xx": 0.2, "expired_signed_url": 0.3, "truncate_body": 0.2}
    async with simulated_account(tmp_path, faults=faults, seed=3) as (sandbox, client, ledger):
        result = await backfill(
            client, ledger, [ExportSpec(REPORT), ExportSpec("mp_clicks_by_day")],
            FAULT_START, FAULT_END, out_dir=out, chunk="1d", on_event=events.append,
        )  # fmt: skip
        stats = sandbox.stats()
        sandbox.set_faults({"http_5xx": 1.0})
        for attempt in (
            client.get_job("00000000-0000-4000-8000-000000000000"),
            client.export(ExportRequest(report_id="no_such_report", start=GOOD[0], end=GOOD[1])),
        ):
            try:
                await attempt
            except ReportExportError as error:
                errors.append(error)
        sandbox.set_faults({})
        try:
            await client.get_job("00000000-0000-4000-8000-000000000000")
        except ReportExportError as error:
            errors.append(error)
        bad = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token="not-the-token-" + sandbox.auth_token[::-1],
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        async with ReportExportClient(bad, clock=client.clock) as stranger:
            try:
                await stranger.get_job("x")
            except ReportExportError as error:
                errors.append(error)
        reprs = [repr(x) for x in (client, client.config, ledger, client.limiter, result)]
        reprs += [str(client.config), client.config.model_dump_json(), repr(client.session)]
        secrets = secret_forms(sandbox.account_sid, sandbox.auth_token)
    assert result.complete
    assert len(errors) == 4
    assert stats["signed_requests_with_authorization"] == 0
    assert stats["calls"]["SignedDownload"] >= 2 * FAULT_CHUNKS  # via the 302, not Mode=Stream
    assert stats["signed_urls_expired"] > 0  # and fresh URLs were fetched, still without it
    artifacts: dict[str, bytes | str] = {
        "log records": "\n".join(
            f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
        ),
        "reprs": "\n".join(reprs),
        "events": "\n".join(repr(e) for e in events),
        "errors": "\n".join(f"{e!r} {e} {e.__cause__!r}" for e in errors),
        **disk_artifacts(tmp_path),
    }
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert assert_no_secret(secrets, artifacts) >= 2 * FAULT_CHUNKS + 4
    # Output file names come from the plan only.
    planned = {out / run.planned.path for run in result.chunks} | {out / "manifest.json"}
    on_disk = {p for p in out.rglob("*") if p.is_file()}
    assert on_disk == planned
    server_name = re.compile(r"\d{8}_\d{8}\.")  # the sandbox's Content-Disposition names
    assert not [p for p in tmp_path.rglob("*") if server_name.search(p.name)]


def test_tls_verification_cannot_be_switched_off() -> None:
    """No setting turns certificate checks off (an unknown setting is refused), and no code path
    passes `ssl=False` or a non-verifying SSL context to aiohttp."""
    for setting in ("verify_ssl", "ssl", "verify", "insecure"):
        with pytest.raises(ConfigurationError, match=setting):
            ClientConfig.model_validate(
                {"account_sid": "IRx", "auth_token": "t", "account_type": "Mediapartners",
                 setting: False}
            )  # fmt: skip
    source = "\n".join(
        p.read_text()
        for p in (REPO / "reportexport_async").rglob("*.py")
        if "sandbox" not in p.parts
    )
    for pattern in (r"ssl\s*=\s*False", r"verify_ssl", r"CERT_NONE", r"check_hostname\s*=\s*False"):
        assert not re.search(pattern, source), pattern


async def test_postback_receiver_defaults_and_limits() -> None:
    """Loopback by default, 404 for a wrong token or path, 413 beyond the body cap."""
    async with (
        PostbackReceiver(token="receiver-token-for-tests") as receiver,
        aiohttp.ClientSession() as http,
    ):
        assert receiver.host == "127.0.0.1"
        assert receiver._runner is not None
        assert {address[0] for address in receiver._runner.addresses} == {"127.0.0.1"}
        base = receiver.url.rsplit("/postback/", 1)[0]
        for path in ("/postback/receiver-token-for-test", "/postback/", "/", "/postback/x/y"):
            async with http.get(base + path, params={"JobId": "j"}) as answer:
                assert answer.status == 404
        async with http.post(receiver.url, data=b"x" * (64 * 1024)) as answer:
            assert answer.status == 413
        async with http.post(receiver.url, json={"JobId": "j"}) as answer:
            assert answer.status == 200
    assert receiver.counts["too_large"] == 1
    assert receiver.counts["accepted"] == 1
    assert "receiver-token-for-tests" not in repr(receiver)


async def test_a_flood_of_forged_postbacks_during_a_backfill(tmp_path: Path) -> None:
    """2,000 concurrent forged GET/POSTs while a backfill runs: 1,000 with wrong tokens (404,
    no call), 750 with the right token and unknown job ids (200, no call), 250 with the right
    token naming jobs in flight (at most one Download call each, answered 202). The run
    completes with one job per chunk and every chunk downloaded once."""
    scale = 600.0
    chunks = 10
    token = "flood-test-token-0123456789"
    known: list[str] = []
    flood_ready = anyio.Event()
    answers: list[int] = []

    def on_event(event: ProgressEvent) -> None:
        if event.status == "submitted" and event.job_id:
            known.append(event.job_id)
            if len(known) >= 5:
                flood_ready.set()

    async def forge(http: aiohttp.ClientSession, url: str, index: int) -> None:
        job_id = known[index % len(known)] if index % 4 == 3 else f"forged-{index}"
        fields = {"JobId": job_id, "Status": "COMPLETED"}
        request = http.post(url, json=fields) if index % 2 else http.get(url, params=fields)
        async with request as answer:
            answers.append(answer.status)

    async with PostbackReceiver(token=token) as receiver:
        base = receiver.url.rsplit("/postback/", 1)[0]
        # Signed URLs that outlive the flood: at this time scale the default 300 s are half a
        # real second, and an event loop busy with 2,000 postbacks can take longer than that
        # between a 302 and its GET (a new URL costs one more Download call, not the flood's).
        async with Sandbox(
            time_scale=scale, rows_per_day=3, job_duration=(900, 1200), signed_url_ttl=36000
        ) as sandbox:
            clock = ScaledClock(start=sandbox.now(), scale=scale)
            config = ClientConfig(
                account_sid=sandbox.account_sid,
                auth_token=sandbox.auth_token,
                account_type="Mediapartners",
                base_url=sandbox.base_url,
            )
            async with (
                Ledger(tmp_path / "ledger.sqlite", clock=clock) as ledger,
                ReportExportClient(
                    config, limiter=RateLimiter(clock=clock, store=ledger.counters), clock=clock
                ) as client,
            ):
                finished_at: list[float] = []
                flood_window: list[float] = []

                async def flood() -> None:
                    with anyio.fail_after(30):
                        await flood_ready.wait()
                    flood_window.append(time.monotonic())
                    connector = aiohttp.TCPConnector(limit=200)
                    async with aiohttp.ClientSession(connector=connector) as http:
                        urls = [base + "/postback/wrong-token-" + str(i % 7) for i in range(1000)]
                        jobs = [forge(http, receiver.url, i) for i in range(1000)]

                        async def wrong(url: str) -> None:
                            async with http.get(url, params={"JobId": known[0]}) as answer:
                                answers.append(answer.status)

                        await asyncio.gather(*jobs, *(wrong(u) for u in urls))
                    flood_window.append(time.monotonic())

                async with anyio.create_task_group() as group:
                    group.start_soon(flood)
                    result = await backfill(
                        client, ledger, [ExportSpec(REPORT)], FAULT_START,
                        FAULT_START + timedelta(days=chunks - 1), out_dir=tmp_path / "out",
                        chunk="1d", postbacks=receiver, on_event=on_event,
                    )  # fmt: skip
                    finished_at.append(time.monotonic())
                stats = sandbox.stats()
    print(
        f"\nflood: {len(answers)} forged postbacks during a {chunks}-chunk run: "
        f"{answers.count(404)} answered 404 (wrong token), {answers.count(200)} accepted and "
        f"ignored or answered with one Download; extra Download calls (202) "
        f"{stats['status_codes'].get('202', 0)}; "
        f"ReportExport calls {stats['calls']['ReportExport']}"
    )
    assert result.complete
    assert len(answers) == 2000
    assert answers.count(404) == 1000
    assert answers.count(200) == 1000
    assert receiver.counts["wrong_token"] == 1000
    assert receiver.counts["accepted"] == 1000
    assert flood_window[0] < finished_at[0], "the flood started after the run had finished"
    assert stats["jobs_created"] == chunks
    assert stats["calls"]["ReportExport"] == chunks
    assert stats["calls"]["Replay"] == 0
    # Every extra Download call is a 202 caused by a forged postback naming a job in flight;
    # wrong tokens and unknown ids cost nothing.
    not_ready = stats["status_codes"].get("202", 0)
    assert stats["calls"]["Download"] == chunks + not_ready
    assert not_ready <= 250  # the forged postbacks that named known jobs


# -- 5. load --------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_thousand_chunks_within_the_default_limits(tmp_path: Path) -> None:
    """20 exports (one report, 20 distinct SUBAID filters: the partner catalog has 3 exportable
    reports) x 100 days in 1-day chunks = 2,000 chunks, with the sandbox's default limits
    (1,000 calls an hour, 100 ReportExport a day: 20 sandbox days, waited for): it completes
    with zero 429 answers and the hourly bucket never exceeded."""
    specs = [ExportSpec(REPORT, {"SUBAID": str(1000 + n)}) for n in range(20)]
    start = date(2025, 1, 1)
    end = start + timedelta(days=99)
    started = time.perf_counter()
    async with simulated_account(tmp_path, rows_per_day=1, job_duration=(30, 300)) as (
        sandbox, client, ledger,
    ):  # fmt: skip
        result = await backfill(
            client, ledger, specs, start, end, out_dir=tmp_path / "out", chunk="1d",
            wait_for_quota=True, download_concurrency=8,
        )  # fmt: skip
        stats = sandbox.stats()
    elapsed = time.perf_counter() - started
    print(
        f"\nload: {len(result.chunks)} chunks in {elapsed:.1f} s real, "
        f"{stats['total_calls']} calls, hourly max {stats['hourly']['max_used']}, "
        f"sandbox time {stats['now']}"
    )
    assert len(result.chunks) == 2000
    assert result.complete, result.counts
    assert stats["rate_limited"] == 0
    assert stats["status_codes"].get("429", 0) == 0
    assert stats["hourly"]["max_used"] <= stats["hourly"]["limit"] == 1000
    assert stats["jobs_created"] == 2000
    assert stats["calls"]["ReportExport"] == 2000
    # 100 a day: the submits took 20 quota days (the first one and 19 more), never exceeded.
    days = (datetime.fromisoformat(stats["now"]).date() - SANDBOX_START.date()).days
    assert days >= 19
