"""The canonical fingerprint of an export: what makes two requests "the same" (the guide's rule
1, docs/guide.md).

Two requests with the same fingerprint would get the same job from the service (it de-duplicates
identical parameters, docs/api-facts.md §1d), so the ledger keys everything on it: never submit a
fingerprint twice, re-attach to its job instead.

It covers the API origin, the account type and SID, the report (or ClickExport), the filters with
sorted keys and values encoded exactly as they go on the wire (so `3629` and `"3629"` agree), the
dates in one format, and the result format. A request on the default date range also carries the
calendar day it was made on: the service makes a new job for it only when the day changes
(the guide's rule 5).

The same pieces without the dates name an export over any range (`account_key`, `export_key`):
the ledger keys the daily quotas and the chunks `chunk="auto"` chose on them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from .personas import AccountType
from .request_models import ClickExportRequest, ExportRequest
from .requests import encode_value

__all__ = ["Fingerprint", "account_key", "canonical_origin", "export_key", "fingerprint"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
VERSION = 1  # bump when the canonical form changes; old ledger keys then stop matching


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """`key` is the sha256 of `canonical`, the sorted JSON the key was made from."""

    key: str
    canonical: str

    def __str__(self) -> str:
        return self.key


def canonical_origin(base_url: str) -> str:
    """`HTTPS://API.impact.com:443/` -> `https://api.impact.com`."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not scheme or not host:
        raise ValueError(f"base URL {base_url!r} needs a scheme and a host")
    if ":" in host:
        host = f"[{host}]"  # IPv6: keep the brackets so the port stays separate
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def account_key(base_url: str, account_type: AccountType | str, account_sid: str) -> str:
    """`<origin>/<account type>/<SID>`: one account, whatever spelling of the URL it is given."""
    kind = AccountType.parse(account_type).value
    return f"{canonical_origin(base_url)}/{kind}/{account_sid}"


def _filters(request: ExportRequest) -> list[tuple[str, str]]:
    # Encoded as they go on the wire, so `3629` and `"3629"` agree.
    return sorted((k, encode_value(v)) for k, v in request.filters.items())


def export_key(request: ExportRequest) -> str:
    """What one export is over any date range: its report, filters and result format, as sorted
    JSON (the request's dates are left out). With `account_key`, it names an export of one
    account."""
    body = {
        "v": VERSION,
        "endpoint": "ReportExport",
        "report_id": request.report_id,
        "filters": _filters(request),
        "format": request.result_format,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def fingerprint(
    request: ExportRequest | ClickExportRequest,
    *,
    base_url: str,
    account_type: AccountType | str,
    account_sid: str,
    today: date,
) -> Fingerprint:
    """The fingerprint of `request` for one account; `today` is the calendar day the request is
    made on (it only matters for a request without dates)."""
    kind = AccountType.parse(account_type).value
    body: dict[str, object] = {
        "v": VERSION,
        "origin": canonical_origin(base_url),
        "account_type": kind,
        "account_sid": account_sid,
        "format": request.result_format,
    }
    if isinstance(request, ExportRequest):
        body["endpoint"] = "ReportExport"
        body["report_id"] = request.report_id
        body["filters"] = _filters(request)
        if request.start is None or request.end is None:
            body["default_range_day"] = today.isoformat()
        else:
            body["start"] = request.start.isoformat()
            body["end"] = request.end.isoformat()
    else:
        body["endpoint"] = "ClickExport"
        body["program_id"] = request.program_id
        # ClickExport without a date means today (docs/api-facts.md §3).
        body["date"] = (request.date or today).isoformat()
        for name in ("ad_ids", "media_ids", "sub_ids", "program_ids"):
            body[name] = sorted(getattr(request, name))
        body["unique_click"] = request.unique_click
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return Fingerprint(hashlib.sha256(canonical.encode()).hexdigest(), canonical)
