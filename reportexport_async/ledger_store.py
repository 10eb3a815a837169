"""Where `LedgerStore` and `open_ledger` used to live: they are in `ledger.store` now."""

from __future__ import annotations

from .ledger.store import LEDGER_URL_ENV, LedgerStore, is_ledger_url, open_ledger, redact_url

__all__ = ["LEDGER_URL_ENV", "LedgerStore", "is_ledger_url", "open_ledger", "redact_url"]
