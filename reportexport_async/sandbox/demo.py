"""`python -m reportexport_async.sandbox.demo`: a first export through the built-in sandbox.

Starts the sandbox on loopback and walks one ReportExport job through the API the way the guide
describes it (submit, track, download), with plain aiohttp calls, printing each step and the
server-side call counts at the end. No credentials needed.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import sys
from datetime import timedelta

import aiohttp

from .server import Sandbox


async def demo(out: io.TextIOBase | None = None) -> dict[str, int]:
    write = (out or sys.stdout).write
    async with Sandbox(time_scale=60.0, job_duration=(30, 90), rows_per_day=40) as sandbox:
        root = sandbox.account_url("Mediapartners")
        token = base64.b64encode(f"{sandbox.account_sid}:{sandbox.auth_token}".encode()).decode()
        auth = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        end = sandbox.now().date() - timedelta(days=7)
        start = end - timedelta(days=6)
        write(f"sandbox listening on {sandbox.base_url} (1 real second = 1 sandbox minute)\n")
        async with aiohttp.ClientSession(headers=auth) as api, aiohttp.ClientSession() as storage:
            params = {"START_DATE": str(start), "END_DATE": str(end), "ResultFormat": "CSV"}
            async with api.get(f"{root}/ReportExport/mp_action_listing_fast", params=params) as r:
                ticket = await r.json()
            write(f"1. ReportExport {start}..{end}: {ticket['Status']} {ticket['QueuedUri']}\n")
            job_url = sandbox.base_url + ticket["QueuedUri"]
            while True:
                async with api.get(job_url) as r:
                    job = await r.json()
                write(f"2. GET /Jobs/{{Id}}: {job['Status']} {job['PercentageComplete']}%\n")
                if job["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                await asyncio.sleep(0.5)
            async with api.get(sandbox.base_url + job["ResultUri"], allow_redirects=False) as r:
                location = r.headers["Location"]
                write(
                    f"3. Download: HTTP {r.status} to a signed URL on {sandbox.signed_base_url}\n"
                )
            async with storage.get(location) as r:  # no Authorization on the other origin
                text = await r.text()
            rows = list(csv.reader(io.StringIO(text)))
            write(f"4. signed URL: HTTP {r.status}, {len(rows) - 1} rows; first: {rows[1][:4]}\n")
        calls = {name: n for name, n in sandbox.stats()["calls"].items() if n}
        write(f"server-side calls: {calls}\n")
        return calls


def main() -> int:
    asyncio.run(demo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
