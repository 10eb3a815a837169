"""Every example in the README and the documentation (`docs/`) runs as written.

- Every ```python block is a complete program, run with this Python; one that defines tests
  (`def test_`) is a complete pytest file, run with pytest.
- Every ```sh block that holds a `reportexport` command is run as a bash script
  (`set -euo pipefail`).
- A block that cannot run here says why in the comment before it, `<!-- not run: REASON -->`;
  a block after `<!-- file: NAME -->` is written as the file NAME for the page's other blocks.

They run page by page, in the order of the page, in a fresh folder, against a sandbox whose
account is in the environment as a user's would be (`IMPACT_ACCOUNT_SID`, `IMPACT_AUTH_TOKEN`,
`IMPACT_ACCOUNT_TYPE`, `IMPACT_BASE_URL`); a page that uses `accounts.toml` gets one naming two
more accounts of the same sandbox. The count of blocks run is printed at the end of the session
(`conftest.py`); a block that is neither run nor marked fails `test_every_block_runs_or_says_why`.

Also here: the documentation covers every command and every public name, and the command
outputs shown in `docs/reference/output.md` are the commands' real output. To regenerate them
after a change of output:

    REPORTEXPORT_UPDATE_DOCS=1 .venv/bin/python -m pytest -q -m slow tests/test_docs_examples.py
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import reportexport_async
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .test_cli import END, MODULE, START, completed_job
from .test_cli_finish import on_a_terminal

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOTE = re.compile(r"<!--\s*(.*?)\s*-->\Z", re.S)
#: A `reportexport` command: the word at the start of a command, or a path ending in it.
COMMAND = re.compile(r"(?:^|[\s;&|(/])reportexport(?=\s|$)", re.M)
#: Blocks the README marks for other checks: CI runs the test command itself, and
#: `tests/test_cli.py` and CI's fresh virtual environment run the main command.
ELSEWHERE = {
    "test-command": "the test suite itself, run by CI from the README",
    "main-command": "installs the package; run from a fresh venv by CI, `demo` by tests/test_cli",
}
POSTBACK_TOKEN = "keep-this-secret-and-stable-0123"  # docs/guides/postbacks.md's
POSTBACK_PORT = 8088


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    #: The comment just before the block: ("not run", reason), ("file", name), ...
    note: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """Why the block is not run here (None: it runs)."""
        if self.note is None:
            return None
        kind, text = self.note
        if kind == "not run":
            return text
        return ELSEWHERE.get(kind)

    @property
    def runnable(self) -> bool:
        """A block the rules say runs (or says why not)."""
        return self.language == "python" or (
            self.language == "sh" and COMMAND.search(self.code) is not None
        )


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        note = NOTE.search(before[-400:])
        parsed = None
        if note is not None:  # `<!-- not run: why -->`, `<!-- file: name -->`, `<!-- word -->`
            kind, _, value = note[1].partition(":")
            if ":" not in note[1]:
                kind, _, value = note[1].partition(" ")
            parsed = (kind.strip(), value.strip())
        found.append(
            Block(page, text.count("\n", 0, match.start()) + 1, match[1], match[2], parsed)
        )
    return found


def _note_kind(block: Block) -> str | None:
    return block.note[0] if block.note else None


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks_of(page)]


def to_run(page: Path) -> list[Block]:
    return [b for b in blocks_of(page) if b.runnable and b.not_run is None]


RUN_PAGES = [page for page in PAGES if to_run(page)]


# -- the rules of the blocks ----------------------------------------------------------------------


def test_every_block_runs_or_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = [b for b in all_blocks() if b.runnable]
    unexplained = [b.where for b in blocks if b.not_run == ""]
    assert unexplained == [], "a `not run` comment must say why"
    run = [b for b in blocks if b.not_run is None]
    held = [b for b in blocks if b.not_run is not None]
    for block in held:  # a reason that names what is missing, not a bare "skip"
        assert len(block.not_run or "") >= 10, block.where
    python = sum(1 for b in run if b.language == "python")
    with capsys.disabled():
        print(
            f"\ndocs examples: {len(run)} blocks run ({python} python, {len(run) - python} sh) "
            f"on {len(RUN_PAGES)} pages; {len(held)} marked not run, each with its reason"
        )
    assert len(run) >= 20
    assert python >= 10


def test_the_block_parser_reads_the_notes() -> None:
    page = ROOT / "docs" / "guides" / "postgres.md"
    notes = [b.not_run for b in blocks_of(page) if b.language == "sh"]
    assert "PostgreSQL server" in (notes[0] or "")
    readme = blocks_of(ROOT / "README.md")
    assert [b.not_run for b in readme if b.note and b.note[0] == "main-command"] == [
        ELSEWHERE["main-command"]
    ]
    files = [b.note for b in blocks_of(ROOT / "docs" / "guides" / "sync.md") if b.note]
    assert ("file", "datasets.toml") in files


# -- running them ---------------------------------------------------------------------------------


def _accounts_file(sandbox: SandboxThread, folder: Path, env: dict[str, str]) -> None:
    """`accounts.toml` as a user writes it, naming two more accounts of the sandbox."""
    lines = [
        "[defaults]",
        'account_type = "Mediapartners"',
        f'base_url = "{sandbox.base_url}"',
        "daily_report_export = 1000",
    ]
    for name in ("acme", "globex"):
        account = sandbox.add_account(daily_export_limit=1000)
        variable = f"{name.upper()}_TOKEN"
        env[variable] = account.auth_token
        lines += ["", "[[account]]", f'name = "{name}"', f'sid = "{account.account_sid}"']
        lines.append(f'token_env = "{variable}"')
    (folder / "accounts.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_block(block: Block, folder: Path, env: dict[str, str]) -> str:
    """Run one block in `folder`; its output (the test fails when it does)."""
    if block.language == "python":
        script = folder / f"example_{block.line}.py"
        if re.search(r"^def test_", block.code, re.M):
            script = folder / f"test_example_{block.line}.py"
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
        else:
            argv = [sys.executable, script.name]
        script.write_text(block.code, encoding="utf-8")
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    done = subprocess.run(
        argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{output[-4000:]}"
    return done.stdout


@pytest.fixture
def example_env() -> dict[str, str]:
    """The environment a user's shell would have, with this Python's scripts on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMPACT_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    return env


