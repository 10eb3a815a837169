"""Many accounts: the accounts file (every mistake one line, before any call), the limits of
each account (config, environment, file), one client per account sharing one ledger, and
`run_per_account` (one account's failure never stops the others). Against the sandbox on a
manual clock, over loopback."""

from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pytest

from reportexport_async import (
    AccountUnavailable,
    Client,
    ClientConfig,
    ConfigurationError,
    ProgressEvent,
    RateLimitPolicy,
)
from reportexport_async.accounts import (
    Account,
    AccountsFileError,
    load_accounts,
    run_per_account,
    select_accounts,
)
from reportexport_async.core.fingerprint import account_key, fingerprint
from reportexport_async.core.models import ExportRequest
from reportexport_async.core.tracking import TickPolicy
from reportexport_async.jobs.orchestrator import BackfillResult
from reportexport_async.ledger import Ledger
from reportexport_async.sandbox import ManualClock, Sandbox, SandboxAccount
from reportexport_async.sandbox.testing import SandboxTime
from reportexport_async.transport.config import limits_from_env
from reportexport_async.transport.connections import Connections

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
REPORT = "mp_action_listing_fast"
SECRET = "tok-very-secret-123"


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# -- the limits of one account ------------------------------------------------------------------


def test_limits_from_the_environment_and_their_defaults() -> None:
    assert limits_from_env({}) is None
    policy = limits_from_env(
        {"IMPACT_HOURLY_LIMIT": "50", "IMPACT_DAILY_REPORT_EXPORT": "400"}, RateLimitPolicy()
    )
    assert policy is not None
    assert (policy.hourly_limit, policy.daily_report_export, policy.daily_click_export) == (
        50,
        400,
        10,
    )
    assert policy.safety_margin == 5  # shrunk with the small hourly limit
    defaults = RateLimitPolicy()
    assert (defaults.hourly_limit, defaults.daily_report_export, defaults.daily_click_export) == (
        1000,
        100,
        10,
    )
    with pytest.raises(ConfigurationError, match="IMPACT_DAILY_CLICK_EXPORT: must be a whole"):
        limits_from_env({"IMPACT_DAILY_CLICK_EXPORT": "ten"})
    with pytest.raises(ConfigurationError, match="IMPACT_HOURLY_LIMIT: must be >= 1"):
        limits_from_env({"IMPACT_HOURLY_LIMIT": "0"})
    config = ClientConfig.from_env(
        {
            "IMPACT_ACCOUNT_SID": "IRa",
            "IMPACT_AUTH_TOKEN": "t",
            "IMPACT_ACCOUNT_TYPE": "partner",
            "IMPACT_DAILY_REPORT_EXPORT": "250",
        }
    )
    assert config.rate_limit.daily_report_export == 250
    assert config.rate_limit.hourly_limit == 1000


# -- the accounts file --------------------------------------------------------------------------


