"""`reportexport sync --accounts FILE`: the same dataset kept current for four accounts in one run
through the real command line, against one sandbox serving them all over loopback. One account's
token is wrong: the other three sync, a second run the same day (from a datasets file, and then
through `run_per_account` with `client.sync` as the many-accounts guide shows) costs them no
call, and the exit code and the summary name the failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest

from reportexport_async.accounts import load_accounts, run_per_account
from reportexport_async.cli import main
from reportexport_async.jobs.sync import Dataset, SyncResult
from reportexport_async.sandbox import SandboxAccount
from reportexport_async.sandbox.clock import ScaledClock as SandboxScaledClock
from reportexport_async.sandbox.pytest_plugin import SandboxThread

REPORT = "mp_clicks_by_day"
#: The sandbox's day starts at 13:00 UTC (after the refresh hour: the latest day is not
#: deferred), so a run's minutes never cross its midnight.
TODAY = datetime.now(UTC).date()
FIRST = TODAY - timedelta(days=3)  # three complete days: three daily chunks
WRONG = "shop-2"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("IMPACT_ACCOUNT_SID", "IMPACT_AUTH_TOKEN", "IMPACT_ACCOUNT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def four(impact_sandbox_factory: Callable[..., SandboxThread]) -> tuple[SandboxThread, Path]:
    """A sandbox serving four accounts and an accounts file naming them; one token is wrong."""
    accounts = tuple(
        SandboxAccount(account_sid=f"IRsync{n}", auth_token=f"sync-token-{n}") for n in range(4)
    )
    sandbox = impact_sandbox_factory(
        clock=SandboxScaledClock(start=datetime.combine(TODAY, time(13), UTC), scale=100),
        job_duration=(1, 2),
        rows_per_day=5,
        accounts=accounts,
    )
    lines = ["[defaults]", 'account_type = "Mediapartners"', f'base_url = "{sandbox.base_url}"']
    for n, account in enumerate(accounts):
        name = f"shop-{n}"
        Path(f"{name}.token").write_text("not-the-token" if name == WRONG else account.auth_token)
        lines += ["", "[[account]]", f'name = "{name}"', f'sid = "{account.account_sid}"']
        lines.append(f'token_file = "{name}.token"')
    path = Path("accounts.toml")
    path.write_text("\n".join(lines) + "\n")
    return sandbox, path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_for_four_accounts_one_refused(
    four: tuple[SandboxThread, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, path = four
    code, out, err = run(
        capsys, "sync", REPORT, "--first-day", str(FIRST), "--out", "out", "--ledger",
        "ledger.sqlite", "--accounts", str(path), "--json",
    )  # fmt: skip
    assert code == 2, (out, err)  # the refused credentials
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    ends = {e["account"]: e for e in events if e["event"] == "account"}
    assert set(ends) == {"shop-0", "shop-1", "shop-2", "shop-3"}
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["complete"] == 3
    assert summary["not_complete"] == {WRONG: 2}
    assert summary["exit_code"] == 2
    assert ends[WRONG]["status"] == "credentials"
    assert "refused the credentials" in ends[WRONG]["reason"]
    for name in ("shop-0", "shop-1", "shop-3"):
        counts = ends[name]["counts"]
        assert counts["new"] + counts["history"] == 3, counts
        assert counts["pending"] == counts["failed"] == 0
        assert ends[name]["calls"]["ReportExport"] == 3
        assert ends[name]["manifests"] == [str(Path("out", name, "manifest.json"))]
        assert len(list(Path("out", name, REPORT).glob("*.csv"))) == 3
    assert summary["counts"]["new"] + summary["counts"]["history"] == 9
    stats = sandbox.stats()["accounts"]
    jobs = {sid: n["jobs_created"] for sid, n in stats.items() if sid.startswith("IRsync")}
    assert jobs == {"IRsync0": 3, "IRsync1": 3, "IRsync2": 0, "IRsync3": 3}
    # The refused account's calls are its 401s, as the server counted them, though it was
    # stopped before a run began (sync's check of the server's day).
    refused_first = stats["IRsync2"]["unauthorized"]
    assert refused_first >= 1
    assert sum(ends[WRONG]["calls"].values()) == refused_first
    assert not Path("out", WRONG).exists() or not list(Path("out", WRONG).rglob("*.csv"))

    # The same day again, from a datasets file with the same dataset, plainly: the three are
    # fresh and cost nothing; the summary names the refused account.
    Path("datasets.toml").write_text(
        f'[datasets.clicks]\nreports = ["{REPORT}"]\nfirst_day = {FIRST}\nout = "out"\n'
    )
    before = sandbox.stats()
    code, out, err = run(
        capsys, "sync", "--config", "datasets.toml", "--ledger", "ledger.sqlite",
        "--accounts", str(path),
    )  # fmt: skip
    after = sandbox.stats()
    assert code == 2, (out, err)
    # Every call of this run was the refused account's (its 401s, at the catalog look-up of its
    # report ids), or one listing for each of the other three, which asks the server which day
    # it is: nothing spent.
    refused = (
        after["accounts"]["IRsync2"]["unauthorized"] - before["accounts"]["IRsync2"]["unauthorized"]
    )
    assert refused >= 1
    assert after["total_calls"] - before["total_calls"] == refused + 3
    assert after["calls"]["ListJobs"] - before["calls"]["ListJobs"] == 3
    assert after["calls"]["ReportExport"] == before["calls"]["ReportExport"]
    assert "3 of 4 accounts complete" in out
    assert f"credentials (exit 2): {WRONG}" in out
    assert f"{WRONG}: credentials: stopped: the server refused the credentials" in out
    assert "exit code 2" in out
    assert "shop-0: complete (3 fresh)" in out
    assert "not-the-token" not in out + err
    for n in range(4):
        assert not any(
            f"sync-token-{n}".encode() in p.read_bytes() for p in Path("out").rglob("*.json")
        )

    # Only the named accounts, and those all complete: exit 0.
    code, out, err = run(
        capsys, "sync", "--config", "datasets.toml", "--ledger", "ledger.sqlite",
        "--accounts", str(path), "--account", "shop-0", "--account", "shop-3", "--json",
    )  # fmt: skip
    assert code == 0, (out, err)
    summary = json.loads(out.splitlines()[-1])
    assert summary["complete"] == 2
    assert summary["calls"] == {"ListJobs": 2}  # each account's check of the server's day

    # The library's way, as the many-accounts guide shows it: the same dataset for each client,
    # into the same folders, through the same ledger: all fresh, one call each (the day).
    accounts = [account for account in load_accounts(path) if account.name != WRONG]
    outcomes = anyio.run(
        partial(
            run_per_account,
            accounts,
            lambda client, account: client.sync(
                Dataset("clicks", (REPORT,), Path("out", account.name), first_day=FIRST)
            ),
            ledger="ledger.sqlite",
        )
    )
    assert [outcome.account.name for outcome in outcomes] == ["shop-0", "shop-1", "shop-3"]
    for outcome in outcomes:
        assert outcome.ok, outcome.error
        assert isinstance(outcome.result, SyncResult)
        assert outcome.result.complete
        assert outcome.result.counts["fresh"] == 3
        assert outcome.result.calls == {"ListJobs": 1}


def test_sync_with_accounts_refuses_single_account_options(
    four: tuple[SandboxThread, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, path = four
    code, _, err = run(
        capsys, "sync", REPORT, "--accounts", str(path), "--account", "nobody", "--json"
    )
    assert code == 2
    assert err.strip() == (
        "reportexport sync: error: accounts.toml: no account named 'nobody' "
        "(known: shop-0, shop-1, shop-2, shop-3)"
    )
    code, _, err = run(capsys, "sync", REPORT, "--accounts", str(path), "--sandbox")
    assert code == 2
    assert "drop --sandbox" in err
    assert sandbox.stats()["total_calls"] == 0
