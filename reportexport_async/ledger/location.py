"""Where a ledger lives when nobody names one: `ledger.sqlite` in the user's data folder
(platformdirs: `$XDG_DATA_HOME/reportexport`, by default `~/.local/share/reportexport` on Linux;
`~/Library/Application Support/reportexport` on macOS; `%LOCALAPPDATA%\\reportexport` on Windows).
Nothing is created in the current folder unless the caller names it there, and a job started in
any folder (a cron line, a scheduler's task) finds the same ledger and the jobs it remembers.

Versions before this one kept the default ledger in `.reportexport/` of the current folder. Such a
ledger is still used when it is there, with a note saying where the default is now, so no job it
remembers is forgotten (and submitted again). The command line and the library (`Ledger()`,
`Client()` without `ledger=`) take their default from here alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["APP", "LEGACY_FOLDER", "DefaultLedger", "data_folder", "default_ledger"]

APP = "reportexport"
#: Where versions before the data folder kept their ledgers (relative to the current folder).
LEGACY_FOLDER = Path(".reportexport")


def data_folder() -> Path:
    """The user's data folder for this application (read from the environment on each call)."""
    return platformdirs.user_data_path(APP, appauthor=False)


@dataclass(frozen=True)
class DefaultLedger:
    #: The file to open.
    path: Path
    #: Where the default is now, when `path` is an older ledger in the current folder.
    moved_to: Path | None = None

    def notice(self, how_to_name: str) -> str | None:
        """What to tell the user when an older ledger was chosen; `how_to_name` is how they name
        a ledger themselves (`--ledger PATH`, `ledger=PATH`)."""
        if self.moved_to is None:
            return None
        return (
            f"using the ledger {self.path} in the current folder (the default is now "
            f"{self.moved_to}; move the file there, or pass {how_to_name.format(self.path)}, to "
            "keep this notice away)"
        )


def default_ledger(name: str = "ledger.sqlite") -> DefaultLedger:
    """The ledger file `name` to use when none is given: an older one in `.reportexport/` of the
    current folder when it exists, else the one in the user's data folder."""
    legacy = LEGACY_FOLDER / name
    chosen = data_folder() / name
    if legacy.is_file() and legacy.resolve() != chosen.resolve():
        return DefaultLedger(legacy, moved_to=chosen)
    return DefaultLedger(chosen)
