"""Where the command line keeps its files when no option says: the user's data folder for the
ledgers, the user's cache folder for cached look-ups (platformdirs: `$XDG_DATA_HOME` and
`$XDG_CACHE_HOME` on Linux, `~/Library/Application Support` on macOS, `%LOCALAPPDATA%` on
Windows). So a cron job started in any folder finds the same ledger, and the jobs it remembers.

A ledger left by earlier versions in `.reportexport/` of the current folder is still used when
it is there (with a notice saying where it is and how to move it), so no job is forgotten.

The rule itself is the ledger's (`ledger.location`): the library's `Ledger()` and `Client()`
default to the same file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import platformdirs

from ..ledger import DEFAULT_LEDGER_PATH
from ..ledger.location import APP, data_folder
from ..ledger.location import default_ledger as default_ledger_file
from ..transport.config import ClientConfig

__all__ = [
    "LEGACY_LEDGER",
    "LEGACY_SANDBOX_LEDGER",
    "cache_folder",
    "data_folder",
    "read_catalog",
    "resolve_ledger",
    "write_catalog",
]

#: Where versions before the data folder kept the ledgers (relative to the current folder).
LEGACY_LEDGER = DEFAULT_LEDGER_PATH
LEGACY_SANDBOX_LEDGER = DEFAULT_LEDGER_PATH.with_name("sandbox-ledger.sqlite")


def cache_folder() -> Path:
    return platformdirs.user_cache_path(APP, appauthor=False)


def resolve_ledger(
    given: Path | str | None, *, sandbox: bool = False, notify: Callable[[str], None]
) -> Path | str:
    """`--ledger` as given, else the default: the legacy one in the current folder when it
    exists (telling `notify`), else the one in the user's data folder."""
    if given is not None:
        return given
    found = default_ledger_file((LEGACY_SANDBOX_LEDGER if sandbox else LEGACY_LEDGER).name)
    notice = found.notice("--ledger {}")
    if notice is not None:
        notify(notice)
    return found.path


# -- the report catalog's cache (`reportexport reports`) -----------------------------------------

#: How long `reports` trusts its cached catalog: a catalog changes rarely, and a call is a call.
REPORTS_CACHE_TTL = timedelta(days=1)


def _catalog_file(config: ClientConfig) -> Path:
    """One cache file per origin and account (the SID hashed: no account id in a file name)."""
    key = hashlib.sha256(f"{config.base_url}|{config.account_sid}".encode()).hexdigest()[:24]
    return cache_folder() / "reports" / f"{key}.json"


def read_catalog(config: ClientConfig) -> list[dict[str, Any]] | None:
    """The cached catalog, when it is younger than `REPORTS_CACHE_TTL` and readable."""
    path = _catalog_file(config)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        fetched = datetime.fromisoformat(saved["fetched_at"])
        reports = saved["reports"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if datetime.now(UTC) - fetched > REPORTS_CACHE_TTL or not isinstance(reports, list):
        return None
    return reports


def write_catalog(config: ClientConfig, reports: list[dict[str, Any]]) -> None:
    """Best effort: a cache that cannot be written costs a call next time, nothing else."""
    path = _catalog_file(config)
    payload = {"fetched_at": datetime.now(UTC).isoformat(), "reports": reports}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        part.write_text(json.dumps(payload), encoding="utf-8")
        part.replace(path)
    except OSError:
        pass
