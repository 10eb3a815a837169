"""The sandbox's settings: one frozen value, shared by the in-process server, the command line and
the pytest plugin. Every default lives here. The guide's rules are those of docs/guide.md."""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

from .dialect import DIALECTS, Dialect, default_dialect

# Fault names, each a probability from 0 to 1 (all 0 by default).
FAULT_NAMES: tuple[str, ...] = (
    "job_error",  # an attempt ends in ERROR; the job re-runs 15 minutes later, at most 5 tries
    "job_fail",  # the job ends FAILED
    "job_stuck",  # the job stays RUNNING for ever
    "http_5xx",  # an API call answers 500/502/503/504 before doing anything
    "burst_429",  # an API call starts a burst of 429 answers (the next few calls are refused)
    "slow",  # an answer is delayed by `slow_seconds` real seconds
    "drop_connection",  # a download's connection is aborted midway
    "truncate_body",  # a download sends fewer bytes than its Content-Length, then closes
    "malformed_json",  # a JSON answer is cut short (after the call took effect)
    "status_error_200",  # an API call answers HTTP 200 with Status: ERROR, before doing anything
    "expired_signed_url",  # the Download's redirect points at a signed URL that has expired
    "lost_postback",  # a job-completion postback is never sent
)

ResetStyle = Literal["seconds", "epoch"]
PostbackMethod = Literal["GET", "POST"]

_SID_ALPHABET = string.ascii_letters + string.digits


def random_account_sid() -> str:
    """An account SID shaped like impact.com's (`IR` and 32 letters or digits)."""
    return "IR" + "".join(secrets.choice(_SID_ALPHABET) for _ in range(32))


def random_auth_token() -> str:
    return secrets.token_urlsafe(24)


_SID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SandboxAccount:
    """One more account the sandbox serves, beside its main one: its own SID and token, and
    its own limits where they differ from the sandbox's (None: the sandbox's setting)."""

    account_sid: str = field(default_factory=random_account_sid)
    auth_token: str = field(default_factory=random_auth_token, repr=False)
    hourly_limit: int | None = None
    daily_export_limit: int | None = None
    daily_click_limit: int | None = None

    def __post_init__(self) -> None:
        problems = _credential_problems(self.account_sid, self.auth_token)
        for name in ("hourly_limit", "daily_export_limit", "daily_click_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name}: must not be negative, got {value}")
        if problems:
            raise ValueError(f"account {self.account_sid!r}: " + "; ".join(problems))


