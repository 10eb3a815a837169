"""`reportexport backfill --accounts FILE`: 50 accounts in one run through the real command line,
against one external sandbox serving all of them over loopback. Two accounts have a wrong token
and one has spent its daily quota: the other 47 complete, and the exit code and the summary say
which did not and why. Job completions arrive as postbacks (one receiver for every account), so
the run does not wait for the tracker's first tick."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportexport_async.cli import main
from reportexport_async.sandbox import SandboxAccount
from reportexport_async.sandbox.clock import ScaledClock as SandboxScaledClock
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .test_cli import MODULE, read_pty

REPORT = "mp_clicks_by_day"
TODAY = datetime.now(UTC).date()
END = TODAY - timedelta(days=TODAY.weekday() + 8)  # the Sunday before last
START = END - timedelta(days=6)  # one weekly chunk
RANGE = ["--start", str(START), "--end", str(END)]
TOKEN = "accounts-test-postback-token"
WRONG = ("shop-07", "shop-31")
SPENT = "shop-22"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("IMPACT_ACCOUNT_SID", "IMPACT_AUTH_TOKEN", "IMPACT_ACCOUNT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fifty(
    impact_sandbox_factory: Callable[..., SandboxThread], monkeypatch: pytest.MonkeyPatch
) -> tuple[SandboxThread, Path, int]:
    """A sandbox serving 50 accounts, and an accounts file naming them (tokens in files, a few
    in environment variables): two tokens are wrong, one account's quota is already spent."""
    accounts = tuple(
        SandboxAccount(account_sid=f"IRshop{n:02d}", auth_token=f"token-{n:02d}") for n in range(50)
    )
    port = free_port()
    sandbox = impact_sandbox_factory(
        clock=SandboxScaledClock(start=datetime.now(UTC) - timedelta(hours=3), scale=100),
        job_duration=(1, 2),
        rows_per_day=5,
        accounts=accounts,
        postback_url=f"http://127.0.0.1:{port}/postback/{TOKEN}",
    )
    Path("tokens").mkdir()
    lines = ["[defaults]", 'account_type = "Mediapartners"', f'base_url = "{sandbox.base_url}"']
    for n, account in enumerate(accounts):
        name = f"shop-{n:02d}"
        token = "not-the-token" if name in WRONG else account.auth_token
        lines += ["", "[[account]]", f'name = "{name}"', f'sid = "{account.account_sid}"']
        if n % 10 == 3:
            monkeypatch.setenv(f"SHOP_{n:02d}_TOKEN", token)
            lines.append(f'token_env = "SHOP_{n:02d}_TOKEN"')
        else:
            Path("tokens", f"{name}.token").write_text(token + "\n")
            lines.append(f'token_file = "tokens/{name}.token"')
    path = Path("accounts.toml")
    path.write_text("\n".join(lines) + "\n")
    sandbox.use_quota(accounts[int(SPENT[-2:])].account_sid)
    return sandbox, path, port


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_fifty_accounts_in_one_run(
    fifty: tuple[SandboxThread, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, path, port = fifty
    common = [
        "backfill", REPORT, *RANGE, "--accounts", str(path), "--out", "out",
        "--ledger", "ledger.sqlite", "--parallel-accounts", "25",
        "--postback-listen", f"127.0.0.1:{port}", "--postback-token", TOKEN,
    ]  # fmt: skip
    code, out, err = run(capsys, *common, "--json")
    assert code == 2, (out, err)  # credentials refused outrank a spent quota
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    ends = {e["account"]: e for e in events if e["event"] == "account"}
    assert len(ends) == 50
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["complete"] == 47
    assert summary["not_complete"] == {"shop-07": 2, "shop-31": 2, SPENT: 3}
    assert summary["exit_code"] == 2
    for name in WRONG:
        assert ends[name]["status"] == "credentials"
        assert "refused the credentials" in ends[name]["reason"]
        assert "not-the-token" not in ends[name]["reason"]
    # What stopped an account is said as it happens, named.
    notices = {(e["event"], e["account"]) for e in events if e["event"] in ("quota", "stopped")}
    assert {("stopped", "shop-07"), ("stopped", "shop-31"), ("quota", SPENT)} <= notices
    assert {name for _, name in notices} == {"shop-07", "shop-31", SPENT}
    assert ends[SPENT]["status"] == "quota"
    assert ends[SPENT]["counts"]["pending"] == 1
    assert "daily ReportExport quota" in ends[SPENT]["reason"]
    complete = [name for name, e in ends.items() if e["exit_code"] == 0]
    assert len(complete) == 47
    for name in complete:
        assert {k: v for k, v in ends[name]["counts"].items() if v} == {"done": 1}
        manifest = Path(ends[name]["manifest"])
        assert manifest == Path("out", name, "manifest.json")
        assert len(list(Path("out", name, REPORT).glob("*.csv"))) == 1
    # The server's side: one job each for the 47, none for the other three; no 429 but the one
    # the spent quota answered.
    stats = sandbox.stats()
    per_account = stats["accounts"]
    jobs = {sid: counts["jobs_created"] for sid, counts in per_account.items()}
    assert sum(jobs.values()) == 47
    assert jobs["IRshop07"] == jobs["IRshop31"] == jobs["IRshop22"] == 0
    assert per_account["IRshop07"]["unauthorized"] >= 1
    assert stats["rate_limited"] == per_account["IRshop22"]["rate_limited"] == 1
    assert "not-the-token" not in out + err
    # No token in any file the run wrote (the files, the manifests, the ledger).
    written = [p for p in Path("out").rglob("*") if p.is_file()]
    written += list(Path(".").glob("ledger.sqlite*"))
    tokens = [f"token-{n:02d}".encode() for n in range(50)] + [b"not-the-token"]
    for path in written:
        data = path.read_bytes()
        assert not any(token in data for token in tokens), path

    # Again, plainly, for the three that did not complete: the summary names them and why;
    # what is done costs nothing.
    before = sandbox.stats()["total_calls"]
    code, out, err = run(capsys, *common, "--account", "shop-00", "--account", SPENT)
    assert code == 3, (out, err)
    assert "shop-00" in out
    assert "1 of 2 accounts complete" in out
    assert f"quota (exit 3): {SPENT}" in out
    assert "exit code 3" in out
    assert f"{SPENT}: quota: 1 chunks wait for the daily ReportExport quota" in out
    calls = sandbox.stats()["total_calls"] - before
    assert calls <= 1  # shop-00 is done (no call); the spent quota is known (at most a probe)


def test_accounts_file_mistakes_are_one_line_each_before_any_call(
    fifty: tuple[SandboxThread, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, path, _ = fifty
    text = path.read_text()
    text = text.replace('name = "shop-01"', 'name = "shop-00"')  # a duplicate name
    text = text.replace('token_file = "tokens/shop-02.token"', 'token_file = "tokens/none"')
    text = text.replace('name = "shop-04"', 'name = "shop-04"\ncolour = "blue"')
    path.write_text(text)
    code, out, err = run(capsys, "backfill", REPORT, *RANGE, "--accounts", str(path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert all(line.startswith("reportexport backfill: error: accounts.toml: ") for line in lines)
    assert "account 'shop-00': the name is used twice" in lines[0]
    assert "account 'shop-02': token_file" in lines[1]
    assert "cannot be read" in lines[1]
    assert "account 'shop-04': unknown key 'colour'" in lines[2]
    assert sandbox.stats()["total_calls"] == 0
    path.write_text(path.read_text().replace('colour = "blue"\n', ""))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--account", "shop-00"], "--account needs --accounts FILE"),
        (["--accounts", "accounts.toml", "--sandbox"], "drop --sandbox"),
        (["--accounts", "accounts.toml", "--daily-report-export", "5"], "--daily-report-export"),
        (["--accounts", "accounts.toml", "--account", "nobody"], "no account named 'nobody'"),
    ],
)
def test_account_options_that_cannot_work(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    Path("accounts.toml").write_text(
        '[[account]]\nname = "shop-00"\nsid = "IRa"\naccount_type = "Mediapartners"\n'
        'token_env = "SHOP_TOKEN_FOR_OPTIONS_TEST"\n'
    )
    env: dict[str, Any] = {"SHOP_TOKEN_FOR_OPTIONS_TEST": "x"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        code, out, err = run(capsys, "backfill", REPORT, *RANGE, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]


def test_accounts_on_a_terminal(impact_sandbox_factory: Callable[..., SandboxThread]) -> None:
    """On a terminal: a bar of accounts while they run, then the table and the reasons."""
    accounts = tuple(SandboxAccount(account_sid=f"IRtty{n}") for n in range(3))
    port = free_port()
    sandbox = impact_sandbox_factory(
        clock=SandboxScaledClock(start=datetime.now(UTC) - timedelta(hours=3), scale=100),
        job_duration=(1, 2),
        rows_per_day=5,
        accounts=accounts,
        postback_url=f"http://127.0.0.1:{port}/postback/{TOKEN}",
    )
    lines = ["[defaults]", 'account_type = "Mediapartners"', f'base_url = "{sandbox.base_url}"']
    for n, account in enumerate(accounts):
        token = "wrong" if n == 2 else account.auth_token
        Path(f"t{n}").write_text(token)
        lines += ["[[account]]", f'name = "tty-{n}"', f'sid = "{account.account_sid}"']
        lines.append(f'token_file = "t{n}"')
    Path("accounts.toml").write_text("\n".join(lines) + "\n")
    argv = [*MODULE, "backfill", REPORT, *RANGE, "--accounts", "accounts.toml"]
    argv += ["--postback-listen", f"127.0.0.1:{port}", "--postback-token", TOKEN]
    code, out = read_pty(argv)
    assert code == 2, out
    assert "accounts" in out
    assert "━" in out  # the bar while accounts run
    # Its reason once, as it finished (coloured: the codes are left out to read it).
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert plain.count("tty-2: credentials: stopped: the server refused the credentials") == 1
    assert "2 of 3 accounts complete" in out
    assert "credentials (exit 2): tty-2" in out
    assert "wrong" not in out
