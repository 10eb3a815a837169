"""A reader that goes away (`reportexport ... | head -1`): every command stops as a Unix tool
does, through a real pipe. The command exits 0 with nothing on stderr; a run cut short leaves its
ledger and folder so that the next run finishes it without submitting anything twice.

Each test starts the real command on a pipe, reads what it needs, closes the read end and waits
for the command (a generous timeout is the failure: how long it took is printed, not asserted).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reportexport_async.cli import pipes
from reportexport_async.cli.output import make_console
from reportexport_async.cli.pipes import READER, echo
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .conftest import behind, sandbox_env
from .test_cli import (  # noqa: F401 - fixture used by name
    MODULE,
    RANGE,
    _isolated,
    json_lines,
)

#: Days of RANGE: a backfill with `--chunk 1d` runs this many chunks.
DAYS = 21


@pytest.fixture
def slow_account(
    impact_sandbox_factory: Callable[..., SandboxThread], monkeypatch: pytest.MonkeyPatch
) -> SandboxThread:
    """An external sandbox (credentials in the environment) whose jobs take 3 real seconds
    (300 sandbox seconds, 100 times faster than the wall clock): a reader that leaves after the
    first submits leaves jobs in flight."""
    sandbox = behind(impact_sandbox_factory, job_duration=(300, 300))
    for name, value in sandbox_env(sandbox).items():
        monkeypatch.setenv(name, value)
    return sandbox


def submits(sandbox: SandboxThread) -> int:
    return int(sandbox.stats()["calls"].get("ReportExport", 0))


def cut_short(
    *args: str,
    read_until: Callable[[str], bool] = lambda line: True,
    then: Callable[[], bool] = lambda: True,
) -> subprocess.CompletedProcess[str]:
    """`reportexport ARGS | head`: read lines until one satisfies `read_until` (none if the
    command prints nothing first, when `read_until` is None), wait for `then`, close the read
    end; the command's exit code and stderr (its stdout: the lines read)."""
    process = subprocess.Popen(
        [*MODULE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    read: list[str] = []
    while True:
        line = process.stdout.readline()
        assert line, f"the command ended before the line awaited: {read}"
        read.append(line)
        if read_until(line):
            break
    deadline = time.monotonic() + 60
    while not then():
        assert process.poll() is None, "the command ended before the reader left"
        assert time.monotonic() < deadline, "what the test waits for never happened"
        time.sleep(0.05)
    process.stdout.close()  # the reader goes away
    closed = time.monotonic()
    code = process.wait(timeout=30)
    print(f"{' '.join(args[:2])}: exited {time.monotonic() - closed:.2f} s after the reader left")
    return subprocess.CompletedProcess(args, code, "".join(read), process.stderr.read())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MODULE, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def ledger_exports(path: str = "l.sqlite") -> int:
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM exports WHERE job_id IS NOT NULL").fetchone()
    return int(count)


def submitted(line: str) -> bool:
    return json.loads(line).get("status") == "submitted"


BACKFILL = ["backfill", "mp_clicks_by_day", *RANGE, "--chunk", "1d", "--out", "out"]


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_backfill_piped_to_head_stops_cleanly_and_the_next_run_submits_nothing_twice(
    slow_account: SandboxThread, as_json: bool
) -> None:
    argv = [*BACKFILL, "--ledger", "l.sqlite", *(["--json"] if as_json else [])]
    cut = cut_short(
        *argv,
        read_until=submitted if as_json else lambda line: True,
        then=lambda: submits(slow_account) >= 1,
    )
    assert cut.returncode == 0
    assert cut.stderr == ""
    # Cut short: jobs in flight (a job takes 3 s), their ids in the ledger (all of them, when the
    # submits were quicker than the reader), a manifest of the run so far.
    assert 1 <= ledger_exports() <= DAYS
    assert submits(slow_account) == ledger_exports()
    assert (Path("out") / "manifest.json").exists()

    again = run(*argv)
    assert again.returncode == 0, again.stderr
    assert submits(slow_account) == DAYS  # each chunk once: the first run's jobs re-attached
    assert len(list((Path("out") / "mp_clicks_by_day").glob("*.csv"))) == DAYS


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_sync_piped_to_head_stops_cleanly_and_the_next_run_submits_nothing_twice(
    slow_account: SandboxThread, as_json: bool
) -> None:
    argv = ["sync", "mp_clicks_by_day", "--first-day", RANGE[1], "--out", "out"]
    argv += ["--ledger", "l.sqlite", *(["--json"] if as_json else [])]
    cut = cut_short(
        *argv,
        read_until=submitted if as_json else lambda line: True,
        then=lambda: submits(slow_account) >= 1,
    )
    assert cut.returncode == 0
    assert cut.stderr == ""
    first = submits(slow_account)
    assert first == ledger_exports()

    again = run(*argv, "--json")
    assert again.returncode == 0, again.stderr
    (summary,) = [e for e in json_lines(again.stdout) if e["event"] == "summary"]
    # Every chunk of the dataset has its one job: none was submitted twice. (On a loaded machine
    # the cut run may have submitted every chunk before its reader went away: then the second
    # submits nothing.)
    assert submits(slow_account) == ledger_exports() >= first
    assert summary["calls"].get("ReportExport", 0) == ledger_exports() - first


def test_export_piped_to_head_stops_while_it_waits_and_the_next_run_re_attaches(
    slow_account: SandboxThread,
) -> None:
    """An export prints nothing until its file is there: the pipe itself tells that its reader
    left, and the command stops without waiting for the job."""
    argv = ["export", "mp_clicks_by_day", *RANGE, "--ledger", "l.sqlite", "--out", "e.csv"]
    process = subprocess.Popen(
        [*MODULE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    assert process.stdout is not None
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while submits(slow_account) < 1:
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.05)
    process.stdout.close()
    closed = time.monotonic()
    assert process.wait(timeout=30) == 0
    print(f"export: exited {time.monotonic() - closed:.2f} s after the reader left")
    assert process.stderr.read() == b""
    assert not Path("e.csv").exists()  # the job was still running: no file, no half file

    again = run(*argv)
    assert again.returncode == 0, again.stderr
    assert "e.csv" in again.stdout
    assert submits(slow_account) == 1  # re-attached to the first run's job


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list", "--ledger", "l.sqlite"],
        ["jobs", "list", "--ledger", "l.sqlite", "--json"],
        ["ledger", "show", "--ledger", "l.sqlite"],
        ["ledger", "show", "--ledger", "l.sqlite", "--json"],
        ["reports"],
        ["reports", "--json"],
    ],
    ids=lambda argv: " ".join(a for a in argv if a not in ("--ledger", "l.sqlite")),
)
def test_listings_piped_to_head_exit_0_with_nothing_on_stderr(
    slow_account: SandboxThread, argv: list[str]
) -> None:
    slow_account.configure(job_duration=(1, 2))
    done = run(*BACKFILL, "--ledger", "l.sqlite")
    assert done.returncode == 0, done.stderr
    cut = cut_short(*argv)
    assert cut.returncode == 0
    # A listing small enough to fit in the pipe was printed whole before the reader left: its
    # count (on stderr, as on every pipe) is all there may be besides.
    assert re.fullmatch(r"(\d+ (jobs|exports|reports)\b[^\n]*\n)?", cut.stderr), cut.stderr
    assert cut.stdout.strip()


def test_demo_piped_to_head_stops_cleanly_and_runs_again() -> None:
    cut = cut_short("demo", "--out", "d")
    assert cut.returncode == 0
    assert cut.stderr == ""
    again = run("demo", "--out", "d")
    assert again.returncode == 0, again.stderr


def test_the_issue_s_command_piped_to_head_exits_instead_of_hanging(
    impact_sandbox_factory: Callable[..., SandboxThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backfill ... --chunk 1d | head -1` against a sandbox whose daily quota is 5: it used to
    stay alive for ever after the quota notice met the closed pipe (rich's `SystemExit` left
    the event loop from inside a task, and the interpreter waited on a worker thread no one
    would stop)."""
    sandbox = impact_sandbox_factory(time_scale=60, daily_export_limit=5)
    env = {**os.environ, **sandbox_env(sandbox)}
    command = " ".join([
        "set -o pipefail;", *MODULE, "backfill mp_clicks_by_day --start 2025-07-01",
        "--end 2025-07-10 --chunk 1d --ledger h5.sqlite --out h | head -1",
    ])  # fmt: skip
    shell = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = shell.communicate(timeout=60)
    finally:  # a command still hanging is stopped with its shell, not left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, err
    assert err == ""
    assert out.startswith("plan: 10 chunks")


def test_a_console_on_a_closed_pipe_stops_the_command_without_system_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rich's own reaction to a closed pipe is `SystemExit(1)`, raised wherever the print was
    (inside a task of the run); the command line's consoles hand it to `READER` instead."""

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    monkeypatch.setattr(pipes, "quiet_broken_pipe", lambda: None)  # the test's own fd 1
    READER.reset()
    try:
        make_console().print("a line nobody reads")
        assert READER.gone
        echo("nor this one")  # nothing more is tried, nothing raised
    finally:
        READER.reset()
