"""The command line against the sandbox: in process (`main(argv)` and click's CliRunner) and as a
subprocess (`python -m reportexport_async.cli` and the `reportexport` console script). Exit codes
0/1/2/3, one-line usage errors before any API call, the `--json` event stream, `--dry-run`, the
jobs and ledger commands, `sandbox serve`, live progress on a terminal, and the README's first
command."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import anyio
import pytest
from click.testing import CliRunner

from reportexport_async import ClientConfig, ExportRequest, PollPolicy, ReportExportClient
from reportexport_async.cli import cli, main
from reportexport_async.jobs.exports import fetch_export
from reportexport_async.ledger import Ledger
from reportexport_async.sandbox.dialect import DIALECT_ENV
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .conftest import external_account
from .read_only import locked_by_another_process, read_only, unprivileged

ROOT = Path(__file__).resolve().parent.parent
MODULE = [sys.executable, "-m", "reportexport_async.cli"]
TODAY = datetime.now(UTC).date()
# A settled range of 3 weekly chunks (7d chunks are aligned to Mondays).
END = TODAY - timedelta(days=TODAY.weekday() + 8)  # the Sunday before last
START = END - timedelta(days=20)
RANGE = ["--start", str(START), "--end", str(END)]
ENV_VARS = ("IMPACT_ACCOUNT_SID", "IMPACT_AUTH_TOKEN", "IMPACT_ACCOUNT_TYPE", "IMPACT_BASE_URL")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials from the machine, and default paths inside the test's folder (the user's
    data and cache folders too)."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(extra)
    return env


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("reportexport"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def account(
    impact_sandbox_factory: Callable[..., SandboxThread], monkeypatch: pytest.MonkeyPatch
) -> SandboxThread:
    """An external sandbox whose credentials are in the environment (`external_account`)."""
    return external_account(impact_sandbox_factory, monkeypatch)


def completed_job(sandbox: SandboxThread, report: str = "mp_clicks_by_day") -> str:
    """A completed job in the external sandbox, made with the library (not the command line)."""

    async def make() -> str:
        config = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        async with ReportExportClient(config) as client:
            ticket = await client.export(ExportRequest(report_id=report, start=START, end=END))
            await client.wait(ticket.job_id, poll=PollPolicy(initial=0.02, maximum=0.05))
            return ticket.job_id

    return anyio.run(make)


# -- backfill on the built-in sandbox -----------------------------------------------------------


def test_backfill_sandbox_json_event_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(
        capsys,
        "backfill", "mp_action_listing_fast", "mp_performance_by_day", *RANGE,
        "--sandbox", "--json", "--merge", "--out", "out", "--ledger", "l.sqlite",
    )  # fmt: skip
    assert code == 0, err
    events = json_lines(out)  # every line is one JSON object
    kinds = [event["event"] for event in events]
    assert kinds[0] == "sandbox"
    assert kinds[1] == "plan"
    assert kinds[-1] == "summary"
    plan = events[1]["plan"]
    assert plan["cost"]["submits"] == plan["cost"]["chunks"] == len(plan["chunks"]) == 6
    assert {chunk["report"] for chunk in plan["chunks"]} == {
        "mp_action_listing_fast",
        "mp_performance_by_day",
    }
    statuses = {e["status"] for e in events if e["event"] == "chunk"}
    assert {"submitted", "downloading", "done"} <= statuses
    done = [e for e in events if e["event"] == "chunk" and e["status"] == "done"]
    assert len(done) == 6
    assert all(e["bytes"] > 0 and e["job_id"] for e in done)
    summary = events[-1]
    assert summary["counts"] == {"done": 6, "failed": 0, "pending": 0, "deferred": 0, "stuck": 0}
    assert summary["calls"]["ReportExport"] == 6
    assert summary["calls"]["Download"] == 6
    manifest = Path(summary["manifest"])
    assert manifest == Path("out/manifest.json")
    assert {c["status"] for c in json.loads(manifest.read_text())["chunks"]} == {"done"}
    assert sorted(p.name for p in Path("out").glob("*.csv")) == [
        "mp_action_listing_fast.csv",
        "mp_performance_by_day.csv",
    ]
    assert len(list(Path("out/mp_action_listing_fast").glob("*.csv"))) == 3


def test_backfill_plain_output_ends_with_a_summary_table_and_the_manifest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(capsys, "backfill", "mp_clicks_by_day", *RANGE, "--sandbox")
    assert code == 0
    assert "built-in sandbox at http://127.0.0.1:" in out
    # Not a terminal: the summary is tab-separated lines, under a header line.
    assert "report\tchunks\tdone\tfailed\tpending\tdeferred\tstuck\trows\tbytes\n" in out
    assert re.search(r"^mp_clicks_by_day\t3\t3\t0\t0\t0\t0\t1050\t\d+$", out, re.M), out
    assert "API calls: " in out
    assert out.rstrip().endswith("manifest: reportexport-out/manifest.json")
    # Not a terminal: no live progress (no cursor movement).
    assert "\x1b[" not in out
    assert Path("data/reportexport/sandbox-ledger.sqlite").exists()
    assert not Path(".reportexport").exists()


def test_backfill_exit_3_when_chunks_wait_for_the_quota(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(
        capsys,
        "backfill", "mp_clicks_by_day", *RANGE, "--chunk", "1d",
        "--sandbox", "--sandbox-daily-export-limit", "4", "--json",
    )  # fmt: skip
    assert code == 3
    summary = json_lines(out)[-1]
    assert summary["counts"] == {"done": 4, "failed": 0, "pending": 17, "deferred": 0, "stuck": 0}
    assert summary["calls"]["ReportExport"] == 4
    assert summary["pending_resets_at"]
    quota_events = [e for e in json_lines(out) if e["event"] == "quota"]
    assert quota_events
    assert all((e.get("quota_left") or 0) >= 0 for e in json_lines(out))  # never below zero


def test_backfill_pending_plain_output_says_how_to_resume(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(
        capsys,
        "backfill", "mp_clicks_by_day", *RANGE,
        "--sandbox", "--sandbox-daily-export-limit", "1",
    )  # fmt: skip
    assert code == 3
    assert "2 chunks wait for the daily ReportExport quota" in out
    assert "run the same command again" in out


def test_backfill_exit_1_when_chunks_fail(capsys: pytest.CaptureFixture[str]) -> None:
    # mp_legacy_invoice is in the catalog but not available through the API. Without the
    # catalog check, the first chunk of a report never used before is submitted alone; its 404
    # fails the others without a call.
    code, out, _ = run_main(
        capsys,
        "backfill", "mp_clicks_by_day", "mp_legacy_invoice", *RANGE, "--sandbox", "--json",
        "--no-check-reports",
    )  # fmt: skip
    assert code == 1
    summary = json_lines(out)[-1]
    assert summary["counts"] == {"done": 3, "failed": 3, "pending": 0, "deferred": 0, "stuck": 0}
    assert summary["calls"]["ReportExport"] == 3 + 1  # the good report's, and one probe
    assert "Reports" not in summary["calls"]
    failed = [e for e in json_lines(out) if e.get("status") == "failed"]
    assert {e["report"] for e in failed} == {"mp_legacy_invoice"}
    assert all("404" in e["message"] for e in failed)


def test_backfill_refuses_a_report_the_catalog_does_not_export(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(
        capsys, "backfill", "mp_clicks_by_day", "mp_legacy_invoice", *RANGE, "--sandbox",
        "--check-reports",
    )  # fmt: skip
    assert code == 2
    assert "mp_legacy_invoice" in err
    assert "not API accessible" in err
    assert "Traceback" not in err + out


def test_dry_run_prints_the_plan_and_makes_no_call(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        capsys, "backfill", "mp_clicks_by_day", "mp_performance_by_day", *RANGE, "--dry-run"
    )
    assert code == 0, err
    assert "dry run: no API call was made" in out
    assert "6 chunks: 0 done already, 0 to re-attach, 6 to submit" in out
    code, out, _ = run_main(capsys, "backfill", "mp_clicks_by_day", *RANGE, "--dry-run", "--json")
    assert code == 0
    events = json_lines(out)
    assert [e["event"] for e in events] == ["plan", "summary"]
    assert events[-1]["dry_run"] is True
    assert events[-1]["manifest"] is None
    assert account.stats()["total_calls"] == 0
    assert not Path("reportexport-out").exists()


def test_backfill_chunk_auto_twice_costs_nothing_the_second_time(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run knows no rows per day (weekly chunks); the second knows 5 a day, for which
    the auto rule alone would pick 364-day chunks: it reuses the recorded ones instead. (The
    rows are learned from the job listing's RecordsProcessed, so the first run uses no
    postbacks; the last one does, to spare the tracker's first tick of 10 real seconds.)"""
    args = ["--chunk", "auto", "--json", "--out", "out", "--ledger", "l.sqlite"]
    with socket.socket() as probe:  # a free port for the postback receiver
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account.configure(postback_url=f"http://127.0.0.1:{port}/postback/auto-chunk-test-token")
    postbacks = ["--postback-listen", f"127.0.0.1:{port}"]
    postbacks += ["--postback-token", "auto-chunk-test-token"]

    def backfill(start: Any, end: Any, *extra: str) -> tuple[list[str], dict[str, Any], int]:
        before = account.stats()["total_calls"]
        code, out, err = run_main(
            capsys, "backfill", "mp_clicks_by_day", "--start", str(start), "--end", str(end),
            *args, *extra,
        )  # fmt: skip
        assert code == 0, err
        events = json_lines(out)
        plan = next(e["plan"] for e in events if e["event"] == "plan")
        chunks = [c["chunk"] for c in plan["chunks"]]
        return chunks, events[-1], account.stats()["total_calls"] - before

    def files() -> set[str]:
        return {str(p) for p in Path("out").rglob("*") if p.is_file()}

    first, summary, _ = backfill(START, END)
    assert len(first) == 3
    assert summary["calls"]["ReportExport"] == 3
    dry, _, server_calls = backfill(START, END, "--dry-run")
    assert (dry, server_calls) == (first, 0)
    second, summary, server_calls = backfill(START, END)
    assert second == first
    assert summary["calls"] == {}
    assert server_calls == 0
    expected = {f"out/mp_clicks_by_day/{c.replace('..', '_')}.csv" for c in first}
    assert files() == expected | {"out/manifest.json"}
    # Five days before and a week after: only those days are submitted, in new chunks.
    wider, summary, _ = backfill(START - timedelta(days=5), END + timedelta(days=7), *postbacks)
    new = [c for c in wider if c not in first]
    assert set(first) <= set(wider)
    assert new
    assert summary["calls"]["ReportExport"] == len(new)
    for chunk in new:  # ISO dates compare as text
        first_day, last_day = chunk.split("..")
        assert last_day < str(START) or first_day > str(END)
    assert files() == {f"out/mp_clicks_by_day/{c.replace('..', '_')}.csv" for c in wider} | {
        "out/manifest.json"
    }


