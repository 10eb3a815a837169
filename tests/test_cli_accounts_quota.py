"""`reportexport backfill --accounts FILE` against a sandbox whose accounts may each submit 5
ReportExport calls a day, with more one-day chunks due for each of three accounts; the command
line and the sandbox each in their own process, the sandbox moved a day between runs.

No account spends more of its quota than the server gives it, and every figure the run prints is
the server's own count for that account (`/_sandbox/stats`, per account): day 1 stops each
account at 5 submits with exit 3; a second run that day costs no ReportExport call; the next
sandbox day submits the chunks left and exits 0 (with 8 chunks: a summary of "ReportExport 9",
3 accounts, 3 each). With the limit in the accounts file, the server never answers 429. Without
it the client counts against the real API's 100: the first submit past the server's 5 is
refused, with those already in flight beside it (at most one per submitter: 10 chunks leave more
than that to refuse), and the account is then known to be spent for the day, in the ledger's
counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from reportexport_async.jobs.orchestrator import BackfillOptions
from reportexport_async.ledger import Ledger

from .test_cli_accounts import free_port
from .test_reliability import sandbox_command

PY = sys.executable
REPORT = "mp_clicks_by_day"
LIMIT = 5
FIRST = date(2025, 2, 20)  # the first of the one-day chunks
DAY_ONE = date(2025, 3, 10)  # the sandbox starts at 13:00 UTC on it (the account's zone: UTC)
TOKEN = "quota-accounts-postback-token"
NAMES = {"a": "IRquotaA", "b": "IRquotaB", "c": "IRquotaC"}
#: Submits in flight at once (the command line's default `--concurrency`).
SUBMITTERS = BackfillOptions().submit_concurrency


class Server:
    """The sandbox process: its control API, and each account's figures."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.base_url = str(info["base_url"])

    def _open(self, path: str, method: str = "GET", body: bytes | None = None) -> Any:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def stats(self) -> dict[str, Any]:
        return dict(self._open("/_sandbox/stats"))

    def accounts(self) -> dict[str, dict[str, Any]]:
        """Each account's counts, by the accounts file's names."""
        found = self.stats()["accounts"]
        return {name: found[sid] for name, sid in NAMES.items()}

    def add_accounts(self, sids: list[str]) -> None:
        items = [{"account_sid": sid, "auth_token": f"token-{sid}"} for sid in sids]
        self._open("/_sandbox/accounts", "POST", json.dumps(items).encode())

    def advance(self, seconds: int) -> None:
        self._open(f"/_sandbox/advance?seconds={seconds}", "POST", b"")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, int]]:
    """The sandbox (quota 5 a day for every account, postbacks to a port the runs listen on),
    serving the three accounts; their tokens in files."""
    port = free_port()
    with sandbox_command(
        tmp_path, "--start-time", f"{DAY_ONE}T13:00:00+00:00", "--time-scale", "100",
        "--job-duration", "1-2", "--rows-per-day", "5", "--daily-export-limit", str(LIMIT),
        "--account-sid", NAMES["a"], "--auth-token-file", str(token_file(tmp_path, "a")),
        "--postback-url", f"http://127.0.0.1:{port}/postback/{TOKEN}",
    ) as info:  # fmt: skip
        server = Server(info)
        server.add_accounts([NAMES["b"], NAMES["c"]])
        for name in ("b", "c"):
            token_file(tmp_path, name)
        yield server, port


def token_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.token"
    path.write_text(f"token-{NAMES[name]}\n")
    return path


def accounts_file(folder: Path, server: Server, *, limit_in_file: bool) -> Path:
    lines = ["[defaults]", 'account_type = "Mediapartners"', f'base_url = "{server.base_url}"']
    if limit_in_file:
        lines.append(f"daily_report_export = {LIMIT}")
    for name, sid in NAMES.items():
        lines += ["", "[[account]]", f'name = "{name}"', f'sid = "{sid}"']
        lines.append(f'token_file = "{name}.token"')
    path = folder / "accounts.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def backfill(folder: Path, port: int, chunks: int, *args: str) -> subprocess.CompletedProcess[str]:
    last = FIRST + timedelta(days=chunks - 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPACT_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [PY, "-m", "reportexport_async.cli", "backfill", REPORT, "--start", str(FIRST),
         "--end", str(last), "--chunk", "1d", "--accounts", "accounts.toml", "--out", "out",
         "--ledger", "ledger.sqlite", "--postback-listen", f"127.0.0.1:{port}",
         "--postback-token", TOKEN, *args],
        capture_output=True, text=True, cwd=folder, env=env, timeout=120,
    )  # fmt: skip


def calls_of(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, Counter[str]]:
    """Each account's calls between two looks at the server, by endpoint (none left at 0)."""
    return {name: Counter(after[name]["calls"]) - Counter(before[name]["calls"]) for name in after}


