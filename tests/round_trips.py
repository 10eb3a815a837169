"""Round trips to PostgreSQL, counted: a ledger whose pool's connections count every statement
they send (each one a round trip: the ledger's own, BEGIN and COMMIT, a pool's reset), by the
ledger call that sent it. For the tests and the benchmarks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from reportexport_async.ledger.postgres import PostgresLedger

__all__ = ["SENT", "CountedLedger", "counted"]

T = TypeVar("T")

#: Statements sent to the server, by the name `counted` gave the call that sent them.
SENT: Counter[str] = Counter()


class CountingConnection(asyncpg.Connection):  # type: ignore[misc]
    call = "other"

    async def _sent(self, method: str, *args: Any, **kwargs: Any) -> Any:
        SENT[CountingConnection.call] += 1
        return await getattr(super(), method)(*args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._sent("execute", *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._sent("executemany", *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._sent("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._sent("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._sent("fetchval", *args, **kwargs)


class CountedLedger(PostgresLedger):
    """A PostgreSQL ledger whose statements are counted in `SENT` (one call at a time)."""

    connection_class = CountingConnection


async def counted(name: str, call: Awaitable[T]) -> T:
    """`call`'s result, its statements counted under `name`."""
    CountingConnection.call = name
    try:
        return await call
    finally:
        CountingConnection.call = "other"
