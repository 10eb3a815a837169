"""The server's time, read from its answers: the pure part of `transport.server_clock.ServerClock`.

Every answer carries a `Date` header (RFC 9110 §6.6.1): the server's time when it answered, in
whole seconds. Read when the answer arrives, it says that the server's clock is now at least that
second and less than a second later (plus the time the answer took to arrive). The estimate of
how far the server's clock is ahead of the machine's is kept while an answer agrees with it, and
moved to the answer's second when one does not: it never jitters with the header's rounding, and
a server whose clock jumps (a sandbox moved a day) is followed at its next answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache

__all__ = ["AGREEMENT_SECONDS", "corrected_offset", "server_date"]

#: How far past an answer's `Date` second the server's clock may be when the answer is read and
#: still agree with it: the second the header rounds away, and as much again for the way back.
AGREEMENT_SECONDS = 2.0


def server_date(headers: Mapping[str, str]) -> datetime | None:
    """The `Date` of an answer as an aware datetime (None when absent or unreadable)."""
    text = next((v for k, v in headers.items() if k.lower() == "date"), None)
    return _http_date(text) if text else None


@lru_cache(maxsize=8)
def _http_date(text: str) -> datetime | None:
    """Remembered: answers of the same second carry the same text."""
    try:
        server = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if server is None or server.tzinfo is None:
        return None
    return server


def corrected_offset(current: float, server: datetime, machine_now: datetime) -> float:
    """Seconds the server's clock is ahead of the machine's, after an answer dated `server` read
    at `machine_now`: `current` while the answer agrees with it, else the answer's own."""
    seen = (server - machine_now).total_seconds()
    if seen <= current <= seen + AGREEMENT_SECONDS:
        return current
    return seen
