"""Postbacks: the receiver on its own, then backfills driven by the sandbox's postbacks, with
polling kept as the safety net, and forged postbacks that change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from reportexport_async import (
    ClientConfig,
    JobStatus,
    RateLimiter,
    ReportExportClient,
    ScaledClock,
)
from reportexport_async.errors import ConfigurationError
from reportexport_async.jobs.orchestrator import BackfillResult, ExportSpec, ProgressEvent, backfill
from reportexport_async.ledger import Ledger
from reportexport_async.sandbox import Sandbox
from reportexport_async.transport.postbacks import Postback, PostbackReceiver, parse_listen

API_ENDPOINTS = ("ReportExport", "GetJob", "ListJobs", "Download", "Replay", "Reports")
TOKEN = "t0ken-for-the-tests-1234"


@asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[tuple[PostbackReceiver, list[Postback]]]:
    seen: list[Postback] = []
    async with PostbackReceiver(token=TOKEN, **options) as running:
        running.subscribe(seen.append)
        yield running, seen


# -- the receiver ---------------------------------------------------------------------------------


async def test_wrong_path_or_token_is_404_and_wakes_nothing() -> None:
    async with receiver() as (running, seen), aiohttp.ClientSession() as http:
        base = running.url.rsplit("/postback/", 1)[0]
        for path in ("/postback/wrong-token-000000000", "/postback/", "/", "/other"):
            async with http.get(base + path, params={"JobId": "x"}) as answer:
                assert answer.status == 404
    assert seen == []
    assert running.counts["wrong_token"] == 1


@pytest.mark.parametrize("style", ["get", "json", "form"])
async def test_get_json_and_form_postbacks_are_accepted(style: str) -> None:
    async with receiver() as (running, seen), aiohttp.ClientSession() as http:
        fields = {"JobId": "job-1", "Status": "COMPLETED"}
        if style == "get":
            request = http.get(running.url, params=fields)
        elif style == "json":
            request = http.post(running.url, json=fields)
        else:
            request = http.post(running.url, data=fields)
        async with request as answer:
            assert answer.status == 200
    assert [(p.job_id, p.status) for p in seen] == [("job-1", "COMPLETED")]


async def test_field_names_are_configurable_and_junk_is_acknowledged() -> None:
    async with (
        receiver(job_id_field="job", status_field="state") as (running, seen),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(running.url, params={"job": "j9", "state": "done"}) as answer:
            assert answer.status == 200
        async with http.post(running.url, data=b"not json", headers={"Content-Type": "x/y"}) as a:
            assert a.status == 200  # 2xx so the service stops retrying; nothing woken
    assert [(p.job_id, p.status) for p in seen] == [("j9", "done")]
    assert running.counts["no_job_id"] == 1


async def test_body_size_is_capped() -> None:
    async with receiver(max_body=1024) as (running, seen), aiohttp.ClientSession() as http:
        answer = await http.post(running.url, json={"JobId": "x", "pad": "y" * 5000})
        assert answer.status == 413
        answer.release()
    assert seen == []


async def test_token_from_the_environment_and_kept_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMPACT_POSTBACK_TOKEN", "from-the-environment-42")
    async with PostbackReceiver() as running:
        assert running.url.endswith("/postback/from-the-environment-42")
        assert "from-the-environment-42" not in repr(running)
        assert running.url.startswith("http://127.0.0.1:")
    with pytest.raises(ConfigurationError, match="postback_token"):
        PostbackReceiver(token="short")


async def test_every_listener_gets_every_postback_until_it_unsubscribes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first: list[str] = []
    second: list[str] = []

    def broken(postback: Postback) -> None:
        raise RuntimeError(f"listener bug on {postback.job_id}")

    async with receiver() as (running, seen), aiohttp.ClientSession() as http:
        stop_first = running.subscribe(lambda p: first.append(p.job_id))
        running.subscribe(broken)  # between two others: it stops neither, nor the answer
        stop_second = running.subscribe(lambda p: second.append(p.job_id))
        async with http.get(running.url, params={"JobId": "a"}) as answer:
            assert answer.status == 200
        stop_first()
        stop_first()  # a second call does nothing
        async with http.get(running.url, params={"JobId": "b"}) as answer:
            assert answer.status == 200
        stop_second()
        async with http.get(running.url, params={"JobId": "c"}) as answer:
            assert answer.status == 200
    assert [p.job_id for p in seen] == ["a", "b", "c"]
    assert first == ["a"]
    assert second == ["a", "b"]
    assert running.counts["listener_failed"] == 3
    assert running.counts["accepted"] == 3
    assert "listener bug on a" in caplog.text


async def test_on_postback_is_a_deprecated_single_slot_beside_the_listeners() -> None:
    slot: list[str] = []
    replaced: list[str] = []
    with pytest.deprecated_call():
        running = PostbackReceiver(token=TOKEN, on_postback=lambda p: replaced.append(p.job_id))
    async with running, aiohttp.ClientSession() as http:
        others: list[str] = []
        running.subscribe(lambda p: others.append(p.job_id))
        with pytest.deprecated_call():
            running.on_postback = lambda p: slot.append(p.job_id)  # replaces only the slot
        async with http.get(running.url, params={"JobId": "a"}) as answer:
            assert answer.status == 200
        with pytest.deprecated_call():
            running.on_postback = None
        async with http.get(running.url, params={"JobId": "b"}) as answer:
            assert answer.status == 200
    assert (replaced, slot, others) == ([], ["a"], ["a", "b"])
    assert running.on_postback is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        (":0", ("127.0.0.1", 0)),
        ("9000", ("127.0.0.1", 9000)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:99999", "host:http"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        parse_listen(text)


# -- backfills with postbacks ---------------------------------------------------------------------

SCALE = 120.0  # sandbox seconds per real second: a 600 s safety-net tick takes 5 s


@asynccontextmanager
async def scaled_run(
    tmp_path: Path, **sandbox_options: Any
) -> AsyncIterator[tuple[Sandbox, ReportExportClient, Ledger, PostbackReceiver]]:
    """A sandbox in scaled time delivering postbacks to a receiver, and a client on the same
    time: postbacks really race the safety-net ticks here."""
    async with PostbackReceiver(token=TOKEN) as postbacks:
        sandbox_options.setdefault("job_duration", (30, 240))
        async with Sandbox(
            time_scale=SCALE, rows_per_day=3, postback_url=postbacks.url, **sandbox_options
        ) as sandbox:
            clock = ScaledClock(start=sandbox.now(), scale=SCALE)
            async with Ledger(tmp_path / "ledger.sqlite", clock=clock) as ledger:
                config = ClientConfig(
                    account_sid=sandbox.account_sid,
                    auth_token=sandbox.auth_token,
                    account_type="Mediapartners",
                    base_url=sandbox.base_url,
                )
                limiter = RateLimiter(config.rate_limit, clock=clock, store=ledger.counters)
                async with ReportExportClient(config, limiter=limiter, clock=clock) as client:
                    yield sandbox, client, ledger, postbacks


def api_calls(stats: dict[str, Any]) -> int:
    return sum(stats["calls"][name] for name in API_ENDPOINTS)


async def test_a_hundred_jobs_with_postbacks_cost_at_most_two_point_oh_five_calls_each(
    tmp_path: Path,
) -> None:
    async with scaled_run(tmp_path) as (sandbox, client, ledger, postbacks):
        run = {
            "client": client, "ledger": ledger, "exports": [ExportSpec("mp_action_listing_fast")],
            "start": date(2025, 1, 1), "end": date(2025, 4, 10), "out_dir": tmp_path / "out",
            "chunk": "1d", "postbacks": postbacks,
        }  # fmt: skip
        result = await backfill(**run)
        stats = sandbox.stats()
        # The jobs were never seen COMPLETED by a status call (postbacks woke their downloads):
        # the ledger still knows they are done, so the same run again costs nothing.
        entries = await ledger.entries()
        again = await backfill(**run)
        second = api_calls(sandbox.stats()) - api_calls(stats)
    assert {entry.status for entry in entries} == {JobStatus.COMPLETED}
    assert again.complete
    assert second == 0
    assert len(result.chunks) == 100
    assert result.complete
    assert stats["postbacks"]["delivered"] == 100
    assert api_calls(stats) / 100 <= 2.05
    assert stats["calls"]["ReportExport"] == 100
    assert stats["rate_limited"] == 0
    # Most downloads were started by a postback, within moments of its arrival.
    assert len(result.postback_latency) >= 90
    assert sorted(result.postback_latency)[len(result.postback_latency) // 2] < 0.5


async def test_two_backfills_sharing_one_receiver_both_get_their_wake_ups(tmp_path: Path) -> None:
    """Two backfills at once on one account (a client each, one ledger) and one receiver: each
    is woken by its own jobs' postbacks. A backfill that missed them would find its jobs with the
    safety net's first listing call, 600 sandbox seconds in: 21 calls for 10 chunks, over 2.05."""
    async with scaled_run(tmp_path) as (sandbox, client, ledger, postbacks):
        limiter = RateLimiter(client.config.rate_limit, clock=client.clock, store=ledger.counters)
        async with ReportExportClient(client.config, limiter=limiter, clock=client.clock) as other:
            runs = {
                "actions": (client, "mp_action_listing_fast", date(2025, 1, 1)),
                "performance": (other, "mp_performance_by_day", date(2025, 3, 1)),
            }
            results: dict[str, BackfillResult] = {}

            async def run(name: str) -> None:
                each, report, start = runs[name]
                results[name] = await backfill(
                    each, ledger, [ExportSpec(report)], start, start + timedelta(days=9),
                    out_dir=tmp_path / name, chunk="1d", postbacks=postbacks,
                )  # fmt: skip

            async with anyio.create_task_group() as group:
                for name in runs:
                    group.start_soon(run, name)
            stats = sandbox.stats()
    assert stats["postbacks"]["delivered"] == 20
    for name, result in results.items():
        assert result.complete, name
        assert len(result.chunks) == 10
        assert result.calls.get("Reports", 0) <= 1  # the report id's look-up, once a run
        per_chunk = {call: n for call, n in result.calls.items() if call != "Reports"}
        calls_per_chunk = sum(per_chunk.values()) / len(result.chunks)
        assert calls_per_chunk <= 2.05, (name, dict(result.calls))
        assert len(result.postback_latency) == 10, name  # every download woken by a postback
    assert stats["calls"]["ListJobs"] + stats["calls"]["GetJob"] == 0


