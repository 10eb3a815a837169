"""Datasets from a small TOML file, for `reportexport sync --config datasets.toml`:

    [datasets.actions]
    reports = ["mp_action_listing_fast"]
    first_day = 2025-01-01          # omit for the reports' default date range
    chunk = "1d"                    # Nd, week or month
    format = "csv"                  # csv, json or xml
    filters = { SUBAID = "3629" }
    out = "data/actions"            # relative to this file's folder
    merge = true                    # also keep data/actions/<report>.csv whole
    settle_days = 3                 # days a day's data keeps changing
    refresh_hour = 12               # refresh the latest day from this hour (account's day)
    into = "duckdb:///data.duckdb"  # also load into DuckDB (or parquet:///DIR), relative to
                                    # this file's folder; the dataset's name is its schema

Every mistake (a key that is not one of these, a value of the wrong type, a name asked for that
the file does not hold) is one `ConfigurationError` naming the file, the dataset and the key,
before any call.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..destinations import parse_into
from ..errors import ConfigurationError
from .sync import Dataset

__all__ = ["DATASET_KEYS", "in_file", "load_datasets"]

#: The keys a dataset table may hold, and what each must be.
DATASET_KEYS: Mapping[str, str] = {
    "reports": "a list of report ids",
    "first_day": "a date such as 2025-01-31",
    "chunk": 'a chunk rule such as "1d", "7d", "week" or "month"',
    "format": '"csv", "json" or "xml"',
    "filters": 'a table of report filters, such as { SUBAID = "3629" }',
    "out": "a folder (relative to the file's folder)",
    "merge": "true or false",
    "settle_days": "a whole number of days, 0 or more",
    "refresh_hour": "an hour from 0 to 23",
    "into": 'a destination beside the files, "duckdb:///PATH" or "parquet:///PATH"',
}


def _problem(path: Path, where: str, text: str) -> ConfigurationError:
    return ConfigurationError(str(path), f"{where}{text}")


def _unknown(path: Path, where: str, key: str, known: Sequence[str]) -> ConfigurationError:
    near = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(known)})"
    return _problem(path, where, f"unknown key {key!r}{hint}")


def load_datasets(path: str | Path, names: Sequence[str] = ()) -> list[Dataset]:
    """The datasets of the TOML file at `path` (only `names`, in that order, when given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(str(path), f"cannot be read ({reason})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _problem(path, "", f"not valid TOML ({exc})") from None
    for key in document:
        if key != "datasets":
            raise _unknown(path, "", key, ["datasets"])
    tables = document.get("datasets")
    if not isinstance(tables, dict) or not tables:
        raise _problem(path, "", "no datasets: add a table such as [datasets.actions]")
    chosen = list(names) or list(tables)
    for name in chosen:
        if name not in tables:
            raise _problem(path, "", f"no dataset {name!r} (it holds: {', '.join(sorted(tables))})")
    return [_dataset(path, name, tables[name]) for name in dict.fromkeys(chosen)]


def _dataset(path: Path, name: str, table: Any) -> Dataset:
    where = f"dataset {name!r}: "
    if not isinstance(table, dict):
        raise _problem(path, "", f"datasets.{name} must be a table such as [datasets.{name}]")
    known = list(DATASET_KEYS)
    for key in table:
        if key not in DATASET_KEYS:
            raise _unknown(path, where, key, known)

    def wrong(key: str) -> ConfigurationError:
        return _problem(path, where, f"{key} must be {DATASET_KEYS[key]}, got {table[key]!r}")

    if "reports" not in table:
        raise _problem(path, where, "reports is missing (a list of report ids)")
    reports = table["reports"]
    if isinstance(reports, str):
        reports = [reports]
    if (
        not isinstance(reports, list)
        or not reports
        or not all(isinstance(r, str) and r for r in reports)
    ):
        raise wrong("reports")
    first_day = table.get("first_day")
    if isinstance(first_day, str):
        try:
            first_day = date.fromisoformat(first_day)
        except ValueError:
            raise wrong("first_day") from None
    if first_day is not None and (
        not isinstance(first_day, date) or isinstance(first_day, datetime)
    ):
        raise wrong("first_day")
    filters = table.get("filters", {})
    if not isinstance(filters, dict) or not all(
        isinstance(v, str | int | bool) for v in filters.values()
    ):
        raise wrong("filters")
    values: dict[str, Any] = {}
    for key, kind in (("chunk", str), ("format", str), ("out", str), ("merge", bool)):
        if key in table:
            if not isinstance(table[key], kind):
                raise wrong(key)
            values[key] = table[key]
    for key in ("settle_days", "refresh_hour"):
        if key in table:
            if not isinstance(table[key], int) or isinstance(table[key], bool):
                raise wrong(key)
            values[key] = table[key]
    into = None
    if "into" in table:
        if not isinstance(table["into"], str):
            raise wrong("into")
        try:
            into = parse_into(table["into"], base=path.parent)
        except ConfigurationError as error:
            raise _problem(path, where, f"into: {error.problem}") from None
    out = Path(values.pop("out", name))
    if not out.is_absolute():
        out = path.parent / out
    try:
        return Dataset(
            name=name,
            reports=tuple(reports),
            out=out,
            first_day=first_day,
            filters={
                k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()
            },
            result_format=values.pop("format", "csv"),
            into=into,
            **values,
        )
    except ConfigurationError as error:
        raise in_file(path, error) from None


#: A dataset's setting, as `Dataset` names it -> its key in the file (where they differ).
FILE_KEYS: Mapping[str, str] = {"result_format": "format"}


def in_file(path: str | Path, error: ConfigurationError) -> ConfigurationError:
    """A problem of the file's datasets (found when one is made, or by `sync` before any call)
    as the file says it: the file, the dataset and its key."""
    if error.dataset is None:
        return ConfigurationError(str(path), error.problem)
    key = FILE_KEYS.get(error.setting, error.setting)
    return ConfigurationError(str(path), f"dataset {error.dataset!r}: {key}: {error.problem}")
