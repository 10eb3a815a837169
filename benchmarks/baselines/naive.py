"""Baseline (a), `naive`: the guide's steps, written the obvious way. The library's chunks (7
days), all at once: submit, poll `GET /Jobs/{Id}` every 5 s until COMPLETED, read the whole
result into memory, write it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .common import Api, Chunk, every, plan

POLL_SECONDS = 5.0  # the fixed interval of the most used generic async-job framework


async def run(api: Api, spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    chunks = plan(spec, int(spec["chunk_days"]))

    async def one(chunk: Chunk) -> int:
        job = await api.wait(await api.submit(chunk), every(POLL_SECONDS))
        body = await api.download_into_memory(job)
        path = chunk.path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return len(body)

    sizes = await asyncio.gather(*(one(chunk) for chunk in chunks))
    return {"chunks": len(chunks), "bytes": sum(sizes), "quota_days": 1}