def test_an_accounts_file_with_every_way_to_give_a_token(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets" / "acme.token", SECRET + "\n")
    path = write(
        tmp_path / "accounts.toml",
        f"""
[defaults]
account_type = "Mediapartners"
daily_report_export = 300

[[account]]
name = "acme"
sid = "IRacme"
token_file = "secrets/acme.token"
hourly_limit = 2000

[[account]]
name = "globex"
account_type = "Advertisers"
sid = "IRglobex"
token_env = "GLOBEX_TOKEN"
base_url = "https://api.impact.com/"
daily_click_export = 0

[[account]]
name = "initech"
sid = "IRinitech"
token = "{SECRET}"
""",
        mode=0o600,
    )
    acme, globex, initech = load_accounts(path, environ={"GLOBEX_TOKEN": SECRET})
    assert acme.config.auth_token.get_secret_value() == SECRET
    assert acme.config.rate_limit.hourly_limit == 2000
    assert acme.config.rate_limit.daily_report_export == 300  # from [defaults]
    assert globex.config.account_type.value == "Advertisers"
    assert globex.config.rate_limit.daily_click_export == 0
    assert globex.token_source == "$GLOBEX_TOKEN"
    assert initech.config.rate_limit.daily_report_export == 300
    assert initech.config.rate_limit.hourly_limit == 1000
    for account in (acme, globex, initech):
        assert SECRET not in repr(account)
        assert SECRET not in str(account)
    assert select_accounts([acme, globex, initech], ["initech", "acme"]) == [acme, initech]


def test_every_mistake_is_one_line_naming_the_account(tmp_path: Path) -> None:
    write(tmp_path / "empty.token", "")
    path = write(
        tmp_path / "accounts.toml",
        f"""
colour = "blue"

[[account]]
name = "a"
sid = "IRa"
account_type = "Mediapartners"
tokn_file = "x"
token_file = "missing.token"

[[account]]
name = "a"
account_type = "Mediapartners"
token_env = "NOT_SET_ANYWHERE"

[[account]]
name = "c"
sid = "IRc"
account_type = "Mediapartners"
token = "{SECRET}"
daily_report_export = -1

[[account]]
name = "d"
sid = "IRd"
account_type = "Nobody"
token_file = "empty.token"

[[account]]
name = "e"
sid = "IRe"
account_type = "Mediapartners"
token_env = "E_TOKEN"

[[account]]
name = "e2"
sid = "IRe"
account_type = "Mediapartners"
token_env = "E_TOKEN"
""",
    )
    with pytest.raises(AccountsFileError) as caught:
        load_accounts(path, environ={"E_TOKEN": "x"})
    problems = caught.value.problems
    text = "\n".join(problems)
    assert SECRET not in text
    expected = [
        "top level: unknown key 'colour'",
        "account 'a': unknown key 'tokn_file'",
        "account 'a': token_file",  # missing.token cannot be read
        "account 'a': the name is used twice",
        "account 'a': sid is required",
        "account 'a': token_env: the environment variable NOT_SET_ANYWHERE is not set",
        "account 'c': daily_report_export must be a whole number >= 0",
        "account 'c': an inline token needs the accounts file to be private (it is mode 0644)",
        "account 'd': token_file",  # empty
        "account 'e2': the same account as 'e'",
    ]
    for needle in expected:
        assert any(needle in line for line in problems), (needle, problems)
    assert all(line.startswith(str(path)) for line in problems)
    assert all("\n" not in line for line in problems)
    assert any("missing.token" in line and "cannot be read" in line for line in problems)
    assert any("empty.token" in line and "is empty" in line for line in problems)


def test_a_file_that_is_not_toml_or_not_there(tmp_path: Path) -> None:
    with pytest.raises(AccountsFileError, match="cannot be read"):
        load_accounts(tmp_path / "nope.toml")
    bad = write(tmp_path / "bad.toml", "[[account]\nname = 1\n")
    with pytest.raises(AccountsFileError, match="not valid TOML"):
        load_accounts(bad)
    empty = write(tmp_path / "empty.toml", "")
    with pytest.raises(AccountsFileError, match=r"no \[\[account\]\] table"):
        load_accounts(empty)


def test_an_unknown_account_name_lists_the_known_ones(tmp_path: Path) -> None:
    config = ClientConfig(account_sid="IRa", auth_token="t", account_type="partner")
    accounts = [Account("a", config, "test")]
    with pytest.raises(AccountsFileError, match=r"no account named 'b' \(known: a\)"):
        select_accounts(accounts, ["a", "b"], path="accounts.toml")


# -- one client per account, one ledger --------------------------------------------------------


async def test_clients_of_several_accounts_share_one_ledger(tmp_path: Path) -> None:
    accounts = tuple(
        SandboxAccount(account_sid=f"IRshop{n}", auth_token=f"token-{n}") for n in range(4)
    )
    quota_spent = accounts[3]
    async with Sandbox(
        clock=ManualClock(START),
        job_duration=(30, 300),
        rows_per_day=4,
        accounts=accounts,
    ) as sandbox:
        sandbox.use_quota(quota_spent.account_sid)
        mine = []
        for n, account in enumerate(accounts):
            token = "wrong" if n == 2 else account.auth_token
            config = ClientConfig(
                account_sid=account.account_sid,
                auth_token=token,
                account_type="Mediapartners",
                base_url=sandbox.base_url,
                # shop1's own daily quota is 2: its third day waits, whatever the others have.
                rate_limit=RateLimitPolicy(daily_report_export=2 if n == 1 else 5 + n),
            )
            mine.append(Account(f"shop{n}", config, "test"))

        def factory(account: Account, ledger: Ledger) -> Client:
            return Client(
                account.config, ledger=ledger, clock=SandboxTime(sandbox), random_source=half
            )

        async def work(client: Client, account: Account) -> BackfillResult:
            assert (
                client.limiter.policy.daily_report_export
                == account.config.rate_limit.daily_report_export
            )
            return await client.backfill(
                REPORT, date(2026, 5, 1), date(2026, 5, 3), out=tmp_path / account.name, chunk="1d"
            )

        async with Ledger(tmp_path / "ledger.sqlite") as ledger:
            outcomes = await run_per_account(
                mine, work, ledger=ledger, concurrency=2, client_factory=factory
            )
            history = await ledger.counters.quota_history()
            entries = await ledger.entries()

        ok = {o.account.name: o for o in outcomes if o.ok}
        assert sorted(ok) == ["shop0", "shop1", "shop3"]
        assert ok["shop0"].result is not None
        assert ok["shop0"].result.complete
        assert ok["shop1"].result is not None
        assert ok["shop1"].result.counts["done"] == 2
        assert ok["shop1"].result.counts["pending"] == 1
        spent = ok["shop3"].result
        assert spent is not None
        assert spent.counts["pending"] == 3
        refused = outcomes[2].error
        assert isinstance(refused, AccountUnavailable)
        assert refused.problem == "credentials"
        assert "wrong" not in str(refused)

        stats = sandbox.stats()["accounts"]
        assert [stats[a.account_sid]["jobs_created"] for a in accounts] == [3, 2, 0, 0]
        assert stats[accounts[2].account_sid]["unauthorized"] >= 1
        # The ledger keeps the accounts apart: fingerprints, and quota counts per account.
        by_account: dict[str, int] = {}
        for account_key, _, name, used in history:
            if name == "ReportExport":
                by_account[account_key] = by_account.get(account_key, 0) + used
        # Charged, then refunded where the server did not count (the spent quota's 429); the
        # wrong token was refused at the report-id check's catalog call, before any submit.
        assert sorted(by_account.values()) == [0, 2, 3]
        with_jobs = {e.account.rsplit("/", 1)[1] for e in entries if e.job_id is not None}
        assert with_jobs == {"IRshop0", "IRshop1"}
        per_sid = Counter(e.account.rsplit("/", 1)[1] for e in entries)
        assert per_sid["IRshop0"] == per_sid["IRshop1"] == 3  # one entry per account and day
        shop1_jobs = [e for e in entries if e.account.endswith("/IRshop1") and e.job_id]
        assert len(shop1_jobs) == 2  # its third day waits for its own quota
        assert per_sid["IRshop2"] == 0  # refused before any intent was written
        assert 1 <= per_sid["IRshop3"] <= 3


async def test_a_run_of_many_accounts_stopped_midway_resumes_without_a_second_submit(
    tmp_path: Path,
) -> None:
    """Cancelled (as by Ctrl-C) after the fourth submit of any account: every account's ledger
    entries and folder stay consistent, and the next run finishes with no job created twice.
    One submit at a time per account: at most one more per account is in flight at the cancel,
    so some chunks are always left for the second run."""
    accounts = tuple(SandboxAccount(account_sid=f"IRstop{n}") for n in range(3))
    async with Sandbox(
        clock=ManualClock(START), job_duration=(30, 300), rows_per_day=4, accounts=accounts
    ) as sandbox:
        mine = [
            Account(
                f"stop{n}",
                ClientConfig(
                    account_sid=a.account_sid,
                    auth_token=a.auth_token,
                    account_type="Mediapartners",
                    base_url=sandbox.base_url,
                ),
                "test",
            )
            for n, a in enumerate(accounts)
        ]
        submitted = 0
        stop = anyio.CancelScope()

        def factory(account: Account, ledger: Ledger) -> Client:
            return Client(
                account.config, ledger=ledger, clock=SandboxTime(sandbox), random_source=half
            )

        def count(event: ProgressEvent) -> None:
            nonlocal submitted
            if event.kind == "chunk" and event.status == "submitted":
                submitted += 1
                if submitted == 4:
                    stop.cancel()

        async def work(client: Client, account: Account) -> BackfillResult:
            return await client.backfill(
                REPORT, date(2026, 5, 1), date(2026, 5, 3), out=tmp_path / account.name,
                chunk="1d", on_event=count, submit_concurrency=1,
            )  # fmt: skip

        async with Ledger(tmp_path / "ledger.sqlite") as ledger:
            with stop:
                await run_per_account(mine, work, ledger=ledger, client_factory=factory)
            assert stop.cancelled_caught
            assert 4 <= sandbox.stats()["jobs_created"] < 9
            outcomes = await run_per_account(mine, work, ledger=ledger, client_factory=factory)
        for outcome in outcomes:
            assert outcome.result is not None, outcome.error
            assert outcome.result.complete
            files = list((tmp_path / outcome.account.name).rglob("*.csv"))
            assert len(files) == 3
        per_account = sandbox.stats()["accounts"]
        assert [per_account[a.account_sid]["jobs_created"] for a in accounts] == [3, 3, 3]


async def test_an_unreachable_account_stops_alone(tmp_path: Path) -> None:
    """One account's host cannot be reached (a closed loopback port): that account stops at
    once as `unreachable`; the other completes."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with Sandbox(clock=ManualClock(START), job_duration=(30, 300), rows_per_day=4) as sandbox:
        good = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        gone = good.model_copy(update={"base_url": f"http://127.0.0.1:{closed}"})
        mine = [Account("good", good, "test"), Account("gone", gone, "test")]

        def factory(account: Account, ledger: Ledger) -> Client:
            return Client(
                account.config, ledger=ledger, clock=SandboxTime(sandbox), random_source=half
            )

        async def work(client: Client, account: Account) -> BackfillResult:
            return await client.backfill(
                REPORT, date(2026, 5, 1), date(2026, 5, 2), out=tmp_path / account.name, chunk="1d"
            )

        good_outcome, gone_outcome = await run_per_account(
            mine, work, ledger=tmp_path / "ledger.sqlite", client_factory=factory
        )
    assert good_outcome.result is not None
    assert good_outcome.result.complete
    assert isinstance(gone_outcome.error, AccountUnavailable)
    assert gone_outcome.error.problem == "unreachable"


async def test_two_open_clients_of_one_account_on_one_ledger_are_refused(tmp_path: Path) -> None:
    async with Sandbox(clock=ManualClock(START)) as sandbox:
        other = sandbox.add_account()
        async with Ledger(tmp_path / "ledger.sqlite") as ledger:
            async with Client.for_sandbox(sandbox, ledger=ledger):
                second = Client.for_sandbox(sandbox, ledger=ledger)
                with pytest.raises(ConfigurationError, match="one client per account"):
                    await second.__aenter__()
                # Another account on the same ledger is fine, and so is the same one later.
                async with Client.for_sandbox(
                    sandbox,
                    ledger=ledger,
                    account_sid=other.account_sid,
                    auth_token=other.auth_token,
                ) as client:
                    assert client.config.account_sid == other.account_sid
            async with Client.for_sandbox(sandbox, ledger=ledger):
                pass


def half() -> float:
    return 0.5


def test_the_inline_token_check_reads_the_mode(tmp_path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - the mode check is POSIX only
        pytest.skip("file modes are POSIX")
    path = write(
        tmp_path / "a.toml",
        f'[[account]]\nname="a"\nsid="IRa"\naccount_type="partner"\ntoken="{SECRET}"\n',
        mode=0o640,
    )
    with pytest.raises(AccountsFileError, match="chmod 600"):
        load_accounts(path)
    path.chmod(0o600)
    (account,) = load_accounts(path)
    assert account.token_source == "the accounts file"


@pytest.mark.parametrize("sid", ["IRab", "IRAB", "IR_b", "IRxb", "IR%b", 'IR"b\\'])
async def test_the_ledger_selects_one_accounts_entries_exactly(tmp_path: Path, sid: str) -> None:
    """`entries(account=...)` is one account's, whatever its SID holds (LIKE's wildcards, case,
    JSON escapes) and whichever origin or type shares the SID."""
    sids = ["IRab", "IRAB", "IR_b", "IRxb", "IR%b", 'IR"b\\']
    places = [("http://127.0.0.1:1", "Mediapartners"), ("https://api.impact.com", "Advertisers")]
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for other in sids:
            for base_url, kind in places:
                print_ = fingerprint(
                    ExportRequest(report_id="R", start=date(2026, 1, 1), end=date(2026, 1, 1)),
                    base_url=base_url,
                    account_type=kind,
                    account_sid=other,
                    today=date(2026, 6, 1),
                )
                await ledger.claim(
                    print_.key, print_.canonical, endpoint="ReportExport", report_id="R",
                    range_start=date(2026, 1, 1), range_end=date(2026, 1, 1), result_format="CSV",
                )  # fmt: skip
        key = account_key("https://api.impact.com", "Advertisers", sid)
        (entry,) = await ledger.entries(report_id="R", account=key)
        assert entry.account == key
        assert len(await ledger.entries(account=key)) == 1
        assert len(await ledger.entries(report_id="R")) == len(sids) * len(places)


async def test_a_claim_asks_the_server_through_its_own_accounts_session(tmp_path: Path) -> None:
    """Two accounts' clients on one ledger object: the ledger keeps the first one's clock. Once
    that client is closed, the second one's submit (its last answer long past, so it asks the
    server which day it is first) asks through its own session, and is made."""
    accounts = tuple(SandboxAccount(account_sid=f"IRclaim{n}", auth_token=f"t-{n}") for n in (0, 1))
    async with Sandbox(
        clock=ManualClock(START), job_duration=(30, 60), rows_per_day=4, accounts=accounts
    ) as sandbox:

        def client(account: SandboxAccount, ledger: Ledger) -> Client:
            config = ClientConfig(
                account_sid=account.account_sid, auth_token=account.auth_token,
                account_type="Mediapartners", base_url=sandbox.base_url,
            )  # fmt: skip
            return Client(config, ledger=ledger, clock=SandboxTime(sandbox), random_source=half)

        async with Ledger(tmp_path / "ledger.sqlite") as ledger:
            second = client(accounts[1], ledger)
            async with client(accounts[0], ledger) as first, second:
                await first.export("mp_clicks_by_day", out=tmp_path / "a.csv",
                                   start=date(2026, 6, 1), end=date(2026, 6, 1))  # fmt: skip
                await second.jobs()  # heard from the server once
            async with second:  # the first client's session is closed now
                sandbox.advance(3600)
                day = date(2026, 6, 2)
                outcome = await second.export(
                    "mp_clicks_by_day", out=tmp_path / "b.csv", start=day, end=day
                )
                assert outcome.submitted


async def test_the_accounts_of_a_run_share_one_pool_of_connections(tmp_path: Path) -> None:
    """`run_per_account`'s clients share one `Connections`: every account's calls carry its own
    credentials (its jobs are its own, no 401), the pool is closed after the run, and the
    connections one account kept alive carry the next one's calls: four accounts, one at a
    time, open fewer connections than the same run with a pool per client (a factory of one's
    own), about as many as one account alone."""
    accounts = tuple(
        SandboxAccount(account_sid=f"IRpool{n}", auth_token=f"t-{n}") for n in range(4)
    )
    unlimited = RateLimitPolicy(hourly_limit=10**6)  # the tracker's tick at its base pace
    async with Sandbox(
        job_duration=(0, 0), rows_per_day=1, hourly_limit=0, accounts=accounts
    ) as sandbox:
        mine = [
            Account(
                a.account_sid,
                ClientConfig(
                    account_sid=a.account_sid,
                    auth_token=a.auth_token,
                    rate_limit=unlimited,
                    account_type="Mediapartners",
                    base_url=sandbox.base_url,
                ),
                "test",
            )
            for a in accounts
        ]
        alone = await pull_through_pools(sandbox, tmp_path / "alone", mine[:1], pooled=True)
        pooled = await pull_through_pools(sandbox, tmp_path / "pooled", mine, pooled=True)
        separate = await pull_through_pools(sandbox, tmp_path / "separate", mine, pooled=False)
    assert pooled < separate
    assert pooled <= alone + 2  # a connection or two closed by a cancelled read at most
    assert separate >= len(accounts)


async def pull_through_pools(
    sandbox: Sandbox, folder: Path, accounts: list[Account], *, pooled: bool
) -> int:
    """Two one-day chunks per account, one account at a time, through one pool of connections
    (`pooled`) or a pool per client; checks each account's own calls and every pool closed
    after the run. Returns the connections the sandbox saw."""
    sandbox.reset()
    connectors = []

    async def work(client: Client, account: Account) -> BackfillResult:
        connectors.append(client.api.session.http.connector)
        return await client.backfill(
            REPORT, date(2026, 5, 1), date(2026, 5, 2), out=folder / account.name, chunk="1d",
            tick=TickPolicy(base=0.05, minimum=0.01),
        )  # fmt: skip

    def own_pool(account: Account, ledger: Ledger) -> Client:
        return Client(account.config, ledger=ledger)

    outcomes = await run_per_account(
        accounts, work, ledger=folder / "ledger.sqlite", concurrency=1,
        client_factory=None if pooled else own_pool,
    )  # fmt: skip
    stats = sandbox.stats()
    for outcome in outcomes:
        assert outcome.result is not None, outcome.error
        assert outcome.result.complete
        sid = outcome.account.config.account_sid
        assert stats["accounts"][sid]["jobs_created"] == 2
        assert stats["accounts"][sid]["unauthorized"] == 0
    assert all(connector.closed for connector in connectors)
    assert len({id(connector) for connector in connectors}) == (1 if pooled else len(accounts))
    connections: int = stats["connections"]
    return connections


async def test_a_pool_of_connections_refuses_a_negative_limit_and_closes_once() -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        Connections(limit=-1)
    pool = Connections(limit=4)
    with pytest.raises(RuntimeError, match="not open"):
        _ = pool.connector
    async with pool:
        assert pool.connector.limit == 4
        assert "open" in repr(pool)
        connector = pool.connector
    assert connector.closed
    await pool.aclose()  # closing twice is harmless
