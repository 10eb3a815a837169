"""The command line as people meet it when its output is piped, read closely or interrupted:
each test runs the real command (a subprocess on a pipe, or on a pseudo-terminal) and asserts
what a user sees."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from reportexport_async.cli import main
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .test_cli import (  # noqa: F401 - fixtures used by name
    END,
    MODULE,
    RANGE,
    START,
    _isolated,
    account,
    clean_env,
    completed_job,
    json_lines,
    read_pty,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """The command on pipes (stdout and stderr), as a script or a cron job runs it."""
    # The environment as the test set it (an `account` puts its credentials there).
    return subprocess.run(
        [*MODULE, *args], capture_output=True, text=True, env={**os.environ, **env},
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command in this process (`main(argv)`, stdout and stderr captured: not a terminal,
    as on a pipe), with `env` set for the call: what `cli` does, without a process's start."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def on_a_terminal(argv: list[str], timeout: float = 60, columns: int = 150) -> tuple[int, str]:
    """`argv` with its stdout on a pseudo-terminal and the test's environment (`read_pty`
    leaves out the credentials); its exit code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        argv,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"},
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def sandbox_calls(account: SandboxThread, name: str) -> int:
    return int(account.stats()["calls"].get(name, 0))


def export_to_ledger(
    account: SandboxThread, ledger: str = "l.sqlite", run: Callable[..., Any] | None = None
) -> str:
    """One export through the command line into `ledger`; returns its job id."""
    done = (run or cli)(
        "export", "mp_clicks_by_day", *RANGE, "--ledger", ledger, "--json", "--out", "e.csv"
    )
    assert done.returncode == 0, done.stderr
    return str(json_lines(done.stdout)[-1]["job_id"])


# -- pipes: whole values, prefixes, a reader that goes away --------------------------------------


def test_piped_jobs_list_is_tab_separated_with_whole_ids_and_a_terminal_gets_a_table(
    account: SandboxThread,
    here: Callable[..., Any],
) -> None:
    job_id = export_to_ledger(account, run=here)
    # COLUMNS narrower than one id: a pipe still gets every value whole.
    done = here("jobs", "list", "--ledger", "l.sqlite", COLUMNS="40")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    fields = line.split("\t")
    assert fields[0] == job_id
    assert UUID.match(fields[0])
    assert fields[1] == "COMPLETED"
    assert fields[5:] == ["mp_clicks_by_day", f"{START}..{END}"]
    assert "…" not in done.stdout
    assert "│" not in done.stdout
    # On a terminal: a table with its header and box.
    code, out = on_a_terminal([*MODULE, "jobs", "list", "--ledger", "l.sqlite"])
    assert code == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert re.search(r"┃ job\s+┃ status", shown), shown
    assert f"│ {job_id} │ COMPLETED" in shown  # 150 columns: nothing needs cutting


def test_jobs_show_download_and_replay_take_a_unique_prefix_from_the_ledger(
    account: SandboxThread,
    here: Callable[..., Any],
) -> None:
    job_id = export_to_ledger(account, run=here)
    before = sandbox_calls(account, "GetJob")
    done = here("jobs", "show", job_id[:8], "--ledger", "l.sqlite", "--json")
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[0]["id"] == job_id
    assert sandbox_calls(account, "GetJob") == before + 1  # one call, no 404 spent
    done = here("jobs", "download", job_id[:8], "--ledger", "l.sqlite", "--out", "again.csv")
    assert done.returncode == 0, done.stderr
    assert Path("again.csv").read_bytes() == Path("e.csv").read_bytes()
    done = here("jobs", "replay", job_id[:8], "--ledger", "l.sqlite")
    assert done.returncode == 1  # refused by the guard, which names the job it looked at
    assert f"replay of job {job_id} refused" in done.stderr
    # Two jobs in the ledger share the empty prefix: a usage error, before any call.
    completed = completed_job(account, "mp_performance_by_day")
    with sqlite3.connect("l.sqlite") as db:
        db.execute("UPDATE exports SET job_id = ? WHERE job_id IS NULL", (completed,))
    calls = account.stats()["total_calls"]
    shared = os.path.commonprefix([job_id, completed])  # noqa: RUF071 - ids, not paths
    if shared:  # sandbox ids are random: make an ambiguous prefix only when they share one
        done = here("jobs", "show", shared, "--ledger", "l.sqlite")
        assert done.returncode == 2
        assert "give more of it" in done.stderr
        assert account.stats()["total_calls"] == calls


