"""Backfill planning, pure: which chunks are done, which jobs to re-attach to, what is new, what
it will cost, and where each file goes. Decided before any call, from the ledger's facts that
the orchestrator gathered."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import Literal

from .chunking import Chunk
from .models import ExportRequest, JobStatus, Report
from .requests import encode_value

__all__ = [
    "ChunkState",
    "Known",
    "Plan",
    "PlanCost",
    "PlannedChunk",
    "chunk_path",
    "default_range_path",
    "export_folder",
    "output_key",
    "plan_chunks",
    "safe_name",
    "unknown_reports",
]

ChunkState = Literal["done", "attach", "new"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name part from `text`: letters, digits, `.`, `_`, `-`; never empty, `.` or `..`,
    never hidden. Names come from the plan, never from the server (a name the server chose could
    escape the output folder)."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "_"
    return cleaned[:120]


def export_folder(request: ExportRequest) -> str:
    """`<report>`, or `<report>__<8 hex>` when filters are set, so two exports of one report
    with different filters never write to the same files."""
    name = safe_name(request.report_id)
    if not request.filters:
        return name
    text = "&".join(f"{k}={encode_value(v)}" for k, v in sorted(request.filters.items()))
    return f"{name}__{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def chunk_path(request: ExportRequest, chunk: Chunk) -> PurePosixPath:
    """`<report>/<start>_<end>.<ext>`, relative to the output folder."""
    extension = request.result_format.lower()
    return PurePosixPath(export_folder(request), f"{chunk.start}_{chunk.end}.{extension}")


def default_range_path(request: ExportRequest, day: date) -> PurePosixPath:
    """`<report>/default-range_<day>.<ext>`, relative to the output folder: an export without
    dates is a new job only on a new day of the account (the guide's rule 5, docs/guide.md)."""
    extension = request.result_format.lower()
    return PurePosixPath(export_folder(request), f"default-range_{day}.{extension}")


def output_key(request: ExportRequest) -> str:
    """The files an export writes (its folder of chunks, and its merged file), as a key compared
    without case: on a case-insensitive file system (macOS, Windows) `R/` and `r/` are one
    folder. Two different exports with one key would overwrite each other's files."""
    return f"{export_folder(request)}.{request.result_format.lower()}".casefold()


@dataclass(frozen=True, slots=True)
class Known:
    """What the ledger says about a fingerprint."""

    job_id: str | None
    status: JobStatus | None
    file_intact: bool


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    request: ExportRequest
    chunk: Chunk
    fingerprint: str
    canonical: str
    path: PurePosixPath
    state: ChunkState
    job_id: str | None = None

    @property
    def report_id(self) -> str:
        return self.request.report_id


@dataclass(frozen=True, slots=True)
class PlanCost:
    """What a run will spend: submits (ReportExport quota), downloads, an estimate of status
    calls, and how many days of quota the submits need (today's remainder first)."""

    chunks: int
    done: int
    reattach: int
    submits: int
    downloads: int
    status_calls_estimate: int
    quota_days: int
    quota_left_today: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    chunks: tuple[PlannedChunk, ...]
    cost: PlanCost

    def by_state(self, state: ChunkState) -> list[PlannedChunk]:
        return [chunk for chunk in self.chunks if chunk.state == state]


def _state(known: Known | None) -> ChunkState:
    if known is None or known.job_id is None:
        return "new"
    if known.status is JobStatus.COMPLETED and known.file_intact:
        return "done"
    return "attach"


def plan_chunks(
    items: Sequence[tuple[ExportRequest, Chunk, str, str]],
    known: Mapping[str, Known],
    *,
    quota_left_today: int | None,
    daily_limit: int | None,
    ticks_per_batch: int = 20,
    page_size: int = 1000,
) -> Plan:
    """`items` are (request, chunk, fingerprint key, canonical) in the order they will run."""
    planned = []
    for request, chunk, key, canonical in items:
        fact = known.get(key)
        state = _state(fact)
        planned.append(
            PlannedChunk(
                request=request,
                chunk=chunk,
                fingerprint=key,
                canonical=canonical,
                path=chunk_path(request, chunk),
                state=state,
                job_id=None if fact is None else fact.job_id,
            )
        )
    submits = sum(1 for p in planned if p.state == "new")
    reattach = sum(1 for p in planned if p.state == "attach")
    done = len(planned) - submits - reattach
    if submits == 0:
        quota_days = 0
    elif daily_limit is None or daily_limit <= 0:
        quota_days = 1
    else:
        today = daily_limit if quota_left_today is None else max(0, quota_left_today)
        later = max(0, submits - today)
        quota_days = (1 if today > 0 else 0) + math.ceil(later / daily_limit)
    batches = max(quota_days, 1 if reattach else 0)
    tracked = submits + reattach
    # One listing call per tick covers every job in flight (a page holds `page_size`).
    status_calls = (
        batches * ticks_per_batch * max(1, math.ceil(tracked / page_size)) if tracked else 0
    )
    return Plan(
        chunks=tuple(planned),
        cost=PlanCost(
            chunks=len(planned),
            done=done,
            reattach=reattach,
            submits=submits,
            downloads=submits + reattach,
            status_calls_estimate=status_calls,
            quota_days=quota_days,
            quota_left_today=quota_left_today,
        ),
    )


def unknown_reports(report_ids: Sequence[str], catalog: Sequence[Report]) -> dict[str, str]:
    """The report ids the catalog (`GET /Reports`) does not offer for export, each with why.

    A report matches by its `Id` or by the last segment of its ReportExport path
    (`DeferredApiRunUri`: the brand API takes a numeric id or a handle, docs/api-facts.md §1a); only
    `ApiAccessible` reports can be exported (§1d), and an unset flag is given the benefit of the
    doubt (the server is the judge)."""
    offered: dict[str, Report] = {}
    for report in catalog:
        offered.setdefault(report.id, report)
        if report.deferred_api_run_uri:
            tail = report.deferred_api_run_uri.rstrip("/").rpartition("/")[2]
            offered.setdefault(tail.partition("?")[0], report)
    problems: dict[str, str] = {}
    for report_id in dict.fromkeys(report_ids):
        found = offered.get(report_id)
        if found is None:
            near = sorted(
                r.id for r in catalog if r.api_accessible is not False and _near(report_id, r.id)
            )
            hint = f"; did you mean {', '.join(near[:3])}?" if near else ""
            problems[report_id] = f"the account's report catalog has no report {report_id!r}{hint}"
        elif found.api_accessible is False:
            problems[report_id] = (
                f"report {report_id!r} ({found.name or found.id}) is not API accessible: "
                "only reports with ApiAccessible true can be exported"
            )
    return problems


def _near(wanted: str, candidate: str) -> bool:
    a, b = wanted.lower(), candidate.lower()
    return a in b or b in a or (len(a) > 3 and a[:4] == b[:4])