# -- usage errors: one line, exit 2, before any API call ---------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "2025-13-01", "--end", "2025-12-31"], "not a date"),
        (["--start", "yesterday", "--end", "2025-12-31"], "--start"),
        (["--start", "2025-02-01", "--end", "2025-01-01"], "is after --end"),
        ([*RANGE, "--chunk", "fortnight"], "unknown chunk rule 'fortnight'"),
        ([*RANGE, "--chunk", "0d"], "N from 1 to 3660 days"),
        ([*RANGE, "--chunk", "1000000d"], "'--chunk': chunk rule '1000000d' is out of range"),
        ([*RANGE, "--param", "SUBAID"], "expected KEY=VALUE"),
        ([*RANGE, "--format", "pdf"], "--format"),
        ([*RANGE, "--concurrency", "0"], "--concurrency"),
        ([*RANGE, "--postback-listen", "host:port"], "HOST:PORT"),
        ([*RANGE, "--out", "blocker/out"], "cannot be written"),
        (
            ["--start", str(TODAY), "--end", str(TODAY + timedelta(days=30))],
            f"--end: {TODAY + timedelta(days=30)} is in the future",
        ),
        ([*RANGE, "--ledger", "blocker/ledger.sqlite"], "ledger"),
        ([*RANGE, "--bogus"], "No such option"),
        (["--end", str(END)], "Missing option '--start'"),
    ],
)
def test_usage_errors_are_one_line_exit_2_and_cost_no_call(
    account: SandboxThread,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    Path("blocker").write_text("a file where a folder should be")
    code, out, err = run_main(capsys, "backfill", "mp_clicks_by_day", *args)
    assert code == 2, (out, err)
    assert_one_line_error(err, needle)
    assert account.stats()["total_calls"] == 0


@pytest.mark.parametrize(
    ("args", "needle", "calls"),
    [
        (["backfill", "../x", *RANGE], "report_id", 0),
        (["backfill", "a/b", *RANGE], "report_id", 0),
        (["backfill", "mp_clicks_by_day", *RANGE, "--param", "START_DATE=2025-01-01"],
         "START_DATE", 0),
        (["backfill", "mp_clicks_by_day", *RANGE, "--ledger", "corrupt.sqlite"], "corrupt", 0),
        (["backfill", "mp_clicks_by_day", *RANGE, "--ledger", "newer.sqlite"], "newer", 0),
        (["backfill", "mp_clicks_by_day", *RANGE, "--account-type", "Influencers"],
         "--account-type", 0),
        # Unknown to the catalog: one GET /Reports, no submit.
        (["backfill", "no_such_report", *RANGE, "--check-reports"], "no_such_report", 1),
        (["export", "../x", "--start", str(START), "--end", str(END)], "report_id", 0),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_before_any_submit(
    account: SandboxThread,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
    calls: int,
) -> None:
    """Issue 8's bad input through the command line: a clear one-line error, exit 2, no
    submit, and the ledger files left as they were."""
    Path("corrupt.sqlite").write_bytes(b"not a database\n" * 100)
    newer = sqlite3.connect("newer.sqlite")
    newer.execute("PRAGMA user_version = 999")
    newer.execute("CREATE TABLE t (x)")
    newer.commit()
    newer.close()
    before = {name: Path(name).read_bytes() for name in ("corrupt.sqlite", "newer.sqlite")}
    code, out, err = run_main(capsys, *args)
    assert code == 2, (out, err)
    assert_one_line_error(err, needle)
    stats = account.stats()
    assert stats["total_calls"] == calls
    assert stats["calls"]["ReportExport"] == 0
    assert {name: Path(name).read_bytes() for name in before} == before


def test_no_credentials_names_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "backfill", "mp_clicks_by_day", *RANGE)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "IMPACT_ACCOUNT_SID", "--auth-token-file", "--sandbox")
    assert not Path("data").exists()  # not even a ledger file was made


def test_incomplete_credentials_name_the_missing_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMPACT_ACCOUNT_SID", "IRsomething")
    code, _, err = run_main(capsys, "export", "mp_clicks_by_day", *RANGE)
    assert code == 2
    assert_one_line_error(err, "--auth-token-file", "IMPACT_AUTH_TOKEN", "--sandbox")
    assert "auth_token" not in err
    code, _, err = run_main(
        capsys, "backfill", "r", *RANGE, "--sandbox", "--base-url", "http://x.example"
    )
    assert code == 2
    assert_one_line_error(err, "--sandbox makes its own account")


@pytest.mark.parametrize("given_by", ["--base-url", "IMPACT_BASE_URL"])
@pytest.mark.parametrize("command", [["backfill", "mp_clicks_by_day", *RANGE], ["jobs", "list"]])
def test_plain_http_to_another_host_is_refused_before_any_call(
    account: SandboxThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    given_by: str,
    command: list[str],
) -> None:
    """The token would cross the network in clear text: exit 2, one line, nothing sent."""
    far = "http://192.0.2.2:18765"
    if given_by == "--base-url":
        args = [*command, "--base-url", far]
    else:
        monkeypatch.setenv("IMPACT_BASE_URL", far)
        args = command
    code, out, err = run_main(capsys, *args)
    assert code == 2, (out, err)
    assert out == ""
    assert_one_line_error(err, "--base-url: plain http:// is allowed only for a loopback host")
    assert "base_url" not in err
    assert "use https:// for 192.0.2.2" in err
    assert account.auth_token not in err
    assert account.stats()["total_calls"] == 0
    assert not Path("data").exists()


def test_wrong_token_is_one_line_without_the_token(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "not-the-right-token-0123456789"
    Path("token").write_text(secret + "\n")
    monkeypatch.delenv("IMPACT_AUTH_TOKEN")
    code, out, err = run_main(capsys, "jobs", "list", "--auth-token-file", "token")
    assert code == 1
    assert_one_line_error(err, "401")
    assert secret not in out + err
    assert account.auth_token not in out + err
    code, _, err = run_main(capsys, "jobs", "list", "--auth-token-file", "missing-file")
    assert code == 2
    assert_one_line_error(err, "--auth-token-file")


# -- export, jobs, ledger -----------------------------------------------------------------------


def test_export_on_the_sandbox_then_from_the_ledger(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_main(
        capsys, "export", "mp_clicks_by_day", *RANGE, "--param", "SUBAID=7", "--sandbox", "--json"
    )
    assert code == 0, err
    (outcome,) = [e for e in json_lines(out) if e["event"] == "export"]
    assert outcome["action"] == "downloaded"
    assert outcome["submitted"] is True
    assert outcome["calls"]["ReportExport"] == 1
    path = Path(outcome["path"])
    assert path.parent.parent == Path("reportexport-out")
    assert path.name == f"{START}_{END}.csv"
    assert path.stat().st_size == outcome["size"]
    # No dates: the report's default range (the guide's rule 5; the partner document marks the
    # dates required, so a sandbox in the strict dialect would refuse it).
    monkeypatch.setenv(DIALECT_ENV, "examples")
    code, out, err = run_main(capsys, "export", "mp_clicks_by_day", "--out", "x.csv", "--sandbox")
    assert code == 0, err
    assert "submitted and downloaded" in out
    assert Path("x.csv").stat().st_size > 0
    code, out, err = run_main(capsys, "export", "mp_clicks_by_day", "--start", str(START))
    assert code == 2
    assert_one_line_error(err, "both --start and --end")


def test_export_through_three_spellings_of_its_path_costs_calls_once(
    account: SandboxThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`--out x.csv` in folder A, `--out ../A/x.csv` from folder B, then the absolute path."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    runs = [("A", "x.csv"), ("B", "../A/x.csv"), ("B", str(tmp_path / "A" / "x.csv"))]
    actions = []
    for folder, spelling in runs:
        monkeypatch.chdir(tmp_path / folder)
        code, out, err = run_main(capsys, "export", "mp_clicks_by_day", *RANGE, "--out", spelling,
                                  "--json")  # fmt: skip
        assert code == 0, err
        (outcome,) = [e for e in json_lines(out) if e["event"] == "export"]
        actions.append((outcome["action"], sum(outcome["calls"].values())))
    assert actions[0][0] == "downloaded"
    assert actions[1:] == [("cached", 0), ("cached", 0)]
    assert account.stats()["calls"]["ReportExport"] == 1


def test_jobs_commands_against_an_account(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = completed_job(account)
    code, out, err = run_main(capsys, "jobs", "list", "--json")
    assert code == 0, err
    assert job_id in {job["id"] for job in json_lines(out)}
    code, out, _ = run_main(capsys, "jobs", "list", "--since", str(TODAY - timedelta(days=1)))
    assert code == 0
    assert job_id in out
    code, out, _ = run_main(capsys, "jobs", "show", job_id, "--json")
    assert code == 0
    assert json_lines(out)[0]["status"] == "COMPLETED"
    code, out, _ = run_main(capsys, "jobs", "show", job_id)
    assert code == 0
    assert "Status: COMPLETED" in out
    code, out, _ = run_main(capsys, "jobs", "download", job_id, "--out", "result.csv")
    assert code == 0
    assert Path("result.csv").read_text().startswith("Date,")
    assert "sha256" in out
    code, _, _ = run_main(capsys, "jobs", "download", job_id)
    assert code == 0
    assert Path(f"{job_id}.csv").exists()
    # A completed job two hours old on the server's clock (the replay guard's, whatever this
    # machine's says): the guard refuses a replay that no rule justifies...
    account.advance(2 * 3600)
    code, out, err = run_main(capsys, "jobs", "replay", job_id)
    assert code == 1
    assert_one_line_error(err, "not_justified")
    replays_before = account.stats()["replays"]
    assert account.stats()["calls"]["Replay"] == 0
    # ... and --force says which rule it overrode.
    code, out, err = run_main(capsys, "jobs", "replay", job_id, "--force")
    assert code == 0, err
    assert "--force was needed" in out
    assert "not_justified" in out
    assert account.stats()["replays"] == replays_before + 1
    code, out, err = run_main(capsys, "jobs", "show", "no-such-job")
    assert code == 1
    assert_one_line_error(err, "404")


def test_ledger_show_and_history(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "ledger", "show")
    assert code == 2  # no ledger yet: nothing is created by looking
    assert not Path("data").exists()
    code, _, _ = run_main(
        capsys, "backfill", "mp_clicks_by_day", "mp_performance_by_day", *RANGE,
        "--sandbox", "--ledger", "l.sqlite",
    )  # fmt: skip
    assert code == 0
    code, out, _ = run_main(capsys, "ledger", "show", "--ledger", "l.sqlite", "--json")
    assert code == 0
    entries = json_lines(out)
    assert len(entries) == 6
    assert {e["status"] for e in entries} == {"COMPLETED"}
    code, out, err = run_main(
        capsys, "ledger", "show", "--ledger", "l.sqlite", "--report", "mp_clicks_by_day"
    )
    assert code == 0
    assert "3 exports in l.sqlite" in err  # for people: out of the piped data
    assert "mp_performance_by_day" not in out
    # Piped: one tab-separated line per export, nothing cut (whole fingerprints, job ids, paths).
    lines = [line.split("\t") for line in out.splitlines()]
    by_fingerprint = {e["fingerprint"]: e for e in entries}
    assert len(lines) == 3
    for fields in lines:
        entry = by_fingerprint[fields[0]]
        assert fields[1:5] == ["mp_clicks_by_day", f"{entry['range_start']}..{entry['range_end']}",
                               entry["job_id"], "COMPLETED"]  # fmt: skip
        assert fields[6] == entry["file_path"]
        assert fields[7] == str(entry["file_size"])
    fingerprint = entries[0]["fingerprint"]
    code, out, _ = run_main(capsys, "ledger", "history", fingerprint[:10], "--ledger", "l.sqlite")
    assert code == 0
    for kind in ("intent", "submitted", "download"):
        assert kind in out
    code, out, _ = run_main(
        capsys, "ledger", "history", entries[0]["job_id"], "--ledger", "l.sqlite", "--json"
    )
    assert code == 0
    assert [e["event"] for e in json_lines(out)][:2] == ["intent", "submitted"]
    code, _, err = run_main(capsys, "ledger", "history", "zzzz", "--ledger", "l.sqlite")
    assert code == 1
    assert_one_line_error(err, "no export")


# -- read-only, locked and corrupt ledgers -------------------------------------------------------


def ledger_of(account: SandboxThread, capsys: pytest.CaptureFixture[str], ledger: str) -> list[Any]:
    """Two completed exports of the account recorded in `ledger` by the library (polling fast);
    returns the ledger's entries as `ledger show --json` gives them."""

    async def make() -> None:
        config = ClientConfig(
            account_sid=account.account_sid,
            auth_token=account.auth_token,
            account_type="Mediapartners",
            base_url=account.base_url,
            poll=PollPolicy(initial=0.02, maximum=0.05),
        )
        async with Ledger(ledger) as book, ReportExportClient(config) as client:
            for first in (START, START + timedelta(days=7)):
                request = ExportRequest(
                    report_id="mp_clicks_by_day", start=first, end=first + timedelta(days=6)
                )
                await fetch_export(client, book, request, Path(f"{first}.csv"))

    anyio.run(make)
    code, out, err = run_main(capsys, "ledger", "show", "--ledger", ledger, "--json")
    assert code == 0, err
    return json_lines(out)


async def open_and_close(path: Path) -> None:
    async with Ledger(path):
        pass


@pytest.mark.parametrize("target", ["file", "folder"])
def test_a_read_only_ledger_is_still_shown_and_never_called_corrupt(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    ledger = "ledgers/l.sqlite"
    entries = ledger_of(account, capsys, ledger)
    assert len(entries) == 2
    job_id = entries[0]["job_id"]
    # SQLite's read-only readers (`ledger show`) leave empty -wal and -shm files, through which
    # the ledger stays writable in a read-only folder; a writable open and close removes them.
    anyio.run(open_and_close, Path(ledger))
    assert sorted(p.name for p in Path("ledgers").iterdir()) == ["l.sqlite"]
    before = Path(ledger).read_bytes()
    exports_before = account.stats()["calls"]["ReportExport"]
    with read_only(Path(ledger) if target == "file" else Path("ledgers")):
        code, out, err = run_main(capsys, "ledger", "show", "--ledger", ledger, "--json")
        assert code == 0, err
        assert json_lines(out) == entries
        code, out, err = run_main(capsys, "ledger", "history", job_id, "--ledger", ledger)
        assert code == 0, err
        assert "submitted" in out
        code, out, err = run_main(capsys, "jobs", "list", "--ledger", ledger, "--json")
        assert code == 0, err
        listed = {job["id"]: job for job in json_lines(out)}
        assert listed[job_id]["ledger"]["fingerprint"] == entries[0]["fingerprint"]
        code, out, err = run_main(capsys, "jobs", "show", job_id, "--ledger", ledger, "--json")
        assert code == 0, err
        assert json_lines(out)[0]["ledger"]["job_id"] == job_id
        # A command that records jobs is refused at once, and told why.
        code, out, err = run_main(
            capsys, "backfill", "mp_clicks_by_day", *RANGE, "--ledger", ledger
        )
        assert code == 2, (out, err)
        assert_one_line_error(err, f"cannot write to {ledger!r}: read-only {target}", "ledger show")
        assert "corrupt" not in err
        assert "move" not in err
    assert account.stats()["calls"]["ReportExport"] == exports_before
    assert Path(ledger).read_bytes() == before


def test_a_ledger_another_process_writes_to_is_still_shown(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = ledger_of(account, capsys, "l.sqlite")
    with locked_by_another_process(Path("l.sqlite")):
        code, out, err = run_main(capsys, "ledger", "show", "--ledger", "l.sqlite", "--json")
        assert code == 0, err
        assert json_lines(out) == entries


@pytest.mark.parametrize("command", [["ledger", "show"], ["backfill", "mp_clicks_by_day", *RANGE]])
def test_a_corrupt_ledger_is_kept_and_the_flag_is_named(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    Path("l.sqlite").write_bytes(b"not a database\n" * 100)
    code, out, err = run_main(capsys, *command, "--ledger", "l.sqlite")
    assert code == 2, (out, err)
    assert_one_line_error(err, "'l.sqlite' is corrupt", "keep it", "(--ledger PATH)")
    assert "move" not in err
    assert account.stats()["total_calls"] == 0
    assert Path("l.sqlite").read_bytes() == b"not a database\n" * 100


def test_chmod_444_ledger_in_another_process(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain case, `chmod 444` on the ledger, in a process that file modes bind (as root:
    without the capabilities that pass them by)."""
    entries = ledger_of(account, capsys, "l.sqlite")
    Path("l.sqlite").chmod(0o444)
    show = subprocess.run(
        unprivileged([*MODULE, "ledger", "show", "--ledger", "l.sqlite", "--json"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0, show.stderr
    assert json_lines(show.stdout) == entries
    again = subprocess.run(
        unprivileged([*MODULE, "backfill", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2, again.stderr
    assert_one_line_error(again.stderr, "cannot write to 'l.sqlite': read-only file")
    assert "corrupt" not in again.stderr


def test_cli_runner_help_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("backfill", "demo", "export", "jobs", "ledger", "sandbox"):
        assert command in result.output
    result = runner.invoke(cli, ["backfill", "--help"])
    assert "--sandbox-daily-export-limit" not in result.output  # hidden: for tests
    assert "--auth-token-file" in result.output
    assert "--auth-token " not in result.output  # never a token on the command line
    result = runner.invoke(cli, ["backfill", "r", *RANGE, "--chunk", "2w"])
    assert result.exit_code == 2
    assert_one_line_error(result.output, "unknown chunk rule")
    result = runner.invoke(cli, ["backfill", "mp_clicks_by_day", *RANGE, "--sandbox"])
    assert result.exit_code == 0, result.output
    assert "manifest: reportexport-out/manifest.json" in result.output


def test_sandbox_serve_reuses_the_sandbox_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "sandbox", "serve", "--time-scale", "-1")
    assert code == 2
    assert_one_line_error(err, "reportexport sandbox serve: error", "--time-scale")
    process = subprocess.Popen(
        [*MODULE, "sandbox", "serve", "--port", "0", "--account-sid", "IRserve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["account_sid"] == "IRserve"
        assert line["base_url"].startswith("http://127.0.0.1:")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0


# -- as a subprocess ----------------------------------------------------------------------------


def command() -> list[str]:
    """The console script when it is installed, else the module."""
    script = shutil.which("reportexport", path=str(Path(sys.executable).parent))
    return [script] if script else MODULE


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["backfill", "mp_clicks_by_day", *RANGE, "--sandbox", "--json"], 0),
        (
            [
                "backfill", "mp_clicks_by_day", "mp_legacy_invoice", *RANGE, "--sandbox",
                "--json", "--no-check-reports",
            ],
            1,
        ),
        (["backfill", "mp_clicks_by_day", *RANGE, "--json"], 2),
        (["backfill", "mp_clicks_by_day", *RANGE, "--chunk", "x", "--sandbox"], 2),
        (
            [
                "backfill", "mp_clicks_by_day", *RANGE, "--json",
                "--sandbox", "--sandbox-daily-export-limit", "2",
            ],
            3,
        ),
    ],
)  # fmt: skip
def test_subprocess_exit_codes(tmp_path: Path, args: list[str], code: int) -> None:
    done = subprocess.run(
        [*command(), *args], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    if code == 2:
        assert_one_line_error(done.stderr)
        # With --json, the usage error is also the stream's one object (a script reads it).
        expected = [{"event": "error", "message": ANY, "exit_code": 2}] if "--json" in args else []
        assert json_lines(done.stdout) == expected
    if "--json" in args and code != 2:
        summary = json_lines(done.stdout)[-1]
        assert summary["event"] == "summary"
        assert set(summary["counts"]) >= {"done", "failed", "pending"}


def test_subprocess_export_and_ledger(tmp_path: Path) -> None:
    done = subprocess.run(
        [*MODULE, "export", "mp_clicks_by_day", *RANGE, "--sandbox", "--out", "one.csv"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert Path("one.csv").exists()
    done = subprocess.run(
        [
            *MODULE,
            "ledger",
            "show",
            "--ledger",
            "data/reportexport/sandbox-ledger.sqlite",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = json_lines(done.stdout)
    assert entry["file_path"] == str(Path("one.csv").resolve())  # canonical: absolute


def sandbox_ledger() -> str:
    return os.path.join(os.environ["XDG_DATA_HOME"], "reportexport", "sandbox-ledger.sqlite")


def read_pty(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run `argv` with its stdout on a pseudo-terminal; return its exit code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        argv,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=clean_env(COLUMNS="120", TERM="xterm-256color"),
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = datetime.now() + timedelta(seconds=timeout)
    while datetime.now() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_live_progress_on_a_terminal(tmp_path: Path) -> None:
    code, out = read_pty([*MODULE, "backfill", "mp_clicks_by_day", *RANGE, "--sandbox"])
    assert code == 0
    assert "━" in out  # the bars
    assert "done 3" in out
    assert "ReportExport quota left today" in out
    assert "API calls" in out
    assert "manifest: reportexport-out/manifest.json" in out


# -- the README's first command -----------------------------------------------------------------


def readme_main_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- main-command -->", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return block.strip()


def test_readme_first_command_runs_the_demo(tmp_path: Path) -> None:
    """The README's first command is `... && .venv/bin/reportexport demo`; this runs that last
    step with the installed package (the fresh-venv part is the install)."""
    assert readme_main_command().endswith(".venv/bin/reportexport demo")
    started = datetime.now()
    done = subprocess.run(
        [*command(), "demo"], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (datetime.now() - started).total_seconds() < 60
    out = done.stdout
    assert "1. reportexport backfill mp_action_listing_fast mp_performance_by_day" in out
    assert "2. the same command again" in out
    assert "The second run cost 0 API calls (the sandbox counted 0)" in out
    assert out.count("manifest: reportexport-demo/out/manifest.json") == 2
    assert Path("reportexport-demo/out/mp_action_listing_fast.csv").exists()
    # Running the demo again works too (a new sandbox, a new account: the ledger keeps both).
    again = subprocess.run(
        [*MODULE, "demo"], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert again.returncode == 0, again.stderr


def test_postback_listen_starts_a_receiver_the_sandbox_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(
        capsys, "backfill", "mp_clicks_by_day", *RANGE,
        "--sandbox", "--postback-listen", "127.0.0.1:0", "--json",
    )  # fmt: skip
    assert code == 0, err
    events = json_lines(out)
    (postbacks,) = [e for e in events if e["event"] == "postbacks"]
    assert re.match(r"http://127\.0\.0\.1:\d+/postback/[\w-]{16,}$", postbacks["url"])
    assert events[-1]["counts"]["done"] == 3


def test_postback_token_and_field_names_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A token given once keeps the URL stable; the sandbox's postbacks reach the receiver at
    that URL and wake the downloads (no listing call needed for jobs that finish)."""
    code, out, err = run_main(
        capsys, "backfill", "mp_clicks_by_day", *RANGE, "--sandbox", "--json",
        "--postback-listen", "127.0.0.1:0", "--postback-token", "stable-token-for-tests",
        "--postback-fields", "JobId,Status",
    )  # fmt: skip
    assert code == 0, err
    events = json_lines(out)
    (postbacks,) = [e for e in events if e["event"] == "postbacks"]
    assert postbacks["url"].endswith("/postback/stable-token-for-tests")
    summary = events[-1]
    assert summary["counts"]["done"] == 3
    assert summary["calls"]["Download"] == 3
    assert summary["calls"].get("ListJobs", 0) + summary["calls"].get("GetJob", 0) <= 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--postback-fields", "JobId"], "JOBID,STATUS"),
        (["--postback-fields", "a,b,c"], "JOBID,STATUS"),
        (["--postback-token", "t"], "need --postback-listen"),
    ],
)
def test_postback_options_are_checked(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, _, err = run_main(capsys, "backfill", "mp_clicks_by_day", *RANGE, "--sandbox", *args)
    assert code == 2
    assert_one_line_error(err, needle)


def test_a_report_given_twice_costs_one_submit_per_chunk(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # The account's postbacks wake the downloads at once (no 10-second tracker tick).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account.configure(postback_url=f"http://127.0.0.1:{port}/postback/duplicates-test-token")
    code, out, err = run_main(
        capsys, "backfill", "mp_clicks_by_day", "mp_performance_by_day", "mp_clicks_by_day",
        *RANGE, "--json", "--postback-listen", f"127.0.0.1:{port}",
        "--postback-token", "duplicates-test-token",
    )  # fmt: skip
    assert code == 0, err
    events = json_lines(out)
    stats = account.stats()
    assert stats["calls"]["ReportExport"] == 2 * 3  # 3 weekly chunks of each report, once each
    assert stats["calls"]["Download"] == 2 * 3
    (note,) = [e for e in events if e["event"] == "duplicate"]
    assert note["report"] == "mp_clicks_by_day"
    assert "given more than once: pulled once" in note["message"]
    (plan,) = [e["plan"] for e in events if e["event"] == "plan"]
    assert plan["cost"]["chunks"] == plan["cost"]["submits"] == 2 * 3
    assert [c["report"] for c in plan["chunks"]] == ["mp_clicks_by_day"] * 3 + [
        "mp_performance_by_day"
    ] * 3
    assert events[-1]["counts"] == {"done": 6, "failed": 0, "pending": 0, "deferred": 0, "stuck": 0}
    code, out, err = run_main(capsys, "backfill", "mp_clicks_by_day", "mp_clicks_by_day", *RANGE)
    assert code == 0, err
    assert "note: export 'mp_clicks_by_day' is given more than once: pulled once" in out
    assert account.stats()["calls"]["ReportExport"] == 2 * 3  # done already: nothing more


# -- sync: its errors in the words of where the dataset was given, its postbacks ----------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--first-day", "2999-01-01"], "--first-day: 2999-01-01 is in the future"),
        (["--first-day", "2025-13-01"], "Invalid value for '--first-day': not a date"),
        (["--refresh-hour", "25"], "--refresh-hour: must be an hour from 0 to 23, got 25"),
        (["--settle-days", "-1"], "--settle-days: the settle window must be 0 days or more"),
        (["--chunk", "auto"], "--chunk: 'auto' changes its chunks"),
        (["--param", "A B=1"], "--param: filter name 'A B' must not contain whitespace"),
        (["--out", "blocker/out"], "--out: 'blocker/out' cannot be written"),
        (["--postback-token", "t"], "--postback-token and --postback-public-url need"),
        (["--postback-listen", "127.0.0.1:0", "--postback-token", "t"], "--postback-token: "),
        (["--report", "mp clicks"], "REPORT: report_id 'mp clicks' must not contain whitespace"),
    ],
)
def test_sync_errors_of_a_command_line_dataset_name_the_flag(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    """One line naming `reportexport sync` and the flag (never the file's key or the library's
    name), exit 2, no call. A report id that cannot be one is named as REPORT."""
    Path("blocker").write_text("a file where a folder should be")
    report = args[1] if args[0] == "--report" else "mp_clicks_by_day"
    code, out, err = run_main(capsys, "sync", report, *(args if report != args[-1] else []))
    assert code == 2, (out, err)
    assert_one_line_error(err, f"reportexport sync: error: {needle}")
    for name in ("first_day", "refresh_hour", "settle_days", "filters", "out_dir", "dataset "):
        assert name not in err
    assert account.stats()["total_calls"] == 0


@pytest.mark.parametrize("command", ["sync", "backfill"])
def test_a_weak_postback_token_from_the_environment_is_named_there(
    account: SandboxThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """The token came from IMPACT_POSTBACK_TOKEN, not from --postback-token: the error says so,
    before any call."""
    monkeypatch.setenv("IMPACT_POSTBACK_TOKEN", "short")
    dates = ["--first-day", "2026-06-01"] if command == "sync" else [*RANGE]
    code, out, err = run_main(
        capsys, command, "mp_clicks_by_day", *dates, "--postback-listen", "127.0.0.1:0"
    )
    assert code == 2, (out, err)
    assert_one_line_error(
        err, f"reportexport {command}: error: IMPACT_POSTBACK_TOKEN: use at least 16 letters"
    )
    assert "short" not in err  # a secret, even a weak one
    assert account.stats()["total_calls"] == 0


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ("first_day = 2999-01-01", "dataset 'a': first_day: 2999-01-01 is in the future"),
        ('first_day = "2025-13-01"', "dataset 'a': first_day must be a date"),
        ("refresh_hour = 25", "dataset 'a': refresh_hour: must be an hour from 0 to 23"),
        ("settle_days = -1", "dataset 'a': settle_days: the settle window must be 0 days"),
        ('chunk = "auto"', "dataset 'a': chunk: 'auto' changes its chunks"),
        ("refresh_houre = 3", "dataset 'a': unknown key 'refresh_houre' (did you mean"),
        ('format = "pdf"', "dataset 'a': format: "),
        ('filters = { "A B" = "1" }', "dataset 'a': filters: filter name 'A B'"),
        ('out = "blocker/out"', "dataset 'a': out: 'blocker/out' cannot be written"),
        ('out = "x"\n[datasets.b]\nreports = ["r"]\nout = "x"', "datasets 'a' and 'b' share"),
    ],
)
def test_sync_errors_of_a_config_dataset_name_the_file_the_dataset_and_the_key(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], lines: str, needle: str
) -> None:
    Path("blocker").write_text("a file where a folder should be")
    Path("sets.toml").write_text(f'[datasets.a]\nreports = ["mp_clicks_by_day"]\n{lines}\n')
    code, out, err = run_main(capsys, "sync", "--config", "sets.toml")
    assert code == 2, (out, err)
    assert_one_line_error(err, f"reportexport sync: error: sets.toml: {needle}")
    assert not re.search(r"--(first-day|refresh-hour|settle-days|chunk|format|param|out)\b", err)
    assert "result_format" not in err
    assert "see --help" not in err  # the file is what to look at, not the options
    assert account.stats()["total_calls"] == 0


def test_sync_with_postbacks_tracks_its_jobs_without_polling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sandbox posts each job's completion to the receiver: no job is polled (the one
    listing call is sync's look at the server's day before it spends anything)."""
    first = TODAY - timedelta(days=5)
    code, out, err = run_main(
        capsys, "sync", "mp_clicks_by_day", "--first-day", str(first), "--sandbox", "--json",
        "--postback-listen", "127.0.0.1:0", "--postback-token", "stable-sync-token-for-tests",
    )  # fmt: skip
    assert code == 0, err
    events = json_lines(out)
    (postbacks,) = [e for e in events if e["event"] == "postbacks"]
    assert postbacks["url"].endswith("/postback/stable-sync-token-for-tests")
    summary = events[-1]
    assert summary["counts"]["new"] + summary["counts"]["history"] >= 4
    calls = summary["calls"]
    assert (
        calls["ReportExport"]
        == calls["Download"]
        == sum(summary["counts"][kind] for kind in ("new", "history"))
    )
    assert calls.get("GetJob", 0) == 0
    # As backfill's postback test, at most one listing call for the jobs besides the clock's.
    assert calls.get("ListJobs", 0) <= 2