def test_a_reader_that_goes_away_is_not_a_failure(account: SandboxThread) -> None:
    """`reportexport ledger show | head -1`: the command's exit code is 0, and it prints no
    traceback."""
    export_to_ledger(account)
    with sqlite3.connect("l.sqlite") as db:  # enough rows to fill any pipe buffer
        (row,) = db.execute("SELECT * FROM exports").fetchall()
        columns = [c[1] for c in db.execute("PRAGMA table_info(exports)")]
        at = columns.index("fingerprint")
        for n in range(3000):
            copy = list(row)
            copy[at] = f"{n:064x}"
            db.execute(f"INSERT INTO exports VALUES ({','.join('?' * len(copy))})", copy)
    shell = f"set -o pipefail; {' '.join(MODULE)} ledger show --ledger l.sqlite | head -1"
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=dict(os.environ), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "Broken pipe" not in done.stderr
    assert "BrokenPipeError" not in done.stderr


# -- figures that are true ----------------------------------------------------------------------


def summary_rows(out: str, report: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith(f"{report}\t")]
    return line.split("\t")[7]


def test_rows_are_counted_after_a_postback_run() -> None:
    done = cli(
        "backfill", "mp_clicks_by_day", *RANGE, "--sandbox", "--postback-listen", "127.0.0.1:0"
    )
    assert done.returncode == 0, done.stderr
    files = sorted(Path("reportexport-out/mp_clicks_by_day").glob("*.csv"))
    lines = sum(len(path.read_text().splitlines()) - 1 for path in files)  # less each header
    assert lines == 3 * 7 * 50  # the sandbox's 50 rows a day
    assert summary_rows(done.stdout, "mp_clicks_by_day") == str(lines)
    manifest = json.loads(Path("reportexport-out/manifest.json").read_text())
    assert sum(chunk["rows"] for chunk in manifest["chunks"]) == lines


def test_rows_are_whole_after_a_re_download(
    account: SandboxThread, here: Callable[..., Any]
) -> None:
    args = ["backfill", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite"]
    first = here(*args)
    assert first.returncode == 0, first.stderr
    total = summary_rows(first.stdout, "mp_clicks_by_day")
    assert int(total) == 3 * 7 * 5
    next(Path("reportexport-out/mp_clicks_by_day").glob("*.csv")).unlink()
    again = here(*args)
    assert again.returncode == 0, again.stderr
    assert "Download 1" in again.stdout  # only the missing file, by job id
    assert summary_rows(again.stdout, "mp_clicks_by_day") == total


def last_bar(out: str) -> tuple[int, int]:
    found = re.findall(r"(\d+)/(\d+)", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out))
    done, total = found[-1]
    return int(done), int(total)


def test_the_bar_counts_pending_chunks_as_pending_and_the_quota_is_said_once() -> None:
    code, out = read_pty(
        [
            *MODULE, "backfill", "mp_clicks_by_day", *RANGE, "--chunk", "1d",
            "--sandbox", "--sandbox-daily-export-limit", "5", "--concurrency", "4",
        ]
    )  # fmt: skip
    assert code == 3
    assert last_bar(out) == (5, 21)  # not 21/21: 16 chunks wait for the quota
    assert "pending quota 16" in out
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert plain.count("quota: the daily ReportExport quota is spent") == 1
    assert re.search(r"reset at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", plain), plain
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", plain)  # no fractions of a second


