"""Figures and words the command line prints are true: what a run spent, a summary that pipes,
a listing's count, a job id read within its own account, one error line naming the flag typed,
and a notice said once per account. Each test runs the real command against sandboxes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from reportexport_async.cli import main
from reportexport_async.sandbox import SandboxAccount
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .conftest import behind, sandbox_env
from .test_cli import (  # noqa: F401 - fixtures used by name
    END,
    MODULE,
    RANGE,
    START,
    _isolated,
    account,
    assert_one_line_error,
    json_lines,
)

REPORT = "mp_clicks_by_day"


def here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command in this process, its stdout a pipe (captured)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MODULE, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def test_sync_says_what_it_spent_not_what_it_planned(
    impact_sandbox_factory: Callable[..., SandboxThread], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten days to fetch and a quota of three: the plan wants ten submits, the run spends
    three, and "spent:" says three."""
    sandbox = behind(impact_sandbox_factory, job_duration=(1, 2), daily_export_limit=3)
    env = sandbox_env(sandbox)
    first_day = str(END - timedelta(days=9))
    argv = ["sync", REPORT, "--first-day", first_day, "--out", "d", "--ledger", "l.sqlite"]
    done = cli(env, *argv)
    assert done.returncode == 3, done.stderr  # the rest waits for the quota
    (spent,) = [line for line in done.stdout.splitlines() if line.startswith("spent:")]
    # Three accepted and the one the spent quota refused: the calls the server counted.
    submits = int(sandbox.stats()["calls"]["ReportExport"])
    assert submits == 4
    assert spent == (
        f"spent: {submits} ReportExport calls, 0 Replay calls (ReportExport quota today: 0 left)"
    )
    assert "submits of history" not in done.stdout  # the plan's words are a dry run's only


def test_jobs_list_prints_its_count_on_stderr(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = here(capsys, "export", REPORT, *RANGE, "--out", "e.csv")
    assert code == 0, err
    code, out, err = here(capsys, "jobs", "list")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1  # the rows only: the pipe gets nothing else
    assert err.strip() == "1 jobs"


def test_ledger_history_prints_its_count_on_stderr(
    account: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listing of one export's events: the rows on the pipe, their count on stderr."""
    code, out, err = here(capsys, "export", REPORT, *RANGE, "--out", "e.csv", "--json")
    assert code == 0, err
    job_id = json_lines(out)[-1]["job_id"]
    code, out, err = here(capsys, "ledger", "history", job_id)
    assert code == 0, err
    rows = out.strip().splitlines()[1:]  # under the export's own line
    assert [row.split("\t")[1] for row in rows][:2] == ["intent", "submitted"]
    assert err.strip() == f"{len(rows)} events"


def test_job_ids_are_looked_up_within_the_current_account(
    impact_sandbox_factory: Callable[..., SandboxThread],
) -> None:
    """Two sandboxes of one seed give their first jobs the same id; one ledger holds both.
    `jobs show|download|replay ID` with one account's credentials find that account's entry."""
    first, second = (behind(impact_sandbox_factory, job_duration=(1, 2)) for _ in range(2))
    env_a = sandbox_env(first)
    env_b = sandbox_env(second)
    ids = []
    for env, (start, end), out in (
        (env_a, (START, START), "a.csv"),
        (env_b, (END, END), "b.csv"),
    ):
        done = cli(env, "export", REPORT, "--start", str(start), "--end", str(end),
                   "--ledger", "l.sqlite", "--out", out, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        ids.append(json_lines(done.stdout)[-1]["job_id"])
    assert ids[0] == ids[1]  # the premise: the same id in two accounts

    shown = cli(env_a, "jobs", "show", ids[0], "--ledger", "l.sqlite", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["ledger"]["range_start"] == str(START)

    fetched = cli(env_a, "jobs", "download", ids[0][:8], "--ledger", "l.sqlite", "--out", "x.csv")
    assert fetched.returncode == 0, fetched.stderr
    assert Path("x.csv").read_bytes() == Path("a.csv").read_bytes()

    # The replay guard judges the job by its own account's record (submitted moments ago).
    replayed = cli(env_b, "jobs", "replay", ids[0], "--ledger", "l.sqlite")
    assert replayed.returncode != 0
    assert_one_line_error(replayed.stderr)
    assert "more than one" not in replayed.stderr


def test_a_refused_token_is_one_error_line(
    account: SandboxThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", "not-the-token-at-all")
    code, out, err = here(capsys, "backfill", REPORT, *RANGE, "--out", "o")
    assert code == 2
    assert_one_line_error(err, "the server refused the credentials")
    assert "stopped" not in out  # said once, on stderr


def test_accounts_say_the_spent_quota_once_each_and_pipe_a_tab_separated_summary(
    impact_sandbox_factory: Callable[..., SandboxThread], capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = (
        SandboxAccount(account_sid="IRshop00", auth_token="token-shop-00"),
        SandboxAccount(account_sid="IRshop01", auth_token="token-shop-01"),
    )
    sandbox = behind(impact_sandbox_factory, job_duration=(1, 2), accounts=accounts)
    sandbox.use_quota("IRshop01")
    lines = ["[defaults]", 'account_type = "Mediapartners"', f'base_url = "{sandbox.base_url}"']
    for n, item in enumerate(accounts):
        Path(f"shop-{n:02d}.token").write_text(item.auth_token)
        lines += ["", "[[account]]", f'name = "shop-{n:02d}"', f'sid = "{item.account_sid}"',
                  f'token_file = "shop-{n:02d}.token"']  # fmt: skip
    Path("accounts.toml").write_text("\n".join(lines) + "\n")
    argv = ["backfill", REPORT, *RANGE, "--chunk", "1d", "--concurrency", "4",
            "--accounts", "accounts.toml", "--out", "out", "--ledger", "l.sqlite"]  # fmt: skip
    for _ in range(2):  # the first run, and a rerun that meets the spent quota again
        code, out, err = here(capsys, *argv)
        assert code == 3, (out, err)
        # Said once as the quota is met, once as the account ends: never once per submitter.
        notices = [line for line in out.splitlines() if line.startswith("shop-01: quota: ")]
        assert len(notices) == 2, out
        assert "the daily ReportExport quota is spent" in notices[0]
        assert "21 chunks wait for the daily ReportExport quota" in notices[1]
        rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
        assert rows[0][:3] == ["account", "result", "chunks"]
        assert [row[:2] for row in rows[1:]] == [["shop-00", "complete"], ["shop-01", "quota"]]
        assert not any(ch in out for ch in "┃│━")  # no box on a pipe
