"""The library's words in the command line's: a message about a keyword argument names the
flag that sets it (`pass base_url=...` -> `pass --base-url`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["FLAGS", "PROG", "cli_language"]

#: The command's name, as its messages start.
PROG = "reportexport"

#: A library keyword argument -> what the command line calls it.
FLAGS: Mapping[str, str] = {
    "start": "--start",
    "end": "--end",
    "account_sid": "--account-sid",
    "auth_token": "--auth-token-file",
    "account_type": "--account-type",
    "base_url": "--base-url",
    "check_reports": "--check-reports",
    "wait_for_quota": "--wait-for-quota",
    "wait_for_replays": "--wait-for-replays",
    "outage_limit": "--outage-limit",
    "force": "--force",
    "ledger": "--ledger",
    "postback_listen": "--postback-listen",
    "postback_token": "--postback-token",
}

#: What a message about a setting names when no flag holds the setting itself.
SUBJECTS: Mapping[str, str] = {
    "auth_token": "the auth token",
    "report_id": "REPORT",
    "report": "REPORT",
    # The arguments of `export` and `backfill`, checked by the library before any call.
    "start": "--start",
    "end": "--end",
    "out": "--out",
    "out_dir": "--out",
    "chunk": "--chunk",
    "filters": "--param",
    "result_format": "--format",
}

#: The flags that turn off a setting that is on unless told otherwise.
NEGATIONS: Mapping[str, str] = {"check_reports": "--no-check-reports"}

_REWRITES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # "base_url: plain http:// ...": the setting the message is about, by its flag.
    (
        re.compile(r"^(\w+): "),
        lambda m: (
            f"{SUBJECTS.get(m[1]) or FLAGS[m[1]]}: " if m[1] in FLAGS or m[1] in SUBJECTS else m[0]
        ),
    ),
    # "pass check_reports=False to let the server decide": the flag that turns it off, or
    # leaving out the flag that turns it on.
    (
        re.compile(r"pass (\w+)=False"),
        lambda m: (
            f"pass {NEGATIONS[m[1]]}"
            if m[1] in NEGATIONS
            else (f"leave out {FLAGS[m[1]]}" if m[1] in FLAGS else m[0])
        ),
    ),
    (
        re.compile(r"pass (\w+)=True"),
        lambda m: f"pass {FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
    # "(set IMPACT_BASE_URL or pass base_url=...)"
    (
        re.compile(r"pass (\w+)=\.\.\."),
        lambda m: f"pass {FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
    # A setting named in backquotes: `wait_for_quota`.
    (
        re.compile(r"`(\w+)`"),
        lambda m: f"{FLAGS[m[1]]}" if m[1] in FLAGS else m[0],
    ),
)


def cli_language(message: str) -> str:
    """A library message as the command line says it: its keyword arguments become the flags
    that set them (`pass base_url=...` -> `pass --base-url`)."""
    for pattern, rewrite in _REWRITES:
        message = pattern.sub(rewrite, message)
    return message
