"""The sandbox serves several accounts: each with its own token, jobs, daily quotas and hourly
bucket. Plain aiohttp over loopback (never the project's client)."""

from __future__ import annotations

import aiohttp
import pytest

from reportexport_async.sandbox import ManualClock, Sandbox, SandboxAccount, SandboxError

from .conftest import SANDBOX_START, Api, basic, job_id_of

REPORT = "mp_clicks_by_day"
DATES = {"START_DATE": "2026-06-01", "END_DATE": "2026-06-02"}


class Other(Api):
    """An `Api` of another account of the same sandbox."""

    def __init__(
        self, sandbox: Sandbox, session: aiohttp.ClientSession, account: SandboxAccount
    ) -> None:
        super().__init__(sandbox, session, "Mediapartners")
        self.root = f"{sandbox.base_url}/Mediapartners/{account.account_sid}"
        self.auth = basic(account.account_sid, account.auth_token)


async def test_each_account_has_its_own_token_jobs_and_quota(
    http: aiohttp.ClientSession,
) -> None:
    extra = SandboxAccount(account_sid="IRsecond", auth_token="tok-2", daily_export_limit=1)
    async with Sandbox(clock=ManualClock(SANDBOX_START), accounts=(extra,)) as sandbox:
        main = Api(sandbox, http, "Mediapartners")
        second = Other(sandbox, http, extra)

        # The same export on two accounts: two jobs, each visible only to its own account.
        main_job = job_id_of(await main.export(REPORT, **DATES))
        second_job = job_id_of(await second.export(REPORT, **DATES))
        assert main_job != second_job
        assert (await second.call(f"Jobs/{main_job}")).status == 404
        assert (await main.call(f"Jobs/{second_job}")).status == 404
        listed = (await second.call("Jobs")).json
        assert [job["Id"] for job in listed["Jobs"]] == [second_job]

        # The second account's quota is its own (1 a day); the main one's is untouched.
        refused = await second.export(REPORT, START_DATE="2026-06-03", END_DATE="2026-06-03")
        assert refused.status == 429
        other_day = await main.export(REPORT, START_DATE="2026-06-03", END_DATE="2026-06-03")
        assert other_day.status == 200
        # A token is valid only for its own SID.
        crossed = await second.call("Jobs", auth=basic(extra.account_sid, sandbox.auth_token))
        assert crossed.status == 401

        stats = sandbox.stats()["accounts"]
        # Each account's calls by endpoint, refused ones included (the 429 and the 401).
        assert stats["IRsecond"]["calls"] == {"ReportExport": 2, "ListJobs": 2, "GetJob": 1}
        assert stats[sandbox.account_sid]["calls"] == {"ReportExport": 2, "GetJob": 1}
        assert stats["IRsecond"]["jobs_created"] == 1
        assert stats["IRsecond"]["ReportExport"] == 1
        assert stats["IRsecond"]["ReportExport_limit"] == 1
        assert stats["IRsecond"]["rate_limited"] == 1
        assert stats["IRsecond"]["unauthorized"] == 1
        assert stats[sandbox.account_sid]["jobs_created"] == 2
        assert stats[sandbox.account_sid]["ReportExport_limit"] == 100


async def test_accounts_added_while_running_and_quota_spent_by_another_tool(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    added = sandbox.add_account(hourly_limit=2)
    assert added.daily_export_limit == sandbox.config.daily_export_limit
    assert [a.account_sid for a in sandbox.accounts] == [sandbox.account_sid, added.account_sid]
    api = Other(sandbox, http, added)
    assert (await api.call("Jobs")).headers["X-RateLimit-Limit-hour"] == "2"
    assert (await api.call("Jobs")).status == 200
    assert (await api.call("Jobs")).status == 429  # its own hourly bucket of 2

    sandbox.use_quota(sandbox.account_sid)
    main = Api(sandbox, http, "Mediapartners")
    assert (await main.export(REPORT, **DATES)).status == 429
    with pytest.raises(SandboxError, match="no account"):
        sandbox.use_quota("IRnobody")


def test_two_accounts_with_one_sid_are_refused() -> None:
    with pytest.raises(ValueError, match="used twice"):
        Sandbox(account_sid="IRsame", accounts=(SandboxAccount(account_sid="IRsame"),))
    with pytest.raises(ValueError, match="must not be negative"):
        SandboxAccount(daily_export_limit=-1)


async def test_accounts_added_through_the_control_endpoint(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    body = [{"account_sid": "IRviahttp", "auth_token": "tok-http", "daily_export_limit": 3}]
    async with http.post(f"{sandbox.base_url}/_sandbox/accounts", json=body) as response:
        assert response.status == 200
        assert (await response.json()) == {"accounts": 2}
    async with http.post(f"{sandbox.base_url}/_sandbox/accounts", json=body) as response:
        assert response.status == 400  # the same SID twice
        assert "used twice" in (await response.json())["error"]
    async with http.post(f"{sandbox.base_url}/_sandbox/accounts", json={"x": 1}) as response:
        assert response.status == 400
    added = sandbox.config.account("IRviahttp")
    assert added is not None
    assert added.daily_export_limit == 3
    api = Other(sandbox, http, added)
    assert job_id_of(await api.export(REPORT, **DATES))