# Slow: a client on the real clock polls its jobs from 5 s on, so a page takes 5 to 50 s.
@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pages_examples_run_as_written(
    page: Path,
    impact_sandbox_factory: Callable[..., SandboxThread],
    example_env: dict[str, str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    blocks = blocks_of(page)
    text = page.read_text(encoding="utf-8")
    # The account's limits are the sandbox's: the pages' history needs more than a day's 100.
    sandbox = impact_sandbox_factory(
        job_duration=(1, 2), rows_per_day=5, time_scale=100, daily_export_limit=1000
    )
    env = {
        **example_env,
        "IMPACT_ACCOUNT_SID": sandbox.account_sid,
        "IMPACT_AUTH_TOKEN": sandbox.auth_token,
        "IMPACT_ACCOUNT_TYPE": "Mediapartners",
        "IMPACT_BASE_URL": sandbox.base_url,
        "IMPACT_DAILY_REPORT_EXPORT": "1000",
    }
    folder = tmp_path / "work"
    folder.mkdir()
    for block in blocks:
        if _note_kind(block) == "file" and block.note is not None:
            (folder / block.note[1]).write_text(block.code, encoding="utf-8")
    if "accounts.toml" in text and not (folder / "accounts.toml").exists():
        _accounts_file(sandbox, folder, env)
    if "--postback-listen" in text or "PostbackReceiver(" in text:
        # The sandbox plays impact.com: it calls the URL the page's receiver listens at.
        assert _port_free(POSTBACK_PORT), f"the page's receiver needs port {POSTBACK_PORT}"
        env["IMPACT_POSTBACK_TOKEN"] = POSTBACK_TOKEN
        sandbox.configure(
            postback_url=f"http://127.0.0.1:{POSTBACK_PORT}/postback/{POSTBACK_TOKEN}"
        )
    ran = 0
    for block in to_run(page):
        out = run_block(block, folder, env)
        ran += 1
        assert sandbox.auth_token not in out
        if page.name == "README.md" and block.language == "python":
            _check_readme_python(block, out)
    record_property("docs_blocks_run", ran)
    assert ran == len(to_run(page))


def _check_readme_python(block: Block, out: str) -> None:
    """The README's example: short, two backfills, the second costing no call."""
    assert len([line for line in block.code.splitlines() if line.strip()]) <= 12
    first, second = out.strip().splitlines()
    assert first.startswith("{'done': 14, 'failed': 0, 'pending': 0, 'deferred': 0, 'stuck': 0}")
    assert "'ReportExport': 14" in first
    assert second == "{'done': 14, 'failed': 0, 'pending': 0, 'deferred': 0, 'stuck': 0} {}"


# -- the documentation covers everything ----------------------------------------------------------


def _docs_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_the_docs_cover_every_command() -> None:
    """Each command (walking the click group) is named in the pages' prose or examples, and
    the command-line reference is generated from that same group."""
    from reportexport_async import cli

    group = cli.cli
    assert isinstance(group, click.Group)
    text = _docs_text()
    commands = list(_commands(group))
    assert len(commands) >= 15
    missing = [
        " ".join(words)
        for words in commands
        if not re.search(r"(`|reportexport )" + re.escape(" ".join(words)) + r"\b", text)
    ]
    assert missing == []
    reference = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert "::: mkdocs-click\n    :module: reportexport_async.cli\n    :command: cli\n" in reference


def test_the_docs_cover_every_public_name_once() -> None:
    """The API reference renders each name of `__all__` from its docstring, once, and its
    table lists each once."""
    api = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    rendered = re.findall(r"^::: reportexport_async\.(\w+)$", api, flags=re.M)
    assert sorted(rendered) == sorted(reportexport_async.__all__)
    listed = re.findall(r"^\| `(\w+)` \|", api, flags=re.M)
    assert sorted(listed) == sorted(reportexport_async.__all__)


def test_the_site_includes_the_shipped_pages_rather_than_copies() -> None:
    """The guide's rules, the API facts and the destinations have one source: the pages the
    wheel ships, included into the site; the same for the reliability and benchmark figures."""
    included = re.findall(r'^--8<-- "([^"]+)"$', _docs_text(), flags=re.M)
    shipped = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "reportexport_async" / "docs").glob("*.md")
        if path.name != "README.md"  # the folder's index, for readers of the package
    )
    assert sorted(set(included)) == sorted({*shipped, "RELIABILITY.md", "benchmarks/RESULTS.md"})


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "<!-- test-command -->" in readme
    assert "shared/api-spec" in readme  # why the spec tests skip on a plain clone
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


