"""Report ids checked against the account's report catalog before the first submit, so an unknown
or not API-accessible id is refused (`UnknownReport`) without spending a ReportExport.

- A report id the ledger has seen accepted (a job of it, for this account) needs no look-up: the
  server took it once.
- The catalog is one `GET /Reports` call (docs/api-facts.md §1d), which counts in the hourly
  bucket only, never in the daily ReportExport quota (§5). A client keeps it for `CATALOG_TTL`
  on its own clock, so concurrent exports and the runs of a long-lived client ask once; the
  command line also keeps it for a day in the user's cache folder (shared with
  `reportexport reports`) and hands it over with `remember`.
- Credentials the server refuses (401) or a host that cannot be reached raise their error at the
  catalog call (a run stops there, `AccountUnavailable`): every call would fail alike.
- A catalog that cannot be read otherwise (a token without access to it, a server or account type
  that does not offer it, a failure) or that is empty decides nothing: the server judges the
  report at its first submit (the orchestrator submits one chunk of such a report alone, so a
  wrong id costs one call, not one per chunk). Such a catalog is not asked for again for
  `UNREADABLE_TTL`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

import anyio

from ..core.models import Report
from ..core.planning import unknown_reports
from ..core.responses import account_problem
from ..errors import Forbidden, ReportExportError, UnknownReport
from ..ledger.store import LedgerStore
from ..transport.api import ReportExportClient

__all__ = ["CATALOG_TTL", "UNREADABLE_TTL", "check_reports", "remember", "remembered", "unproven"]

log = logging.getLogger("reportexport_async.jobs.catalog")

#: How long a catalog is trusted: it changes rarely, and a call is a call.
CATALOG_TTL = timedelta(days=1)
#: How long a catalog that could not be read is not asked for again.
UNREADABLE_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class _Kept:
    fetched_at: datetime
    reports: tuple[Report, ...] | None  # None: it could not be read


_KEPT: WeakKeyDictionary[ReportExportClient, _Kept] = WeakKeyDictionary()
_LOCKS: WeakKeyDictionary[ReportExportClient, anyio.Lock] = WeakKeyDictionary()


def remember(api: ReportExportClient, reports: Sequence[Report]) -> None:
    """Give `api` a catalog read elsewhere (the command line's cache), as read now."""
    _KEPT[api] = _Kept(api.clock.now(), tuple(reports))


def remembered(api: ReportExportClient) -> tuple[Report, ...] | None:
    """The catalog `api` holds and still trusts, if any (None also when it could not be read)."""
    kept = _KEPT.get(api)
    if kept is None or kept.reports is None:
        return None
    if api.clock.now() - kept.fetched_at > CATALOG_TTL:
        return None
    return kept.reports


async def account_catalog(api: ReportExportClient) -> tuple[Report, ...] | None:
    """The account's catalog: kept, else one call. None when it cannot be read."""
    lock = _LOCKS.setdefault(api, anyio.Lock())
    async with lock:  # concurrent exports of new reports ask once
        kept = _KEPT.get(api)
        now = api.clock.now()
        if kept is not None:
            ttl = CATALOG_TTL if kept.reports is not None else UNREADABLE_TTL
            if now - kept.fetched_at <= ttl:
                return kept.reports
        try:
            reports: tuple[Report, ...] | None = await api.reports()
        except ReportExportError as error:
            _stop_if_account_wide(error)
            log.warning("the report catalog could not be read (%s); the server will judge", error)
            reports = None
        _KEPT[api] = _Kept(now, reports)
        return reports


def _stop_if_account_wide(error: ReportExportError) -> None:
    """Credentials refused (401) or a host that cannot be reached fail every call alike: the
    error is raised here, before a submit. A 403 may be a scoped token that lacks only the
    catalog (docs/api-facts.md §5): the server judges the report at its submit."""
    if account_problem(error) is not None and not isinstance(error, Forbidden):
        raise error


async def unproven(
    api: ReportExportClient, ledger: LedgerStore, report_ids: Iterable[str]
) -> list[str]:
    """The report ids the server has never accepted for `api`'s account (no job of theirs in
    the ledger), each once, in their first order."""
    account = api.config.account_key
    found = []
    for report_id in dict.fromkeys(report_ids):
        entries = await ledger.entries(report_id=report_id, account=account)
        if not any(entry.job_id for entry in entries):
            found.append(report_id)
    return found


async def check_reports(
    api: ReportExportClient,
    ledger: LedgerStore,
    report_ids: Iterable[str],
    *,
    setting: str,
    dataset: str | None = None,
) -> list[str]:
    """Refuse (`UnknownReport`, naming `setting`) the report ids the account's catalog does not
    offer, before any ReportExport call. Ids the ledger has seen accepted cost nothing; the
    others cost at most one catalog call a day. Returns the ids the server has never accepted
    (those the catalog could not vouch for are still to be proven by their first submit)."""
    new = await unproven(api, ledger, report_ids)
    if not new:
        return new
    catalog = await account_catalog(api)
    problems = unknown_reports(new, catalog) if catalog else {}
    if problems:
        raise UnknownReport(setting, problems, dataset=dataset)
    return new
