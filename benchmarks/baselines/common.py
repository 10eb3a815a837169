"""What every baseline shares: one aiohttp session with the Basic header, sleeps in sandbox time,
the answer to a 429 that any HTTP client library gives (wait `Retry-After`, try again), and the
calls of the guide (submit, status, the Download's 302, the signed URL)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

__all__ = [
    "Api",
    "Chunk",
    "QuotaRefused",
    "backoff",
    "every",
    "fetch_to_file",
    "finish_to_file",
    "plan",
    "sandbox_clock",
]

PERSONA = "Mediapartners"
CHUNK = 1 << 20
#: A 429 announcing a wait longer than this is the daily quota, not the hourly bucket: a client
#: library does not sleep through it.
LONGEST_RETRY = 3600.0


class QuotaRefused(Exception):
    """A 429 whose `Retry-After` is longer than an hour: the daily ReportExport quota."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"quota refused; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Chunk:
    report: str
    start: date
    end: date

    def path(self, out: Path) -> Path:
        return out / self.report / f"{self.start.isoformat()}_{self.end.isoformat()}.csv"


def plan(spec: dict[str, Any], days: int) -> list[Chunk]:
    """Every report x `days`-day piece of [start, end], in date order within each report."""
    first, last = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
    chunks = []
    for report in spec["reports"]:
        day = first
        while day <= last:
            end = min(last, day + timedelta(days=days - 1))
            chunks.append(Chunk(report, day, end))
            day = end + timedelta(days=1)
    return chunks


def every(seconds: float) -> Iterator[float]:
    """A fixed polling interval."""
    return itertools.repeat(seconds)


def backoff(first: float, growth: float, cap: float) -> Iterator[float]:
    """A polling interval growing from `first` by `growth` up to `cap`."""
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * growth)


async def sandbox_clock(session: aiohttp.ClientSession, base_url: str) -> tuple[datetime, float]:
    """The sandbox's time and time scale (a control endpoint: not an API call, not counted)."""
    async with session.get(f"{base_url}/_sandbox/stats") as response:
        response.raise_for_status()
        stats = await response.json()
    return datetime.fromisoformat(stats["now"]), float(stats["time_scale"])


class Api:
    """The guide's calls with plain aiohttp; sleeps are in sandbox seconds."""

    def __init__(self, session: aiohttp.ClientSession, spec: dict[str, Any], scale: float) -> None:
        self.session = session
        self.base = str(spec["base_url"])
        self.root = f"{self.base}/{PERSONA}/{spec['account_sid']}"
        self.headers = {
            "Authorization": aiohttp.encode_basic_auth(spec["account_sid"], spec["auth_token"])
        }
        self.scale = scale
        self.rate_limited = 0  # 429 answers received

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.scale)

    async def _get(self, url: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, JSON body or the Location header) of a GET, after waiting out 429s."""
        while True:
            async with self.session.get(
                url, params=params, headers=self.headers, allow_redirects=False
            ) as response:
                if response.status == 429:
                    self.rate_limited += 1
                    retry = float(response.headers.get("Retry-After", "60"))
                    if retry > LONGEST_RETRY:
                        raise QuotaRefused(retry)
                elif response.status == 302:
                    return 302, response.headers["Location"]
                else:
                    response.raise_for_status()
                    return response.status, await response.json()
            await self.sleep(retry)

    async def submit(self, chunk: Chunk) -> str:
        """GET ReportExport; the job's URL."""
        params = {
            "START_DATE": chunk.start.isoformat(),
            "END_DATE": chunk.end.isoformat(),
            "ResultFormat": "CSV",
        }
        _, ticket = await self._get(f"{self.root}/ReportExport/{chunk.report}", params)
        return self.base + str(ticket["QueuedUri"])

    async def wait(self, job_url: str, pauses: Iterable[float]) -> dict[str, Any]:
        """Sleep, GET /Jobs/{Id}, until COMPLETED."""
        for pause in pauses:
            await self.sleep(pause)
            _, job = await self._get(job_url)
            if job["Status"] == "COMPLETED":
                return dict(job)
            if job["Status"] in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"job {job['Id']} ended {job['Status']}")
        raise RuntimeError("polling schedule ended")

    async def signed_url(self, job: dict[str, Any]) -> str:
        """GET Download: the 302's Location (the signed URL, fetched without credentials)."""
        status, location = await self._get(self.base + str(job["ResultUri"]))
        if status != 302:
            raise RuntimeError(f"Download: HTTP {status}")
        return str(location)

    async def download_into_memory(self, job: dict[str, Any]) -> bytes:
        async with self.session.get(await self.signed_url(job)) as response:
            response.raise_for_status()
            return await response.read()

    async def download_to_file(self, job: dict[str, Any], path: Path) -> int:
        received = 0
        async with self.session.get(await self.signed_url(job)) as response:
            response.raise_for_status()
            with open(path, "wb") as handle:
                async for block in response.content.iter_chunked(CHUNK):
                    handle.write(block)
                    received += len(block)
        return received

    async def advance(self, seconds: float) -> None:
        """Move the sandbox's clock (a control endpoint): the harness's way of letting a day
        pass between two scheduled runs of a connector."""
        async with self.session.post(
            f"{self.base}/_sandbox/advance", params={"seconds": f"{seconds:.3f}"}
        ) as response:
            response.raise_for_status()


async def fetch_to_file(api: Api, chunk: Chunk, out: Path, pauses: Iterable[float]) -> int:
    """One chunk as a connector does it: submit, poll, stream the result to its file."""
    return await finish_to_file(api, await api.submit(chunk), chunk, out, pauses)


async def finish_to_file(
    api: Api, job_url: str, chunk: Chunk, out: Path, pauses: Iterable[float]
) -> int:
    """Poll a submitted chunk's job, then stream its result to the chunk's file."""
    job = await api.wait(job_url, pauses)
    path = chunk.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return await api.download_to_file(job, path)
