"""Which typed destination a URL names, opened: its package (duckdb, pyarrow) imported only
now. Apart from `typed.py`, which both destinations build on, so that neither imports back."""

from __future__ import annotations

from .typed import IntoURL, TypedDestination, parse_into

__all__ = ["open_into"]


def open_into(url: IntoURL | str, *, setting: str = "into") -> TypedDestination:
    """The typed destination of `url` (its package imported now, not before)."""
    parsed = url if isinstance(url, IntoURL) else parse_into(url, setting=setting)
    if parsed.kind == "duckdb":
        from .duckdb_table import DuckDBDestination

        return DuckDBDestination(parsed.path, str(parsed))
    from .parquet_files import ParquetDestination

    return ParquetDestination(parsed.path, str(parsed))
