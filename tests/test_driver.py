"""The driver (`reportexport_async.jobs.driver`): the one writer of the ledger for an export, also
when a cancellation arrives right after a download's rename; and one export's calls and ledger
history as the lifecycle table orders them, against the sandbox."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from reportexport_async import ExportRequest
from reportexport_async.jobs import driver as driver_module
from reportexport_async.jobs.exports import fetch_export, fingerprint_for, submit_once
from reportexport_async.transport.downloads import DownloadResult, Receipt

from .conftest import simulated_account

REPORT = "mp_action_listing_fast"
REQUEST = ExportRequest(report_id=REPORT, start=date(2026, 5, 1), end=date(2026, 5, 3))


async def test_a_cancellation_right_after_the_rename_still_records_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "actions.csv"
    scope = anyio.CancelScope()

    class CancelledOnceSaved(Receipt):
        """Cancels the caller the moment the download hands its result over (in the rename's
        shield): the cancellation arrives at the first pause after it."""

        def __setattr__(self, name: str, value: Any) -> None:
            super().__setattr__(name, value)
            if name == "result" and value is not None:
                scope.cancel()

    monkeypatch.setattr(driver_module, "Receipt", CancelledOnceSaved)
    async with simulated_account(tmp_path) as (_, api, ledger):
        print_ = fingerprint_for(api, REQUEST)
        job_id = await submit_once(api, ledger, REQUEST, print_)
        await api.wait(job_id)
        real_download = api.download

        async def download_then_pause(*args: Any, **kwargs: Any) -> DownloadResult:
            result = await real_download(*args, **kwargs)
            await anyio.lowlevel.checkpoint()  # a pause after the rename (a layer above may take)
            return result

        monkeypatch.setattr(api, "download", download_then_pause)
        with scope:
            await driver_module.download_recorded(api, ledger, print_.key, job_id, dest)
        entry = await ledger.get(print_.key)
    assert scope.cancelled_caught  # the download did not return: it was cancelled
    assert dest.exists()
    assert entry is not None
    assert entry.file_path == dest
    assert entry.file_sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()


async def test_one_export_follows_the_table_and_a_second_costs_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "actions.csv"
    async with simulated_account(tmp_path) as (sandbox, api, ledger):
        first = await fetch_export(api, ledger, REQUEST, dest)
        calls = sandbox.stats()["total_calls"]
        again = await fetch_export(api, ledger, REQUEST, dest)
        history = [event.kind for event in await ledger.history(first.fingerprint)]
        assert sandbox.stats()["total_calls"] == calls  # cached: no call at all
    assert (first.action, first.submitted, again.action, again.submitted) == (
        "downloaded", True, "cached", False,
    )  # fmt: skip
    # Written ahead: the intent before the submit, the job id after it, then the file.
    assert history.index("intent") < history.index("submitted") < history.index("download")