def test_one_quota_line_on_a_pipe_too(here: Callable[..., Any]) -> None:
    done = here(
        "backfill", "mp_clicks_by_day", *RANGE, "--chunk", "1d",
        "--sandbox", "--sandbox-daily-export-limit", "5", "--concurrency", "4",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stdout.count("quota:") == 1
    assert "16 chunks wait for the daily ReportExport quota" in done.stdout
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", done.stdout)


# -- --json: plain data, and always an ending -------------------------------------------------


def test_json_events_are_plain_data(here: Callable[..., Any]) -> None:
    done = here("backfill", "mp_clicks_by_day", *RANGE, "--sandbox", "--json", "--dry-run")
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    plan = next(event for event in events if event["event"] == "plan")
    assert "PlanCost(" not in done.stdout
    assert plan["message"].startswith("3 chunks: 0 done already, 0 to re-attach, 3 to submit")
    assert events[-1]["event"] == "summary"


def test_a_check_reports_failure_ends_the_json_stream_with_an_error() -> None:
    done = cli("backfill", "mp_clicks_by_dya", *RANGE, "--sandbox", "--json")
    assert done.returncode == 2
    last = json_lines(done.stdout)[-1]
    assert last["event"] == "error"
    assert last["exit_code"] == 2
    assert "did you mean mp_clicks_by_day" in last["message"]
    assert "check_reports=False" not in done.stdout + done.stderr
    assert "pass --no-check-reports" in done.stderr
    assert "reportexport reports" in done.stderr  # how to list the account's reports


def interrupt_after_first_chunk(argv: list[str], **env: str) -> tuple[int, str, str]:
    """Start `argv` on pipes, press Ctrl-C once a chunk has moved, return (code, out, err)."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if '"status": "done"' in line or line.startswith("plan:"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=60)
    return process.returncode, "".join(lines) + out, err


LONG = ["--start", "2025-01-01", "--end", "2025-03-01", "--chunk", "1d", "--concurrency", "2"]


def test_ctrl_c_ends_the_json_stream_with_an_error_saying_how_to_resume() -> None:
    code, out, err = interrupt_after_first_chunk(
        [*MODULE, "backfill", "mp_clicks_by_day", *LONG, "--sandbox", "--json"]
    )
    assert code == 130, err
    last = json_lines(out)[-1]
    assert last["event"] == "error"
    assert last["exit_code"] == 130
    assert last["message"].startswith("interrupted: ")
    assert "run the same command again to resume" in last["message"]
    assert last["counts"]["done"] >= 1


def test_ctrl_c_says_what_was_recorded_and_how_to_resume(account: SandboxThread) -> None:
    args = ["backfill", "mp_clicks_by_day", *LONG, "--ledger", "l.sqlite"]
    code, _, err = interrupt_after_first_chunk([*MODULE, *args])
    assert code == 130
    (line,) = [line for line in err.splitlines() if line.strip()]
    match = re.match(
        r"reportexport backfill: interrupted: (\d+) of 60 chunks done(, (\d+) submitted jobs "
        r"recorded in the ledger l\.sqlite)?.*; run the same command again to resume",
        line,
    )
    assert match, line
    submitted = sandbox_calls(account, "ReportExport")
    # The next run resumes: nothing recorded is submitted again.
    again = cli(*args, "--json", timeout=240)
    assert again.returncode == 0, again.stderr
    assert sandbox_calls(account, "ReportExport") == 60
    assert json_lines(again.stdout)[-1]["calls"].get("ReportExport", 0) == 60 - submitted


# -- --json: every failure ends the stream with an `error` object -------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["export", "mp_clicks_by_day", "--start", str(START)], 2),  # found by the command
        (["export", "mp_clicks_by_day", *RANGE, "--bogus"], 2),  # found by click's parser
        (["export", "mp_clicks_by_day", *RANGE, "--auth-token-file", "wrong"], 1),  # 401
        (["jobs", "list", "--auth-token-file", "wrong"], 1),
        (["jobs", "show", "no-such-job"], 1),  # 404
        (["jobs", "download", "no-such-job", "--out", "x.csv"], 1),
        (["jobs", "replay", "no-such-job"], 1),
        (["ledger", "show", "--ledger", "missing.sqlite"], 2),
        (["ledger", "history", "nothing", "--ledger", "missing.sqlite"], 2),
        (["backfill", "mp_clicks_by_day", "--start", str(END), "--end", str(START)], 2),
        (["sync", "mp_clicks_by_day", "--first-day", "2999-01-01"], 2),  # found in the run
    ],
)
def test_every_json_failure_ends_with_an_error_object_and_the_same_exit_code(
    account: SandboxThread, here: Callable[..., Any], args: list[str], code: int
) -> None:
    """The exit code without --json; with it, stdout ends with one `error` object holding the
    stderr line's words (backfill and sync add their chunks' counts), and stderr keeps its line."""
    Path("wrong").write_text("not-the-token-0123456789\n")
    plain = here(*args)
    assert plain.returncode == code, plain.stderr
    assert "{" not in plain.stdout
    done = here(*args, "--json")
    assert done.returncode == code, done.stderr
    last = json_lines(done.stdout)[-1]
    message = last.pop("message")
    last.pop("counts", None)
    assert last == {"event": "error", "exit_code": code}
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    # The command as typed, whether click, the command or the run found the mistake.
    typed = " ".join(["reportexport", *[a for a in args[:2] if not a.startswith(("-", "mp_"))]])
    typed = typed if args[0] in ("jobs", "ledger") else f"reportexport {args[0]}"
    assert line.startswith(f"{typed}: error: "), line
    assert message in line, (message, line)
    assert account.auth_token not in done.stdout + done.stderr


def test_ctrl_c_during_export_json_ends_with_an_error_object(
    impact_sandbox_factory: Callable[..., SandboxThread],
) -> None:
    """Ctrl-C while an export waits for its job: exit 130, the stream's one object is the
    `error` saying how to resume, and stderr says it too."""
    sandbox = impact_sandbox_factory(job_duration=(3600, 3600))  # never done during the test
    env = {
        "IMPACT_ACCOUNT_SID": sandbox.account_sid, "IMPACT_AUTH_TOKEN": sandbox.auth_token,
        "IMPACT_ACCOUNT_TYPE": "Mediapartners", "IMPACT_BASE_URL": sandbox.base_url,
    }  # fmt: skip
    process = subprocess.Popen(
        [*MODULE, "export", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite", "--json", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert process.stderr is not None
    for line in process.stderr:  # -v: each call on stderr; the job is submitted, then waited on
        if "/Jobs/" in line:
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    (last,) = json_lines(out)
    # What was recorded, where, and how to resume, as a backfill's Ctrl-C says it.
    said = (
        "interrupted: the export's job is recorded in the ledger l.sqlite; reportexport-out/"
        f"mp_clicks_by_day/{START}_{END}.csv was not written; run the same command again to "
        "resume: it re-attaches to the job and submits nothing twice"
    )
    assert last == {"event": "error", "message": said, "exit_code": 130}
    assert err.strip().endswith(f"reportexport export: error: {said}")
    assert sandbox.stats()["calls"]["ReportExport"] == 1
    # And so it does: the next run takes the recorded job, with no second submit.
    sandbox.advance(3600)  # the job is done
    sandbox.wait_idle()
    again = subprocess.run(
        [*MODULE, "export", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite", "--json"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sandbox.stats()["calls"]["ReportExport"] == 1


# -- command-line language ----------------------------------------------------------------------


def test_messages_and_help_speak_command_line_language(here: Callable[..., Any]) -> None:
    done = here("export", "mp_clicks_by_day", *RANGE, IMPACT_ACCOUNT_SID="IRsomething")
    assert done.returncode == 2
    wanted = "the auth token: must not be empty (set IMPACT_AUTH_TOKEN or pass --auth-token-file)"
    assert wanted in done.stderr
    assert "=..." not in done.stderr
    done = here(
        "jobs", "list", "--base-url", "http://192.0.2.2",
        IMPACT_ACCOUNT_SID="IRx", IMPACT_AUTH_TOKEN="abcd", IMPACT_ACCOUNT_TYPE="Mediapartners",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("reportexport jobs list: error: --base-url: plain http://")
    assert "base_url" not in done.stderr
    done = here("jobs", "show")
    assert done.stderr.startswith("reportexport jobs show: error: Missing argument 'ID'")
    for command in (["jobs", "list"], ["jobs", "show"], ["ledger", "show"], ["ledger", "history"]):
        shown = here(*command, "--help")
        assert shown.returncode == 0
        assert "--sandbox" not in shown.stdout, command
    shown = here("backfill", "--help", COLUMNS="200")
    assert "safety net" in shown.stdout
    assert "instead of polling" not in shown.stdout


# -- --dry-run ----------------------------------------------------------------------------------


def test_dry_run_checks_the_out_folder_and_states_the_quota_days(here: Callable[..., Any]) -> None:
    Path("a-file").write_text("")
    done = here(
        "backfill", "mp_clicks_by_day", *RANGE, "--sandbox", "--dry-run", "--out", "a-file/x"
    )
    assert done.returncode == 2
    assert "--out: 'a-file' is a file" in done.stderr
    assert done.stdout == ""
    # 250 one-day chunks at 100 submits a day: three days of quota, said before any call.
    done = here(
        "backfill", "mp_clicks_by_day", "--start", "2025-01-01", "--end", "2025-09-07",
        "--chunk", "1d", "--sandbox", "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "250 to submit" in done.stdout
    assert "the submits need 3 days of ReportExport quota" in done.stdout
    assert "dry run: no API call was made" in done.stdout
    assert not Path("reportexport-out").exists()


# -- chunk alignment ----------------------------------------------------------------------------


def planned_chunks(here: Callable[..., Any], *args: str) -> list[str]:
    done = here("backfill", "mp_clicks_by_day", *args, "--sandbox", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    plan = next(e for e in json_lines(done.stdout) if e["event"] == "plan")
    return [chunk["chunk"] for chunk in plan["plan"]["chunks"]]


def test_chunks_start_at_start_unless_alignment_is_asked_for(here: Callable[..., Any]) -> None:
    quarter = ["--start", "2025-01-01", "--end", "2025-03-31", "--chunk", "30d"]
    assert planned_chunks(here, *quarter) == [
        "2025-01-01..2025-01-30",
        "2025-01-31..2025-03-01",
        "2025-03-02..2025-03-31",
    ]
    assert len(planned_chunks(here, *quarter, "--align-chunks")) == 4
    sunday = date(2025, 1, 5)
    weekly = planned_chunks(here, "--start", str(sunday), "--end", "2025-01-18", "--chunk", "7d")
    assert weekly == ["2025-01-05..2025-01-11", "2025-01-12..2025-01-18"]
    aligned = planned_chunks(
        here, "--start", str(sunday), "--end", "2025-01-18", "--chunk", "7d", "--align-chunks"
    )
    assert aligned[0] == "2025-01-05..2025-01-05"  # the 1-day chunk alignment costs
    done = here("backfill", "r", *RANGE, "--chunk", "month", "--align-chunks", "--sandbox")
    assert done.returncode == 2


# -- -v/--verbose -------------------------------------------------------------------------------


def test_verbose_shows_each_call_and_each_wait_and_never_the_token(
    account: SandboxThread,
) -> None:
    done = cli("export", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite", "-v")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert account.auth_token not in err + done.stdout
    calls = re.findall(r"^\d\d:\d\d:\d\d (GET|PUT|POST) (\S+) -> (\d{3}) \(\d+ ms", err, re.M)
    paths = [path for _, path, _ in calls]
    assert any(path.endswith("/ReportExport/mp_clicks_by_day") for path in paths), err
    assert any("/Jobs/" in path and path.endswith("/Download") for path in paths), err
    assert {status for _, _, status in calls} <= {"200", "202", "302"}
    assert re.search(r"job \S+ is (QUEUED|RUNNING): next look in [\d.]+ s", err), err
    quiet = cli("export", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite")
    assert quiet.stderr == ""


# -- reports ------------------------------------------------------------------------------------


def test_reports_lists_the_api_accessible_ids_with_one_call_then_from_the_cache(
    account: SandboxThread,
    here: Callable[..., Any],
) -> None:
    done = here("reports")
    assert done.returncode == 0, done.stderr
    ids = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert "mp_clicks_by_day" in ids
    assert all(line.split("\t")[3] == "yes" for line in done.stdout.splitlines())
    assert "(one call)" in done.stderr
    assert sandbox_calls(account, "Reports") == 1
    cached = here("reports")
    assert cached.stdout == done.stdout
    assert "(cached)" in cached.stderr
    assert sandbox_calls(account, "Reports") == 1
    here("reports", "--refresh")
    assert sandbox_calls(account, "Reports") == 2
    every = here("reports", "--all", "--json")
    assert len(json_lines(every.stdout)) >= len(ids)


# -- the default ledger -------------------------------------------------------------------------


def test_the_default_ledger_is_in_the_data_folder_and_an_old_one_is_found(
    account: SandboxThread,
    tmp_path: Path,
    here: Callable[..., Any],
) -> None:
    data = Path(os.environ["XDG_DATA_HOME"]) / "reportexport" / "ledger.sqlite"
    done = here("export", "mp_clicks_by_day", *RANGE, "--out", "one.csv")
    assert done.returncode == 0, done.stderr
    assert data.exists()
    assert not Path(".reportexport").exists()
    # From another folder (a cron job): the same ledger, so the export costs no call.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    calls = account.stats()["total_calls"]
    again = subprocess.run(
        [*MODULE, "export", "mp_clicks_by_day", *RANGE, "--out", str(tmp_path / "one.csv")],
        capture_output=True, text=True, env=dict(os.environ), cwd=elsewhere, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    # The same file through its absolute path: the intact file, no call at all.
    assert "from the intact file (no call)" in again.stdout
    assert sandbox_calls(account, "ReportExport") == 1
    assert account.stats()["total_calls"] == calls
    # An older ledger in the current folder is still used, with a notice.
    legacy = elsewhere / ".reportexport" / "ledger.sqlite"
    legacy.parent.mkdir()
    data.replace(legacy)
    shown = subprocess.run(
        [*MODULE, "ledger", "show", "--json"],
        capture_output=True, text=True, env=dict(os.environ), cwd=elsewhere, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert len(json_lines(shown.stdout)) == 1
    assert shown.stderr.startswith("reportexport: note: using the ledger .reportexport/ledger")
    assert str(data) in shown.stderr


def test_ctrl_c_on_a_terminal_stops_the_bars_and_says_how_to_resume() -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*MODULE, "backfill", "mp_clicks_by_day", *LONG, "--sandbox"],
        stdout=follower,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"},
    )
    os.close(follower)
    seen = b""
    while b"\xe2\x94\x81" not in seen:  # the first bar ("━")
        ready, _, _ = select.select([leader], [], [], 60)
        assert ready, seen
        seen += os.read(leader, 65536)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 130
    assert re.fullmatch(
        r"reportexport backfill: interrupted: \d+ of 60 chunks done.*; run the same command "
        r"again to resume.*",
        err.strip(),
    ), err
