"""The CPU of the ledger's per-account look-ups on a ledger shared by many accounts: 1,000 accounts
x 10 exports of one report in a fresh SQLite ledger, then, for every account, the plan's and the
catalog check's `entries(report_id, account=...)` and a `find(job_id, account=...)` that finds
nothing. Prints the CPU time (`time.process_time`, all threads) of each series of look-ups.

    .venv/bin/python -m benchmarks.account_lookups

Run it from two trees (each from its own root) to set two versions of the ledger side by side.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import date
from pathlib import Path

from reportexport_async.ledger import Ledger

ACCOUNTS, EXPORTS = 1000, 10
ORIGIN = "http://127.0.0.1:1"


def canonical(sid: str, day: int) -> str:
    return (
        f'{{"account_sid":"{sid}","account_type":"Mediapartners","filters":[],"format":"CSV",'
        f'"origin":"{ORIGIN}","report_id":"r","start":"2025-01-{day:02d}"}}'
    )


async def measure(path: Path) -> tuple[float, float]:
    async with Ledger(path) as ledger:
        for account in range(ACCOUNTS):
            days = [date(2025, 1, n) for n in range(1, EXPORTS + 1)]
            await asyncio.gather(
                *(
                    ledger.claim(
                        f"{account:04d}-{day.day}",
                        canonical(f"IR{account}", day.day),
                        endpoint="ReportExport",
                        report_id="r",
                        range_start=day,
                        range_end=day,
                        result_format="CSV",
                    )
                    for day in days
                )
            )
        names = [f"{ORIGIN}/Mediapartners/IR{a}" for a in range(ACCOUNTS)]
        started = time.process_time()
        for name in names:
            if len(await ledger.entries("r", account=name)) != EXPORTS:
                raise AssertionError(f"{name}: not {EXPORTS} entries")
        entries = time.process_time() - started
        started = time.process_time()
        for name in names:
            await ledger.find("no-such-job", account=name)
        return entries, time.process_time() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        entries, find = asyncio.run(measure(Path(scratch) / "ledger.sqlite"))
    print(
        f"{ACCOUNTS} accounts x {EXPORTS} exports: entries(report, account=) x{ACCOUNTS}: "
        f"{entries * 1000:.0f} ms CPU; find(job, account=) x{ACCOUNTS}: {find * 1000:.0f} ms CPU"
    )


if __name__ == "__main__":
    main()