# -- the command outputs shown are real -----------------------------------------------------------

OUTPUT_PAGE = ROOT / "docs" / "reference" / "output.md"
UPDATE = os.environ.get("REPORTEXPORT_UPDATE_DOCS") == "1"
OUTPUT_BLOCK = re.compile(
    r"<!-- cli-output (\S+) -->\n```text\n(.*?)```\n<!-- /cli-output -->", re.S
)
WIDTH = 120
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Shown:
    name: str
    #: The words after `reportexport`, as the page shows them.
    words: str
    terminal: bool = False  # on a pseudo-terminal (tables drawn), else on a pipe
    head: int | None = None  # only the first lines (output whose length varies)


RANGE = f"--start {START} --end {END}"
SHOWN = (
    Shown("backfill", f"backfill mp_clicks_by_day {RANGE} --sandbox"),
    Shown(
        "dry-run",
        "backfill mp_clicks_by_day --start 2025-01-01 --end 2025-09-07 "
        "--chunk 1d --sandbox --dry-run",
    ),
    Shown("export", f"export mp_clicks_by_day {RANGE} --out clicks.csv"),
    Shown("verbose", f"export mp_action_listing_fast {RANGE} --out actions.csv -v", head=2),
    Shown("reports", "reports", terminal=True),
    Shown("jobs-list", "jobs list | cut -f1,2,5,6"),
    Shown("jobs-show", "jobs show JOB8"),
    Shown("ledger-show", "ledger show", terminal=True),
)


def run_shown(example: Shown, job_id: str) -> str:
    """The command's output as the page shows it: `$ command` and what it printed."""
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
    # The user's folders as the page's reader has them.
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
def test_the_docs_show_each_commands_real_output(
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
    text = OUTPUT_PAGE.read_text(encoding="utf-8")
    blocks = {match[1]: match[2] for match in OUTPUT_BLOCK.finditer(text)}
    assert set(blocks) == {example.name for example in SHOWN}, "the page's blocks and SHOWN"
    job_id = ""
    fresh: dict[str, str] = {}
    for example in SHOWN:
        if example.name == "jobs-list":  # and a job the ledger does not know
            completed_job(sandbox, "mp_performance_by_day")
        fresh[example.name] = run_shown(example, job_id)
        if example.name == "export":
            ledger = Path(os.environ["XDG_DATA_HOME"], "reportexport", "ledger.sqlite")
            with sqlite3.connect(ledger) as db:
                (job_id,) = db.execute("SELECT job_id FROM exports").fetchone()
        assert sandbox.auth_token not in fresh[example.name]
    if UPDATE:
        updated = OUTPUT_BLOCK.sub(
            lambda m: (
                f"<!-- cli-output {m[1]} -->\n```text\n{fresh[m[1]]}```\n<!-- /cli-output -->"
            ),
            text,
        )
        OUTPUT_PAGE.write_text(updated, encoding="utf-8")
        return
    for name, output in fresh.items():
        assert masked(output) == masked(blocks[name]), (
            f"block {name!r} of {OUTPUT_PAGE.name} no longer matches the command's output; "
            f"regenerate it with REPORTEXPORT_UPDATE_DOCS=1 (see this module's docstring)\n"
            f"--- now:\n{output}"
        )
