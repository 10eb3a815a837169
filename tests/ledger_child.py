"""A second process for the ledger tests: `python -m tests.ledger_child JSON`.

JSON holds the sandbox's base_url, account_sid, auth_token, the ledger path, the destination and
the `mode`: `fetch` (run `fetch_export` and print its outcome as JSON), `die-before-download`
(submit and wait, then SIGKILL this process where the download would start), or `charge N`
(spend N ReportExport quota units through a RateLimiter backed by the ledger; print how many
fitted).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import date
from pathlib import Path
from typing import Any

from reportexport_async import (
    ClientConfig,
    ExportRequest,
    PollPolicy,
    QuotaExhausted,
    RateLimiter,
    RateLimitPolicy,
    ReportExportClient,
)
from reportexport_async.jobs.exports import fetch_export
from reportexport_async.ledger.store import open_ledger


def request_of(args: dict[str, Any]) -> ExportRequest:
    return ExportRequest(
        report_id=args.get("report_id", "mp_action_listing_fast"),
        start=date.fromisoformat(args.get("start", "2026-01-01")),
        end=date.fromisoformat(args.get("end", "2026-01-03")),
    )


async def main(args: dict[str, Any]) -> None:
    config = ClientConfig(
        account_sid=args["account_sid"],
        auth_token=args["auth_token"],
        account_type="Mediapartners",
        base_url=args["base_url"],
        poll=PollPolicy(initial=0.05, maximum=0.2),
    )
    async with open_ledger(args["ledger"]) as ledger:
        policy = RateLimitPolicy(daily_report_export=args.get("daily_limit", 100))
        limiter = RateLimiter(policy, store=ledger.counters)
        async with ReportExportClient(config, limiter=limiter) as client:
            mode = args["mode"]
            if mode == "charge":
                fitted = 0
                for number in range(args["count"]):
                    request = ExportRequest(
                        report_id="mp_action_listing_fast",
                        start=date(2026, 2, 1),
                        end=date(2026, 2, 1),
                        filters={"SUBAID": f"{args['tag']}{number}"},
                    )
                    try:
                        await client.export(request)
                    except QuotaExhausted:
                        break
                    fitted += 1
                print(json.dumps({"fitted": fitted}))
                return
            if mode == "die-before-download":

                async def die(*_: object, **__: object) -> None:
                    os.kill(os.getpid(), signal.SIGKILL)

                client.download = die  # type: ignore[method-assign]
            outcome = await fetch_export(client, ledger, request_of(args), Path(args["dest"]))
            print(
                json.dumps(
                    {
                        "action": outcome.action,
                        "submitted": outcome.submitted,
                        "job_id": outcome.job_id,
                        "sha256": outcome.sha256,
                    }
                )
            )


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
