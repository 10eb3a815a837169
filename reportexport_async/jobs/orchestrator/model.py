"""The values a backfill is made of and gives back: what to pull (`ExportSpec`), how
(`BackfillOptions`), each chunk's progress (`ChunkRun`), what changed (`ProgressEvent`) and the
outcome (`BackfillResult`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict

from ...core.chunking import Chunk, ChunkRule, parse_chunk_rule
from ...core.models import ExportRequest
from ...core.planning import Plan, PlannedChunk
from ...core.replay import ReplayPolicy
from ...core.tracking import TickPolicy
from ...destinations import FilesDestination, ManifestChunk
from ...errors import AccountUnavailable, ConfigurationError, LoadError
from ...ledger import LedgerEntry
from ...transport.postbacks import Postback

__all__ = [
    "FINAL_CHUNK_STATUSES",
    "BackfillChanges",
    "BackfillOptions",
    "BackfillResult",
    "ChunkRun",
    "ChunkStatus",
    "ExportSpec",
    "ProgressEvent",
]

ChunkStatus = Literal[
    "planned",
    "submitted",
    "running",
    "downloading",
    "elsewhere",
    "done",
    "failed",
    "pending",
    "deferred",
    "stuck",
]
#: `elsewhere`: another live worker holds the chunk's lease (it is followed through the ledger).
#: `pending`: waits for the daily quota's reset; `deferred`: waits for a moment the guide sets
#: (a replay is allowed only an hour after the submit); both carry `resets_at`, the time to run
#: again.
FINAL_CHUNK_STATUSES = ("done", "failed", "pending", "deferred", "stuck")
#: A chunk whose submit or download still fails after the session's retries (an outage, not a
#: bad request) gets this many rounds in all, the n-th after a pause of n x `ROUND_PAUSE`.
ROUNDS = 3
ROUND_PAUSE = 60.0  # seconds (client clock)
#: While jobs stay in flight with nothing finishing, say so this often (seconds, client clock).
NOTICE_EVERY = 300.0


def when(moment: datetime) -> str:
    """A moment for messages: to the second, with its UTC offset."""
    return moment.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ExportSpec:
    """One report to pull over the backfill's range: its id, filters and result format."""

    report_id: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    result_format: str = "CSV"

    def request(self, chunk: Chunk) -> ExportRequest:
        return ExportRequest(
            report_id=self.report_id,
            start=chunk.start,
            end=chunk.end,
            filters=dict(self.filters),
            result_format=self.result_format,
        )


@dataclass(frozen=True)
class BackfillOptions:
    """How a backfill runs; every field has a sensible default.

    - `chunk`: one export per chunk: `Nd` (`1d`, `7d`, ...), `week`, `month` or `auto` (a span
      from the rows per day seen, recorded in the ledger so later runs keep it);
      `row_target` is the rows `auto` aims a chunk at.
    - `submit_concurrency`, `download_concurrency`: submits and downloads at a time.
    - `dry_run`: plan and cost only, no call.
    - `wait_for_quota`: wait for the daily quota's reset instead of ending with chunks pending.
    - `wait_for_replays`: wait until a failed job's replay is allowed (an hour after its submit)
      instead of ending with the chunk deferred.
    - `merge`: also write `<out>/<report>.<ext>` from every chunk once all are done.
    - `max_replays`: replays of a failed job per run; `replay_policy`: the replay guard's rules.
    - `stuck_after`: a job still not final this long after its submit is reported stuck.
    - `tick`: the tracker's pace; `check_reports`: look report ids never accepted before up in
      the account's catalog first (one call, no quota; False: the server judges them);
      `today`: the account's day, when it is not today (tests)."""

    chunk: str | ChunkRule = "7d"
    row_target: int = 1_000_000
    submit_concurrency: int = 4
    download_concurrency: int = 4
    dry_run: bool = False
    wait_for_quota: bool = False
    wait_for_replays: bool = False
    merge: bool = False
    max_replays: int = 2
    stuck_after: timedelta = timedelta(hours=6)
    replay_policy: ReplayPolicy = field(default_factory=ReplayPolicy)
    tick: TickPolicy = field(default_factory=TickPolicy)
    check_reports: bool = True
    today: date | None = None

    def __post_init__(self) -> None:
        if self.download_concurrency < 1 or self.submit_concurrency < 1:
            raise ConfigurationError("concurrency", "concurrency limits must be at least 1")
        if self.max_replays < 0:
            raise ConfigurationError("max_replays", "must be 0 or more")
        if self.row_target < 1:
            raise ConfigurationError("row_target", "must be at least 1")
        if isinstance(self.chunk, str):
            try:
                parse_chunk_rule(self.chunk)
            except ValueError as exc:
                raise ConfigurationError("chunk", str(exc)) from None

    @property
    def rule(self) -> ChunkRule:
        return parse_chunk_rule(self.chunk) if isinstance(self.chunk, str) else self.chunk

    def but(self, **changes: Any) -> BackfillOptions:
        """A copy with `changes`; an unknown name is a `ConfigurationError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigurationError(unknown[0], "is not a backfill option")
        return dataclasses.replace(self, **changes) if changes else self


class BackfillChanges(TypedDict, total=False):
    """`BackfillOptions` fields as keyword arguments (`backfill(..., chunk="1d")`)."""

    chunk: str | ChunkRule
    row_target: int
    submit_concurrency: int
    download_concurrency: int
    dry_run: bool
    wait_for_quota: bool
    wait_for_replays: bool
    merge: bool
    max_replays: int
    stuck_after: timedelta
    replay_policy: ReplayPolicy
    tick: TickPolicy
    check_reports: bool
    today: date | None


@dataclass
class ChunkRun:
    """One chunk's progress and outcome."""

    planned: PlannedChunk
    status: ChunkStatus = "planned"
    job_id: str | None = None
    submitted_at: datetime | None = None
    records: int | None = None
    size: int | None = None
    sha256: str | None = None
    replays: int = 0
    submit_rounds: int = 1
    download_rounds: int = 1
    error: str | None = None
    resets_at: datetime | None = None
    probe: Postback | None = None  # set when a postback sent this chunk to the downloaders
    #: When its job was first made (a replay keeps it): where a listing by creation date finds it.
    created_at: datetime | None = None
    #: Where the file is when another worker downloaded it outside this run's folder.
    file: Path | None = None
    #: A refresh the replay guard refused: its rule (the chunk keeps the file it had).
    refused: str | None = None

    @property
    def label(self) -> str:
        return f"{self.planned.report_id} {self.planned.chunk}"

    def to_manifest(
        self, destination: FilesDestination, entry: LedgerEntry | None = None
    ) -> ManifestChunk:
        """The chunk's line in the manifest; `entry` (the ledger's) says when its data was
        made and downloaded."""
        known = entry if self.status == "done" else None
        return ManifestChunk(
            report=self.planned.report_id,
            filters={k: str(v) for k, v in self.planned.request.filters.items()},
            start=self.planned.chunk.start,
            end=self.planned.chunk.end,
            fingerprint=self.planned.fingerprint,
            status=self.status,
            job_id=self.job_id,
            rows=self.records,
            bytes=self.size,
            sha256=self.sha256,
            fetched_at=None if known is None else known.completed_at,
            downloaded_at=None if known is None else known.downloaded_at,
            final=None,
            replays=self.replays,
            error=self.error,
            until=self.resets_at,
            path=destination.relative(self.file or destination.root / self.planned.path),
        )


