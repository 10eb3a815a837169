"""`reportexport sync --config datasets.toml` run once a day, each run its own process, against a
sandbox in another process on its own clock: the days are the server's, whatever this machine's
clock says (the sandbox starts in 2025; this machine's clock is wherever it is).

- moved a day with `POST /_sandbox/advance` before each run: day 1 submits every chunk once, a
  second run that day spends no quota and at most one call, each later day costs one submit per
  report and at most one replay per chunk still settling, and after the window the merged files'
  settled rows are those of one whole-range export;
- a sandbox running 60 times faster, never moved: its midnight is a new day for every rule;
- a daily quota of 5 with 8 chunks due, the account at UTC-05:00: the first run stops with exit 3
  and names the reset as the server's midnight there; after it, the next run finishes with no 429.

Costs are the sandbox's own counts (`/_sandbox/stats`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .test_reliability import sandbox_command

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
REPORTS = ("mp_action_listing_fast", "mp_clicks_by_day")
FIRST = date(2025, 3, 1)
SETTLE = 3
DAY = 86_400
#: Calls that spend: ReportExport (the daily quota) and Replay.
SPENDING = ("ReportExport", "ClickExport", "Replay")


@dataclass
class SandboxProcess:
    info: dict[str, Any]
    token_file: Path

    def _post(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.info["base_url"] + path, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.load(answer))

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.info["base_url"] + "/_sandbox/stats", timeout=10) as a:
            return dict(json.load(a))

    def calls(self) -> Counter[str]:
        return Counter({k: v for k, v in self.stats()["calls"].items() if v})

    def now(self) -> datetime:
        return datetime.fromisoformat(self.stats()["now"])

    def advance(self, seconds: float) -> None:
        self._post(f"/_sandbox/advance?seconds={seconds}")


@contextmanager
def sandbox_process(tmp_path: Path, *flags: str) -> Iterator[SandboxProcess]:
    with sandbox_command(
        tmp_path, "--rows-per-day", "24", "--settle-days", str(SETTLE), "--job-duration", "0-2",
        "--seed", "23", *flags,
    ) as info:  # fmt: skip
        token_file = tmp_path / "token"
        token_file.write_text(info["auth_token"])
        yield SandboxProcess(info, token_file)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    spent: Counter[str]  # the sandbox's calls during the run, by endpoint

    @property
    def summary(self) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]
        return next(line for line in lines if line.get("event") == "summary")

    @property
    def datasets(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "dataset"]


def cli(sandbox: SandboxProcess, tmp_path: Path, *args: str) -> Run:
    """One `reportexport` command in its own process, its ledger in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPACT_")}
    env.update(
        IMPACT_ACCOUNT_SID=sandbox.info["account_sid"],
        IMPACT_BASE_URL=sandbox.info["base_url"],
        IMPACT_ACCOUNT_TYPE="Mediapartners",
        NO_COLOR="1",
    )
    before = sandbox.calls()
    done = subprocess.run(
        [PY, "-c", "import sys; from reportexport_async.cli import main; sys.exit(main())",
         *args, "--auth-token-file", str(sandbox.token_file),
         "--ledger", str(tmp_path / "ledger.sqlite")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, sandbox.calls() - before)


def write_config(tmp_path: Path, reports: tuple[str, ...], first_day: date) -> Path:
    config = tmp_path / "datasets.toml"
    names = ", ".join(f'"{r}"' for r in reports)
    config.write_text(
        "[datasets.daily]\n"
        f"reports = [{names}]\n"
        f"first_day = {first_day.isoformat()}\n"
        'chunk = "1d"\n'
        'out = "data"\n'
        "merge = true\n"
        f"settle_days = {SETTLE}\n"
    )
    return config


def sync(sandbox: SandboxProcess, tmp_path: Path, config: Path) -> Run:
    return cli(sandbox, tmp_path, "sync", "--config", str(config), "--json")


def spends(run: Run) -> dict[str, int]:
    return {name: run.spent[name] for name in SPENDING if run.spent[name]}


def rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def settled_rows(
    merged: Path, whole: Path, last_settled: date
) -> tuple[Counter[str], Counter[str]]:
    """The rows of days up to `last_settled` in the merged file and in the whole export (the
    first column that holds a day names the row's day)."""
    header = merged.read_text().splitlines()[0].split(",")

    def day_of(line: str) -> date | None:
        for cell in line.split(","):
            try:
                return datetime.fromisoformat(cell.strip('"')).date()
            except ValueError:
                continue
        return None

    def settled(path: Path) -> Counter[str]:
        assert path.read_text().splitlines()[0].split(",") == header
        return Counter(
            line for line in rows(path) if (d := day_of(line)) is not None and d <= last_settled
        )

    return settled(merged), settled(whole)


def check_day_one(
    sandbox: SandboxProcess, tmp_path: Path, config: Path, chunks: int
) -> list[dict[str, int]]:
    """Day 1: every chunk submitted once; a second run that day spends nothing, at most one
    call. The calls of both runs."""
    first = sync(sandbox, tmp_path, config)
    assert first.code == 0, first.stderr
    assert spends(first) == {"ReportExport": chunks}, first.spent
    again = sync(sandbox, tmp_path, config)
    assert again.code == 0, again.stderr
    assert spends(again) == {}, again.spent
    assert again.spent.total() <= 1, again.spent
    return [dict(first.spent), dict(again.spent)]


def check_next_day(run: Run, settling: int) -> None:
    """A later day: one submit per report (the new day), at most one replay per chunk still
    settling, and the run complete."""
    assert run.code == 0, run.stderr
    assert run.spent["ReportExport"] == len(REPORTS), run.spent
    assert run.spent["Replay"] <= settling, run.spent
    assert run.spent["Replay"] >= 1, run.stdout  # the refreshes were not all deferred
    (dataset,) = run.datasets
    assert dataset["counts"]["new"] == len(REPORTS)
    assert dataset["counts"]["pending"] == dataset["counts"]["failed"] == 0


@pytest.mark.slow
def test_sync_once_a_day_in_separate_processes_against_a_sandbox_moved_a_day(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, REPORTS, FIRST)
    with sandbox_process(tmp_path, "--start-time", "2025-03-10T13:00:00+00:00") as sandbox:
        # Day 1 (2025-03-10): 2025-03-01 to 03-09, 9 chunks a report.
        figures = check_day_one(sandbox, tmp_path, config, 9 * len(REPORTS))
        for day in range(2, 6):  # 2025-03-11 to 03-14
            sandbox.advance(DAY)
            run = sync(sandbox, tmp_path, config)
            figures.append(dict(run.spent))
            check_next_day(run, settling=SETTLE * len(REPORTS))
            (dataset,) = run.datasets
            assert dataset["account_day"] == (date(2025, 3, 9) + timedelta(days=day)).isoformat()
            again = sync(sandbox, tmp_path, config)
            assert spends(again) == {}, again.spent
            assert again.spent.total() <= 1, again.spent
            figures.append(dict(again.spent))
        # The window has passed for the days up to 03-09 (settled by 03-13, fetched after):
        # the merged files hold exactly their rows, as one export of the whole range has them.
        last_day = date(2025, 3, 13)
        for report in REPORTS:
            whole = tmp_path / f"{report}.whole.csv"
            export = cli(
                sandbox, tmp_path, "export", report, "--start", FIRST.isoformat(),
                "--end", last_day.isoformat(), "--out", str(whole),
            )  # fmt: skip
            assert export.code == 0, export.stderr
            merged, expected = settled_rows(
                tmp_path / "data" / f"{report}.csv", whole, date(2025, 3, 9)
            )
            assert expected.total() > 0
            assert merged == expected, (expected - merged, merged - expected)
    print("calls of each run (day 1, day 1 again, then each day and its second run):", figures)


@pytest.mark.slow
def test_sync_against_a_sandbox_sixty_times_faster_crosses_its_midnight(tmp_path: Path) -> None:
    """No manual moves: the sandbox's own midnight, a real minute after it starts, is a new day
    for the quota, the replay guard and the settle window at once (about 90 real seconds)."""
    config = write_config(tmp_path, REPORTS, FIRST)
    scale = 60.0
    with sandbox_process(
        tmp_path, "--start-time", "2025-03-10T23:00:00+00:00", "--time-scale", str(scale)
    ) as sandbox:
        check_day_one(sandbox, tmp_path, config, 9 * len(REPORTS))
        assert sandbox.now().date() == date(2025, 3, 10), "day 1 took too long: raise its start"
        # Day 1's submits (its first minutes) are an hour old (the replay guard) by 00:10.
        wait = (datetime.fromisoformat("2025-03-11T00:10:00+00:00") - sandbox.now()).total_seconds()
        time.sleep(max(0.0, wait / scale))
        run = sync(sandbox, tmp_path, config)
        check_next_day(run, settling=SETTLE * len(REPORTS))
        (dataset,) = run.datasets
        assert dataset["account_day"] == "2025-03-11"
        assert dataset["deferred_until"] is None or "2025-03-11" in dataset["deferred_until"]
        stats = sandbox.stats()
        assert stats["rate_limited"] == 0
    print("day 2 at 60x:", dict(run.spent))


@pytest.mark.slow
def test_a_spent_quota_names_the_servers_midnight_and_the_next_day_finishes(
    tmp_path: Path,
) -> None:
    """Daily quota 5, 8 chunks due, the account at UTC-05:00."""
    report = REPORTS[0]
    config = write_config(tmp_path, (report,), date(2025, 3, 2))
    with sandbox_process(
        tmp_path, "--start-time", "2025-03-10T13:00:00+00:00", "--utc-offset-minutes", "-300",
        "--daily-export-limit", "5",
    ) as sandbox:  # fmt: skip
        # 08:00 of 2025-03-10 for the account: 03-02 to 03-09 due.
        first = cli(sandbox, tmp_path, "sync", "--config", str(config))
        assert first.code == 3, first.stdout + first.stderr
        assert first.spent["ReportExport"] - sandbox.stats()["rate_limited"] == 5
        text = " ".join((first.stdout + first.stderr).split())
        assert "resets at 2025-03-11 00:00:00 UTC-05:00 (account)" in text, text
        # After the account's midnight (05:00 UTC), an hour into its new day.
        sandbox.advance((datetime.fromisoformat("2025-03-11T06:00:00+00:00") - sandbox.now())
                        .total_seconds())  # fmt: skip
        limited = sandbox.stats()["rate_limited"]
        second = sync(sandbox, tmp_path, config)
        assert second.code == 0, second.stdout + second.stderr
        assert sandbox.stats()["rate_limited"] == limited, "no 429 after the reset"
        assert second.spent["ReportExport"] == 3 + 1  # the rest, and the new day (03-10)
        (dataset,) = second.datasets
        assert dataset["account_day"] == "2025-03-11"
        # The client counts against the real API's 100 (it learns the account's zone, not its
        # limit, from the 429): the new day's count is this run's 4, not yesterday's spent quota.
        assert second.summary["quota_left"] == 100 - 4