def plain_run(
    server: Server, folder: Path, port: int, chunks: int, code: int
) -> tuple[dict[str, Counter[str]], dict[str, dict[str, str]], str]:
    """A run without `--json` that exits `code` and meets no 429, each account's row of its
    summary showing that code and the calls the server counted for the account: those calls,
    the rows, the output."""
    before = server.accounts()
    done = backfill(folder, port, chunks)
    after = server.accounts()
    assert done.returncode == code, done.stdout + done.stderr
    spent = calls_of(before, after)
    rows = plain_rows(done.stdout)
    for name in NAMES:
        assert after[name]["rate_limited"] == before[name]["rate_limited"], name
        assert rows[name]["exit"] == str(code)
        assert int(rows[name]["calls"]) == spent[name].total()
    return spent, rows, done.stdout


def plain_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The summary's rows on a pipe (tab-separated under a header), by account."""
    lines = [line.split("\t") for line in stdout.splitlines() if "\t" in line]
    header = lines[0]
    return {row[0]: dict(zip(header, row, strict=True)) for row in lines[1:]}


def ledger_counts(folder: Path) -> dict[tuple[str, date], tuple[int, bool]]:
    """The ledger's ReportExport counters: (account's SID, day) -> (used, spent)."""

    async def read() -> dict[tuple[str, date], tuple[int, bool]]:
        async with Ledger(folder / "ledger.sqlite") as ledger:
            counters = ledger.counters
            found = {}
            for account, day, name, used in await counters.quota_history():
                if name == "ReportExport":
                    spent = await counters.spent("ReportExport", day, account)
                    found[(account.rsplit("/", 1)[-1], day)] = (used, spent)
            return found

    return anyio.run(read)


@pytest.mark.parametrize(
    ("limit_in_file", "chunks"), [(True, 8), (False, 10)], ids=["limit-in-file", "limit-unknown"]
)
def test_no_account_spends_more_than_its_daily_quota_and_the_figures_are_the_servers(
    setup: tuple[Server, int], tmp_path: Path, limit_in_file: bool, chunks: int
) -> None:
    server, port = setup
    left = chunks - LIMIT
    accounts_file(tmp_path, server, limit_in_file=limit_in_file)

    # Day 1: 5 submits each, the other chunks pending until the server's midnight: exit 3.
    before = server.accounts()
    first = backfill(tmp_path, port, chunks, "--json")
    after = server.accounts()
    assert first.returncode == 3, first.stdout + first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines() if line.strip()]
    ends = {e["account"]: e for e in events if e["event"] == "account"}
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["exit_code"] == 3
    assert summary["not_complete"] == dict.fromkeys(NAMES, 3)
    spent = calls_of(before, after)
    for name, server_side in after.items():
        assert server_side["ReportExport"] == server_side["jobs_created"] == LIMIT  # never more
        refused = server_side["rate_limited"]
        if limit_in_file:
            assert refused == 0, server_side  # the client stops at its limit: no 429
        else:
            # The server's limit was not the client's: its first refusal tells it, and the
            # submits already in flight beside that one meet the same answer.
            assert 1 <= refused <= SUBMITTERS, server_side
        assert spent[name]["ReportExport"] == LIMIT + refused
        end = ends[name]
        assert end["exit_code"] == 3
        assert end["status"] == "quota"
        assert {k: v for k, v in end["counts"].items() if v} == {"done": LIMIT, "pending": left}
        assert end["calls"] == spent[name]  # the run's figures are the server's, call by call
    totals = sum(spent.values(), Counter())
    assert summary["calls"] == totals
    print("day 1, 429s by account:", {name: after[name]["rate_limited"] for name in after})
    assert summary["counts"]["done"] == 3 * LIMIT
    # The ledger counted what the server accepted (a refused call is refunded), and whether
    # the server said the quota is spent.
    assert ledger_counts(tmp_path) == {
        (sid, DAY_ONE): (LIMIT, not limit_in_file) for sid in NAMES.values()
    }

    # The same day again, plainly: nothing submitted, the same exit code.
    spent, rows, out = plain_run(server, tmp_path, port, chunks, 3)
    for name in NAMES:
        assert spent[name]["ReportExport"] == 0
        assert rows[name]["result"] == "quota"
        assert rows[name]["pending"] == str(left)
    assert "0 of 3 accounts complete" in out
    assert "quota (exit 3): a, b, c" in out

    # The next sandbox day: the chunks left of each account, no 429, exit 0; with 8 chunks,
    # "ReportExport 9" is the three accounts' 3 each.
    server.advance(86_400)
    spent, rows, out = plain_run(server, tmp_path, port, chunks, 0)
    today = server.accounts()
    for name in NAMES:
        assert today[name]["ReportExport"] == spent[name]["ReportExport"] == left
        assert rows[name]["done"] == str(chunks)
    totals = sum(spent.values(), Counter())
    assert totals["ReportExport"] == 3 * left
    shown = ", ".join(f"{endpoint} {n}" for endpoint, n in sorted(totals.items()))
    assert f"API calls: {totals.total()} ({shown})" in out
    assert "3 of 3 accounts complete" in out
    day_two = DAY_ONE + timedelta(days=1)
    assert ledger_counts(tmp_path) == {
        **{(sid, DAY_ONE): (LIMIT, not limit_in_file) for sid in NAMES.values()},
        **{(sid, day_two): (left, False) for sid in NAMES.values()},
    }