@dataclass(frozen=True)
class ProgressEvent:
    """What changed. `kind` is `duplicate` (an export given more than once, pulled once; before
    the plan), `plan`, `chunk` (a chunk's status changed), `quota` (the quota stopped submits;
    `until` is its reset), `retry` (a chunk's submit or download gets another round after an
    outage), `wait` (the run waits: `message` says for what, `until` until when), `error` (a
    tracker refresh failed), `stopped` (an account-wide failure stopped the run) or `loaded` (a
    chunk loaded into a destination beside the files: `rows` into `table` of `target`, or
    `status` failed and `message` says why)."""

    kind: str
    status: str | None = None
    report_id: str | None = None
    chunk: str | None = None
    job_id: str | None = None
    bytes: int = 0
    calls: Mapping[str, int] = field(default_factory=dict)
    quota_left: int | None = None
    message: str | None = None
    #: The `plan` event carries the whole plan (every chunk and its state), so a display knows
    #: the totals per report and the chunks that are already done before anything moves.
    plan: Plan | None = None
    #: `wait` events: when the wait ends (or the next look, for jobs in flight).
    until: datetime | None = None
    #: `loaded` events: the rows loaded, the destination's URL and the table (or file) in it.
    rows: int | None = None
    target: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class BackfillResult:
    plan: Plan
    chunks: tuple[ChunkRun, ...]
    manifest_path: Path | None
    dry_run: bool
    pending_resets_at: datetime | None
    #: The API calls this backfill made, by endpoint (not the client's earlier ones).
    calls: Mapping[str, int]
    merged: tuple[Path, ...] = ()
    #: Real seconds from a postback's arrival to the start of the download it caused.
    postback_latency: tuple[float, ...] = ()
    #: The earliest time a `deferred` chunk may go on (run the same backfill again then).
    deferred_until: datetime | None = None
    #: The account-wide failure that stopped the run (it is also raised, carrying this result).
    stopped: AccountUnavailable | None = None
    #: The first chunk that could not be loaded into the destination beside the files (`into`);
    #: `backfill` raises it once the run is over, carrying this result.
    load_error: LoadError | None = None
    #: The chunks whose load failed in this run (fingerprints).
    load_failed: frozenset[str] = frozenset()

    @property
    def counts(self) -> dict[str, int]:
        counter: Counter[str] = Counter(run.status for run in self.chunks)
        names = ("done", "failed", "pending", "deferred", "stuck")
        return {name: counter[name] for name in names}

    @property
    def complete(self) -> bool:
        return all(run.status == "done" for run in self.chunks)
