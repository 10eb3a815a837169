"""The README's command-line section shows each command's real output: this test runs every
command shown between `<!-- cli-output NAME -->` and `<!-- /cli-output -->` and compares what it
prints with the block (ports, ids, hashes, times and figures masked: they change from run to
run; words, columns and lines may not). To regenerate the blocks after a change of output:

    REPORTEXPORT_UPDATE_README=1 .venv/bin/python -m pytest -q tests/test_readme_cli.py
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .test_cli import END, MODULE, START, completed_job
from .test_cli_finish import on_a_terminal

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
UPDATE = os.environ.get("REPORTEXPORT_UPDATE_README") == "1"
BLOCK = re.compile(r"<!-- cli-output (\S+) -->\n```text\n(.*?)```\n<!-- /cli-output -->", re.S)
WIDTH = 120
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Example:
    name: str
    #: The words after `reportexport`, as the README shows them.
    words: str
    terminal: bool = False  # on a pseudo-terminal (tables drawn), else on a pipe
    head: int | None = None  # only the first lines (output whose length varies)


RANGE = f"--start {START} --end {END}"
EXAMPLES = (
    Example("backfill", f"backfill mp_clicks_by_day {RANGE} --sandbox"),
    Example(
        "dry-run",
        "backfill mp_clicks_by_day --start 2025-01-01 --end 2025-09-07 "
        "--chunk 1d --sandbox --dry-run",
    ),
    Example("export", f"export mp_clicks_by_day {RANGE} --out clicks.csv"),
    Example("verbose", f"export mp_action_listing_fast {RANGE} --out actions.csv -v", head=2),
    Example("reports", "reports", terminal=True),
    Example("jobs-list", "jobs list | cut -f1,2,5,6"),
    Example("jobs-show", "jobs show JOB8"),
    Example("ledger-show", "ledger show", terminal=True),
)


def run_example(example: Example, job_id: str) -> str:
    """The command's output as the README shows it: `$ command` and what it printed."""
    words = example.words.replace("JOB8", job_id[:8])
    shown = f"$ reportexport {words}\n"
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    if example.terminal:
        code, out = on_a_terminal([*MODULE, *words.split()], columns=WIDTH)
        out = ANSI.sub("", out).replace("\r\n", "\n")
    else:
        command, _, pipe = words.partition(" | ")
        argv = " ".join([*MODULE, command]) + (f" | {pipe}" if pipe else "")
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{argv} 2>&1"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        code, out = done.returncode, done.stdout
    assert code in (0, 3), out
    # The user's folders as the README's reader has them.
    out = out.replace(os.environ["XDG_DATA_HOME"], "~/.local/share")
    lines = out.rstrip("\n").split("\n")
    if example.head is not None:
        lines = [*lines[: example.head], "..."]
    return shown + "\n".join(line.rstrip() for line in lines) + "\n"


MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Which endpoints a run calls besides its submits and downloads depends on timing.
    (re.compile(r"^API calls: .*$", re.M), "API calls: ..."),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UUID"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "ID8"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "HEX"),
    (re.compile(r"\bIR[A-Za-z0-9]{20,}\b"), "SID"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
    (re.compile(r"[━─═]+"), "-"),
    (re.compile(r"[ \t]+"), " "),
)


def masked(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.slow
def test_the_readme_shows_each_commands_real_output(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    sandbox = impact_sandbox_factory(job_duration=(1, 2), rows_per_day=5, time_scale=100)
    monkeypatch.setenv("IMPACT_ACCOUNT_SID", sandbox.account_sid)
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", sandbox.auth_token)
    monkeypatch.setenv("IMPACT_ACCOUNT_TYPE", "Mediapartners")
    monkeypatch.setenv("IMPACT_BASE_URL", sandbox.base_url)
    text = README.read_text(encoding="utf-8")
    blocks = {match[1]: match[2] for match in BLOCK.finditer(text)}
    assert set(blocks) == {example.name for example in EXAMPLES}, "README blocks and EXAMPLES"
    job_id = ""
    fresh: dict[str, str] = {}
    for example in EXAMPLES:
        if example.name == "jobs-list":  # and a job the ledger does not know
            completed_job(sandbox, "mp_performance_by_day")
        fresh[example.name] = run_example(example, job_id)
        if example.name == "export":
            ledger = Path(os.environ["XDG_DATA_HOME"], "reportexport", "ledger.sqlite")
            with sqlite3.connect(ledger) as db:
                (job_id,) = db.execute("SELECT job_id FROM exports").fetchone()
        assert sandbox.auth_token not in fresh[example.name]
    if UPDATE:
        updated = BLOCK.sub(
            lambda m: (
                f"<!-- cli-output {m[1]} -->\n```text\n{fresh[m[1]]}```\n<!-- /cli-output -->"
            ),
            text,
        )
        README.write_text(updated, encoding="utf-8")
        return
    for name, output in fresh.items():
        assert masked(output) == masked(blocks[name]), (
            f"README block {name!r} no longer matches the command's output; regenerate it with "
            f"REPORTEXPORT_UPDATE_README=1 (see this test's docstring)\n--- now:\n{output}"
        )