def _credential_problems(account_sid: str, auth_token: str) -> list[str]:
    problems = []
    if not account_sid or not _SID_PATTERN.fullmatch(account_sid):
        problems.append("account_sid: must be letters, digits, '-' or '_'")
    if not auth_token or ":" in auth_token:
        problems.append("auth_token: must be non-empty and contain no ':'")
    return problems


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes the sandbox's behaviour. Durations are in sandbox seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    signed_port: int = 0
    account_sid: str = field(default_factory=random_account_sid)
    auth_token: str = field(default_factory=random_auth_token, repr=False)
    storage: Path | None = None  # None: a temporary folder, removed on exit
    seed: int = 0
    time_scale: float = 1.0  # sandbox seconds per real second
    job_duration: tuple[float, float] = (2.0, 10.0)  # min, max of one attempt, sandbox seconds
    rows_per_day: int = 100
    settle_days: int = 3  # recent days keep gaining rows (the guide's rule 6)
    hourly_limit: int = 1000  # docs/api-facts.md §5; 0 switches the hourly bucket off
    daily_export_limit: int = 100  # ReportExport per day; 0 switches it off
    daily_click_limit: int = 10  # ClickExport per day; 0 switches it off
    limit_status_polling: bool = False  # GET /Jobs/{Id} is not limited (the guide's rule 2)
    reset_style: ResetStyle = (
        "seconds"  # X-RateLimit-Reset as seconds, or as epoch (docs/api-facts.md §5, §8)
    )
    jobs_page_size: int = 1000  # default PageSize of GET /Jobs (docs/api-facts.md §2 Pagination)
    max_page_size: int = 20000
    string_values: bool = False  # numbers and booleans as strings, as the doc examples show
    # `examples` (the documentation examples' answers, lenient with requests) or `strict` (answers
    # valid against the persona's documents; 400/406 for undocumented requests): see `dialect`.
    dialect: Dialect = field(default_factory=default_dialect)
    utc_offset_minutes: int = 0  # the account's timezone: timestamps and the calendar day
    signed_url_ttl: float = 300.0  # "temporary, short-lived signed URL"
    default_range_days: int = 30  # a request without dates covers the last N days
    postback_url: str | None = None
    postback_method: PostbackMethod = "GET"
    postback_delay: tuple[float, float] = (0.0, 0.0)
    postback_max_attempts: int = 6
    faults: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float = 0.5  # real seconds
    burst_length: int = 5  # 429 answers in one burst
    burst_retry_after: float = 2.0  # sandbox seconds announced by a burst's 429
    #: More accounts served beside the main one (`account_sid`), each with its own credentials,
    #: quotas and hourly bucket; the settings above apply to them unless they set their own.
    accounts: tuple[SandboxAccount, ...] = ()
    _by_sid: Mapping[str, SandboxAccount] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not between 0 and 65535")
        if not 0 <= self.signed_port <= 65535:
            problems.append(f"signed_port: {self.signed_port} is not between 0 and 65535")
        problems.extend(_credential_problems(self.account_sid, self.auth_token))
        if not self.time_scale > 0:
            problems.append(f"time_scale: must be positive, got {self.time_scale}")
        low, high = self.job_duration
        if low < 0 or high < low:
            problems.append(f"job_duration: need 0 <= min <= max, got {low}-{high}")
        low, high = self.postback_delay
        if low < 0 or high < low:
            problems.append(f"postback_delay: need 0 <= min <= max, got {low}-{high}")
        for name, value in (
            ("rows_per_day", self.rows_per_day),
            ("settle_days", self.settle_days),
            ("hourly_limit", self.hourly_limit),
            ("daily_export_limit", self.daily_export_limit),
            ("daily_click_limit", self.daily_click_limit),
        ):
            if value < 0:
                problems.append(f"{name}: must not be negative, got {value}")
        if self.jobs_page_size < 1 or self.max_page_size < self.jobs_page_size:
            problems.append("jobs_page_size: must be between 1 and max_page_size")
        if self.default_range_days < 1:
            problems.append("default_range_days: must be at least 1")
        if self.postback_method not in ("GET", "POST"):
            problems.append(f"postback_method: must be GET or POST, got {self.postback_method!r}")
        if self.dialect not in DIALECTS:
            problems.append(f"dialect: must be examples or strict, got {self.dialect!r}")
        elif self.dialect == "strict" and self.string_values:
            problems.append("string_values: the strict dialect types numbers and booleans")
        if self.reset_style not in ("seconds", "epoch"):
            problems.append(f"reset_style: must be seconds or epoch, got {self.reset_style!r}")
        for name, rate in self.faults.items():
            if name not in FAULT_NAMES:
                problems.append(f"faults: unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
            elif not 0.0 <= rate <= 1.0:
                problems.append(f"faults: {name} rate must be between 0 and 1, got {rate}")
        if problems:
            raise ValueError("; ".join(problems))
        by_sid: dict[str, SandboxAccount] = {}
        for account in (SandboxAccount(self.account_sid, self.auth_token), *self.accounts):
            if not isinstance(account, SandboxAccount):
                problems.append("accounts: expected SandboxAccount values")
            elif account.account_sid in by_sid:
                problems.append(f"accounts: the SID {account.account_sid!r} is used twice")
            else:
                by_sid[account.account_sid] = self._resolved(account)
        if problems:
            raise ValueError("; ".join(problems))
        # Freeze the fault mapping so the value stays immutable.
        object.__setattr__(self, "faults", dict(self.faults))
        object.__setattr__(self, "accounts", tuple(self.accounts))
        object.__setattr__(self, "_by_sid", by_sid)

    def _resolved(self, account: SandboxAccount) -> SandboxAccount:
        def pick(own: int | None, default: int) -> int:
            return default if own is None else own

        return SandboxAccount(
            account.account_sid,
            account.auth_token,
            pick(account.hourly_limit, self.hourly_limit),
            pick(account.daily_export_limit, self.daily_export_limit),
            pick(account.daily_click_limit, self.daily_click_limit),
        )

    def account(self, sid: str) -> SandboxAccount | None:
        """The account `sid` (the main one included) with its limits resolved, or None."""
        return self._by_sid.get(sid)

    def fault(self, name: str) -> float:
        return self.faults.get(name, 0.0)

    @property
    def utc_offset(self) -> timedelta:
        return timedelta(minutes=self.utc_offset_minutes)

    def replace(self, **changes: object) -> SandboxConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def parse_range(text: str, what: str) -> tuple[float, float]:
    """`"5"` -> (5, 5); `"30-1200"` -> (30, 1200)."""
    parts = text.split("-")
    try:
        if len(parts) == 1:
            value = float(parts[0])
            result = (value, value)
        elif len(parts) == 2:
            result = (float(parts[0]), float(parts[1]))
        else:
            raise ValueError(text)
    except ValueError:
        raise ValueError(f"{what}: expected SECONDS or MIN-MAX, got {text!r}") from None
    if result[0] < 0 or result[1] < result[0]:
        raise ValueError(f"{what}: expected 0 <= MIN <= MAX, got {text!r}")
    return result


def parse_fault(text: str) -> tuple[str, float]:
    """`"http_5xx=0.3"` -> ("http_5xx", 0.3)."""
    name, sep, rate_text = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"fault: expected NAME=RATE, got {text!r}")
    if name not in FAULT_NAMES:
        raise ValueError(f"fault: unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"fault: rate of {name} must be a number from 0 to 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault: rate of {name} must be between 0 and 1, got {rate_text}")
    return name, rate