@pytest.mark.parametrize("lost", [1.0, 0.5])
async def test_lost_postbacks_leave_the_safety_net_to_finish_the_run(
    tmp_path: Path, lost: float
) -> None:
    """Every postback lost, or half of them: postbacks that keep arriving for some jobs never
    put off the safety net that finds the others."""
    async with scaled_run(tmp_path, faults={"lost_postback": lost}, seed=4) as (
        sandbox, client, ledger, postbacks,
    ):  # fmt: skip
        result = await backfill(
            client, ledger, [ExportSpec("mp_action_listing_fast")],
            date(2025, 1, 1), date(2025, 1, 20), out_dir=tmp_path / "out", chunk="1d",
            postbacks=postbacks,
        )  # fmt: skip
        stats = sandbox.stats()
    assert result.complete
    assert stats["postbacks"]["lost"] + stats["postbacks"]["delivered"] == 20
    assert stats["postbacks"]["lost"] >= 5
    assert len(result.postback_latency) <= stats["postbacks"]["delivered"]
    # Polling only every 10 sandbox minutes: a handful of listing calls for all 20 jobs.
    assert stats["calls"]["ListJobs"] + stats["calls"]["GetJob"] <= 4


async def test_forged_postbacks_change_nothing_and_cost_at_most_one_call(tmp_path: Path) -> None:
    async with scaled_run(tmp_path, job_duration=(1200, 1200)) as (
        sandbox, client, ledger, postbacks,
    ):  # fmt: skip
        forged: dict[str, Any] = {}
        submitted = anyio.Event()
        # The early postback's whole effect: its job goes to the downloaders, whose one
        # Download answers 202, and back to `running`. Waiting for that event (not for a while)
        # means the checks below run once the postbacks have done all they will do.
        probed: dict[str, list[str]] = {}
        answered = anyio.Event()

        def on_event(event: ProgressEvent) -> None:
            if event.status == "submitted" and len(forged.setdefault("jobs", [])) < 3:
                forged["jobs"].append(event.job_id)
                if len(forged["jobs"]) == 3:
                    submitted.set()
            if event.kind == "chunk" and event.job_id in probed and event.status is not None:
                seen = probed[event.job_id]
                seen.append(event.status)
                if seen[-2:] == ["downloading", "running"]:
                    answered.set()

        async def forge() -> None:
            # Once the jobs exist, forge postbacks while they are RUNNING (20 sandbox minutes).
            with anyio.fail_after(20):
                await submitted.wait()
            entries = await ledger.unfinished()
            job_id = entries[0].job_id
            assert job_id is not None
            before = [e.kind for e in await ledger.history(job_id)]
            calls_before = dict(sandbox.stats()["calls"])
            base = postbacks.url.rsplit("/postback/", 1)[0]
            probed[job_id] = []
            async with aiohttp.ClientSession() as http:
                async with http.get(
                    base + "/postback/not-the-token-0000", params={"JobId": job_id}
                ) as a:
                    forged["wrong_token"] = a.status
                async with http.get(postbacks.url, params={"JobId": "no-such-job"}) as a:
                    forged["unknown"] = a.status
                async with http.get(
                    postbacks.url, params={"JobId": job_id, "Status": "COMPLETED"}
                ) as a:
                    forged["early"] = a.status
            with anyio.fail_after(20):
                await answered.wait()
            calls_after = dict(sandbox.stats()["calls"])
            forged["calls"] = {k: calls_after[k] - calls_before[k] for k in calls_after}
            forged["history_before"] = before
            forged["history_after"] = [e.kind for e in await ledger.history(job_id)]

        async with anyio.create_task_group() as group:
            group.start_soon(forge)
            result = await backfill(
                client, ledger, [ExportSpec("mp_action_listing_fast")],
                date(2025, 1, 1), date(2025, 1, 3), out_dir=tmp_path / "out", chunk="1d",
                postbacks=postbacks, on_event=on_event,
            )  # fmt: skip
    assert result.complete
    assert forged["wrong_token"] == 404
    assert forged["unknown"] == 200
    assert forged["early"] == 200
    # The early postback cost exactly one Download call (answered 202); the others none.
    spent = {name: n for name, n in forged["calls"].items() if n}
    assert spent == {"Download": 1}
    assert forged["history_after"] == forged["history_before"]
