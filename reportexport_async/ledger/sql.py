"""The one way the ledger's shared code talks to a database: `Tx`, a connection inside a call's
transaction, written once in PostgreSQL's dialect (`$1` parameters, `FOR UPDATE`) and run as it is
on PostgreSQL and, translated (`sqlite_dialect`), on SQLite.

The shared code is asynchronous, as asyncpg is. SQLite's calls run synchronously in the ledger's
own thread (`sqlite.py`): there, a call's coroutine never waits for anything (each statement is
done when `Tx` returns), so `drive` runs it to its end in one step, without an event loop."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from .records import Row

__all__ = ["Tx", "detail", "drive", "sqlite_dialect"]

T = TypeVar("T")


class Tx(Protocol):
    """A connection during one call of the ledger (one transaction, or one statement)."""

    async def row(self, sql: str, *args: Any) -> Row | None: ...
    async def rows(self, sql: str, *args: Any) -> Sequence[Row]: ...
    async def value(self, sql: str, *args: Any) -> Any: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def lock(self, key: str) -> None:
        """Serialise the transactions that lock `key` until they end (a row that does not exist
        yet cannot be locked). SQLite's writes are serialised already: nothing to do there."""
        ...


def detail(value: dict[str, Any] | None) -> str:
    """An event's detail as stored."""
    return json.dumps(value or {}, sort_keys=True)


@functools.lru_cache(maxsize=256)
def sqlite_dialect(sql: str) -> str:
    """A statement of the shared code in SQLite's terms: `$n` is `?n`, and no row locks (a
    write transaction holds the whole file: `BEGIN IMMEDIATE`)."""
    return re.sub(r"\$(\d+)", r"?\1", sql.replace(" FOR UPDATE", ""))


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (a call of the shared code on SQLite)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a ledger call on SQLite waited for something: it must not")
