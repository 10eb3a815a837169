"""Baseline (c), `resubmit`: a careful connector that keeps its job ids in memory only. The
library's chunks (7 days), all at once: submit, poll `GET /Jobs/{Id}` 5 s growing by 1.5 to 60 s
(the library's own single-job schedule), stream the result to disk. It remembers nothing between
runs, so a second run submits every chunk again (the sandbox, like impact.com, answers an
identical request with the existing job, and still counts it against the quota)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .common import Api, backoff, fetch_to_file, plan


async def run(api: Api, spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    chunks = plan(spec, int(spec["chunk_days"]))
    sizes = await asyncio.gather(
        *(fetch_to_file(api, chunk, out, backoff(5.0, 1.5, 60.0)) for chunk in chunks)
    )
    return {"chunks": len(chunks), "bytes": sum(sizes), "quota_days": 1}
