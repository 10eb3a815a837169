"""The values of a sync: a `Dataset` kept current, the run's `SyncOptions`, and what a run
returns (`SyncResult`, a `DatasetResult` per dataset, a `SyncChunk` per chunk)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ...core.chunking import Chunk, parse_chunk_rule
from ...core.freshness import (
    DEFAULT_REFRESH_HOUR,
    DEFAULT_SETTLE_DAYS,
    ChunkFreshness,
    FreshnessPolicy,
)
from ...core.models import checked
from ...destinations import FilesDestination, IntoURL, ManifestChunk, parse_into
from ...errors import ConfigurationError
from ..orchestrator import ExportSpec

if TYPE_CHECKING:  # pragma: no cover
    from ...ledger.store import LedgerStore
    from ...transport.api import ReportExportClient
    from ...transport.config import ClientConfig
    from ...transport.server_clock import ServerClock

__all__ = [
    "KINDS",
    "Dataset",
    "DatasetResult",
    "SyncChunk",
    "SyncClient",
    "SyncOptions",
    "SyncResult",
]

#: The chunk verdicts a summary counts, and the outcomes of a run.
KINDS: tuple[ChunkFreshness, ...] = (
    "new",
    "history",
    "resume",
    "refresh",
    "deferred",
    "fresh",
    "final",
)


class SyncClient(Protocol):
    """What a sync uses of its client (`Client` is one): named here, so that the planners do
    not import the layer above them."""

    @property
    def api(self) -> ReportExportClient: ...
    @property
    def ledger(self) -> LedgerStore: ...
    @property
    def clock(self) -> ServerClock: ...
    @property
    def config(self) -> ClientConfig: ...


@dataclass(frozen=True)
class Dataset:
    """One dataset kept current: `reports` (same filters and format) from `first_day` (None: the
    reports' default date range) to the last complete day, in `chunk`s (`Nd`, `week` or
    `month`), in the folder `out`. `settle_days`: how long a day's data keeps changing;
    `refresh_hour`: the hour of the account's day from which the latest day is refreshed;
    `merge`: also keep `<out>/<report>.<ext>` whole. `into` (`duckdb:///PATH`,
    `parquet:///PATH`, relative to the working folder): also load every chunk into a typed
    destination beside the files, in a schema named after the dataset."""

    name: str
    reports: tuple[str, ...]
    out: Path
    first_day: date | None = None
    chunk: str = "1d"
    result_format: str = "CSV"
    filters: Mapping[str, str] = field(default_factory=dict)
    merge: bool = False
    settle_days: int = DEFAULT_SETTLE_DAYS
    refresh_hour: int = DEFAULT_REFRESH_HOUR
    into: str | IntoURL | None = None

    def __post_init__(self) -> None:
        def bad(setting: str, problem: str) -> ConfigurationError:
            return ConfigurationError(setting, problem, dataset=self.name)

        if isinstance(self.into, str):  # its path judged now, from the working folder
            try:
                object.__setattr__(self, "into", parse_into(self.into))
            except ConfigurationError as error:
                raise bad("into", error.problem) from None

        if isinstance(self.reports, str):
            object.__setattr__(self, "reports", (self.reports,))
        object.__setattr__(self, "reports", tuple(self.reports))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "result_format", str(self.result_format).upper())
        if not self.reports or not all(isinstance(r, str) and r for r in self.reports):
            raise bad("reports", "give at least one report id")
        if self.first_day is not None and (
            not isinstance(self.first_day, date) or isinstance(self.first_day, datetime)
        ):
            raise bad("first_day", f"must be a date such as 2025-01-31, got {self.first_day!r}")
        try:
            rule = parse_chunk_rule(self.chunk)
        except ValueError as exc:
            raise bad("chunk", str(exc)) from None
        if rule.kind == "auto":
            raise bad(
                "chunk",
                "'auto' changes its chunks as rows are learned, which would export settled days "
                "again; use Nd (e.g. 1d, 7d), week or month",
            )
        if not isinstance(self.settle_days, int) or self.settle_days < 0:
            raise bad(
                "settle_days", f"the settle window must be 0 days or more, got {self.settle_days!r}"
            )
        if not isinstance(self.refresh_hour, int) or not 0 <= self.refresh_hour <= 23:
            raise bad("refresh_hour", f"must be an hour from 0 to 23, got {self.refresh_hour!r}")
        day = Chunk(date(2000, 1, 1), date(2000, 1, 1))
        for spec in self.specs():  # the request is valid (format, filters) before any call
            # The request's field as the dataset names it (its report ids are `reports`).
            rename = {"report_id": "reports", "": "dataset"}
            checked(partial(spec.request, day), rename=rename, dataset=self.name)

    @property
    def policy(self) -> FreshnessPolicy:
        return FreshnessPolicy(self.settle_days, self.refresh_hour)

    def specs(self) -> list[ExportSpec]:
        return [ExportSpec(r, dict(self.filters), self.result_format) for r in self.reports]


@dataclass(frozen=True)
class SyncOptions:
    """`dry_run`: the plan and its cost by kind, no call. `wait_for_quota`: wait for the daily
    quota's reset instead of leaving chunks pending. `concurrency`: submits and downloads at a
    time. `check_reports`: look report ids never accepted before up in the account's catalog
    before any call that spends (one call, no quota; False: the server judges them)."""

    dry_run: bool = False
    wait_for_quota: bool = False
    concurrency: int = 4
    check_reports: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency", "must be at least 1")


@dataclass(frozen=True)
class SyncChunk:
    """One chunk after a run: the verdict (`kind`) and its `outcome` (`done`, `pending`,
    `failed`, `deferred`, `stuck`, or `planned` in a dry run), what the ledger holds of it."""

    report_id: str
    start: date | None
    end: date | None
    fingerprint: str
    kind: ChunkFreshness
    outcome: str
    reason: str
    path: Path
    until: datetime | None = None
    job_id: str | None = None
    #: When its data was made (its job's completion, on the server's clock) and downloaded.
    fetched_at: datetime | None = None
    downloaded_at: datetime | None = None
    rows: int | None = None
    size: int | None = None
    sha256: str | None = None
    final: bool = False

    def to_manifest(
        self, destination: FilesDestination, filters: Mapping[str, str]
    ) -> ManifestChunk:
        return ManifestChunk(
            report=self.report_id,
            filters=dict(filters),
            start=self.start,
            end=self.end,
            fingerprint=self.fingerprint,
            kind=self.kind,
            status=self.outcome,
            error=self.reason,
            until=self.until,
            job_id=self.job_id,
            fetched_at=self.fetched_at,
            downloaded_at=self.downloaded_at,
            rows=self.rows,
            bytes=self.size,
            sha256=self.sha256,
            final=self.final,
            path=destination.relative(self.path),
        )


@dataclass(frozen=True)
class DatasetResult:
    dataset: Dataset
    today: date
    last_day: date
    chunks: tuple[SyncChunk, ...]
    dry_run: bool
    merged: tuple[Path, ...] = ()
    manifest_path: Path | None = None
    pending_resets_at: datetime | None = None
    deferred_until: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Chunks by verdict (`new`, `history`, `resume`, `refresh`, `deferred`, `fresh`,
        `final`), and by outcome (`pending`, `failed`, `stuck`) when not done."""
        counter: Counter[str] = Counter(c.kind for c in self.chunks)
        counts: dict[str, int] = {kind: counter[kind] for kind in KINDS}
        outcomes = Counter(c.outcome for c in self.chunks)
        for name in ("pending", "failed", "stuck"):
            counts[name] = outcomes[name]
        return counts

    @property
    def cost(self) -> dict[str, int]:
        """What the run spends (a dry run: would spend) by kind: submits of new days, replays of
        the settle window, submits of history, and jobs in flight to finish."""
        counts = self.counts
        return {
            "new_submits": counts["new"],
            "refresh_replays": counts["refresh"],
            "history_submits": counts["history"],
            "resumed": counts["resume"],
        }


@dataclass(frozen=True)
class SyncResult:
    datasets: tuple[DatasetResult, ...]
    #: The API calls this run made, by endpoint.
    calls: Mapping[str, int]
    #: Seconds the server's clock was ahead of this machine's (every moment is the server's).
    server_offset: float
    #: Today's ReportExport quota left when the run ended (for a dry run: when it was planned;
    #: None: no daily limit).
    quota_left: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for result in self.datasets:
            total.update(result.counts)
        return {name: total[name] for name in (*KINDS, "pending", "failed", "stuck")}

    @property
    def complete(self) -> bool:
        return all(c.outcome in ("done", "deferred") for r in self.datasets for c in r.chunks)
