"""Client configuration: credentials, account type, base URL and the policies.

Strict input (way 8 of docs/guide.md): a frozen pydantic model that rejects unknown settings
and fails at construction with a :class:`ConfigurationError` that names the setting (an empty
SID, an unknown account type, a base URL without a scheme, ...).

The auth token is a ``SecretStr``: it never appears in a repr, a str, or an error message.
Pydantic's own ``ValidationError`` text quotes the input values, so it is never shown or
chained: it is replaced by our message with no ``__cause__``/``__context__`` on purpose (the one
exception to "always ``raise ... from exc``": the cause would carry the secret into tracebacks).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
)

from ..core.fingerprint import account_key
from ..core.models import validation_problem
from ..core.personas import AccountType, Persona, persona_for
from ..core.policies import PollPolicy, RateLimitPolicy, RetryPolicy, Timeouts
from ..core.proxies import DIRECT, parse_proxy
from ..core.requests import is_loopback_host
from ..errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "ENV_VARS", "LIMIT_ENV_VARS", "ClientConfig", "limits_from_env"]

#: docs/api-facts.md §0: every path hangs off this host.
DEFAULT_BASE_URL = "https://api.impact.com"

#: Setting -> environment variable read by :meth:`ClientConfig.from_env`.
ENV_VARS: Mapping[str, str] = {
    "account_sid": "IMPACT_ACCOUNT_SID",
    "auth_token": "IMPACT_AUTH_TOKEN",
    "account_type": "IMPACT_ACCOUNT_TYPE",
    "base_url": "IMPACT_BASE_URL",
}


#: An account's own limits -> the environment variable that sets it (unset: the defaults, 1,000
#: calls an hour, 100 ReportExport and 10 ClickExport a day).
LIMIT_ENV_VARS: Mapping[str, str] = {
    "hourly_limit": "IMPACT_HOURLY_LIMIT",
    "daily_report_export": "IMPACT_DAILY_REPORT_EXPORT",
    "daily_click_export": "IMPACT_DAILY_CLICK_EXPORT",
}


def limits_from_env(
    environ: Mapping[str, str] | None = None, base: RateLimitPolicy | None = None
) -> RateLimitPolicy | None:
    """`base` (default `RateLimitPolicy()`) with the limits set by `IMPACT_HOURLY_LIMIT`,
    `IMPACT_DAILY_REPORT_EXPORT` and `IMPACT_DAILY_CLICK_EXPORT`; None when none is set."""
    env = os.environ if environ is None else environ
    values: dict[str, int] = {}
    for setting, variable in LIMIT_ENV_VARS.items():
        raw = env.get(variable, "").strip()
        if not raw:
            continue
        if not raw.isdigit():
            raise ConfigurationError(variable, "must be a whole number >= 0")
        values[setting] = int(raw)
    if not values:
        return None
    if values.get("hourly_limit") == 0:
        raise ConfigurationError(LIMIT_ENV_VARS["hourly_limit"], "must be >= 1")
    return (base or RateLimitPolicy()).with_limits(**values)


def plain_http_refusal(host: str) -> str:
    """Why a plain-http base URL to `host` is refused (the config and the session say it alike)."""
    shown = f"[{host}]" if ":" in host else host
    return (
        "plain http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); "
        f"use https:// for {shown}"
    )


def _hint(setting: str) -> str:
    env = ENV_VARS.get(setting)
    return f" (set {env} or pass {setting}=...)" if env else f" (pass {setting}=...)"


def _translate(exc: ValidationError) -> ConfigurationError:
    """The first problem of a ValidationError, as a ConfigurationError without input values."""
    first = exc.errors(include_input=False, include_url=False)[0]
    inner = first.get("ctx", {}).get("error")
    if isinstance(inner, ConfigurationError):
        # Raised by a policy's own checks, or by __init__ when model_validate calls it.
        return inner
    where, kind, problem = validation_problem(exc)
    setting = where or "config"
    if kind == "missing":
        problem = "is required"
    elif kind == "extra_forbidden":
        problem = "is not a known setting"
    return ConfigurationError(setting, problem + _hint(setting))


def _detached(error: ConfigurationError) -> ConfigurationError:
    """Cut the link to pydantic's ValidationError, whose text quotes the inputs (the token)."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


class ClientConfig(BaseModel):
    """Everything a client needs to talk to one impact.com account.

    >>> cfg = ClientConfig(account_sid="IRabc", auth_token="s3cret", account_type="partner")
    >>> cfg.account_type
    <AccountType.MEDIAPARTNERS: 'Mediapartners'>
    >>> "s3cret" in repr(cfg)
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    account_sid: str
    auth_token: SecretStr
    account_type: AccountType
    base_url: str = DEFAULT_BASE_URL
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    poll: PollPolicy = Field(default_factory=PollPolicy)
    rate_limit: RateLimitPolicy = Field(default_factory=RateLimitPolicy)
    #: None: the standard variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`); a URL
    #: (`http://[user:pass@]host:port`): that proxy, minus `NO_PROXY`; `direct`: no proxy at all.
    #: A secret (it may hold the proxy's password): never in a repr or a dump.
    proxy: SecretStr | None = None

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str | SecretStr,
        account_type: AccountType | str,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        rate_limit: RateLimitPolicy | None = None,
        proxy: str | SecretStr | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "account_sid": account_sid,
            "auth_token": auth_token,
            "account_type": account_type,
            "base_url": base_url,
        }
        for name, value in (
            ("timeouts", timeouts),
            ("retry", retry),
            ("poll", poll),
            ("rate_limit", rate_limit),
            ("proxy", proxy),
        ):
            if value is not None:
                data[name] = value
        try:
            super().__init__(**data)
        except ValidationError as exc:
            error = _translate(exc)
        else:
            return
        raise _detached(error)

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """As pydantic's, but a bad value raises :class:`ConfigurationError`."""
        if isinstance(obj, Mapping):
            unknown = sorted(str(k) for k in obj if k not in cls.model_fields)
            if unknown:
                raise ConfigurationError(unknown[0], "is not a known setting")
        try:
            return super().model_validate(
                obj,
                strict=strict,
                extra=extra,
                from_attributes=from_attributes,
                context=context,
                by_alias=by_alias,
                by_name=by_name,
            )
        except ValidationError as exc:
            error = _translate(exc)
        raise _detached(error)

    # --- validators (ValueError messages become "setting: message (set ENV ...)") ------------

    @field_validator("account_sid", mode="before")
    @classmethod
    def _check_sid(cls, value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must not be empty")
        text = value.strip()
        # The SID is a path segment (docs/api-facts.md §0) and the Basic-auth user name (§6).
        if any(ch.isspace() or ord(ch) < 32 for ch in text) or "/" in text or ":" in text:
            raise ValueError("must not contain whitespace, '/' or ':'")
        return text

    @field_validator("auth_token", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("must not be empty")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
            # No echo of the value: it is the secret.
            raise ValueError("must not contain control characters")
        return SecretStr(raw.strip())

    @field_validator("account_type", mode="before")
    @classmethod
    def _check_type(cls, value: object) -> object:
        if not isinstance(value, (str, AccountType)):
            raise ValueError("must be Advertisers, Mediapartners or Agencies")
        return AccountType.parse(value)

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must not be empty")
        text = value.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError("is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        if not parts.hostname:
            raise ValueError("must include a host, e.g. https://api.impact.com")
        if scheme == "http" and not is_loopback_host(parts.hostname):
            # Basic authentication sends the token in clear text: over plain http it may only
            # go to this machine (the local sandbox). The session checks this again per request.
            raise ValueError(plain_http_refusal(parts.hostname))
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            # Credentials go in account_sid/auth_token, never in a URL that may be logged.
            raise ValueError("must not contain user info (user:password@)")
        if parts.query or parts.fragment:
            raise ValueError("must not contain a query string or fragment")
        if parts.path not in ("", "/"):
            # The API returns root-relative URIs (docs/api-facts.md §0): a path prefix would be
            # lost.
            raise ValueError("must be an origin without a path, e.g. https://api.impact.com")
        return f"{scheme}://{parts.netloc}"

    @field_validator("proxy", mode="before")
    @classmethod
    def _check_proxy(cls, value: object) -> object:
        if value is None:
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"must be a proxy URL (http://host:port) or {DIRECT!r}")
        text = raw.strip()
        if text.lower() == DIRECT:
            return SecretStr(DIRECT)
        parse_proxy(text)  # its messages never quote the URL (it may hold a password)
        return SecretStr(text)

    @field_serializer("rate_limit", when_used="json")
    def _dump_rate_limit(self, value: RateLimitPolicy) -> dict[str, Any]:
        # A tzinfo has no JSON form; its name is enough for logs and diagnostics.
        dumped = dataclasses.asdict(value)
        dumped["quota_timezone"] = str(value.quota_timezone)
        return dumped

    # --- derived -------------------------------------------------------------------------

    @property
    def persona(self) -> Persona:
        return persona_for(self.account_type)

    @property
    def account_key(self) -> str:
        """The account's key in the ledger and the limits (`core.fingerprint.account_key`):
        its origin, account type and SID."""
        return account_key(self.base_url, self.account_type, self.account_sid)

    @property
    def account_root(self) -> str:
        """``/{AccountType}/{AccountSID}`` (docs/api-facts.md §0), unquoted."""
        return self.persona.root(self.account_sid)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Read ``IMPACT_ACCOUNT_SID``, ``IMPACT_AUTH_TOKEN``, ``IMPACT_ACCOUNT_TYPE`` and
        ``IMPACT_BASE_URL`` from ``environ`` (default ``os.environ``), and the account's limits
        from ``LIMIT_ENV_VARS`` (`limits_from_env`); keyword overrides win. Empty variables
        count as unset."""
        env = os.environ if environ is None else environ
        known = set(cls.model_fields)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(unknown[0], "is not a known setting")
        values: dict[str, Any] = {}
        for setting, variable in ENV_VARS.items():
            raw = env.get(variable)
            if raw is not None and raw.strip():
                values[setting] = raw
        limits = limits_from_env(env)
        if limits is not None:
            values["rate_limit"] = limits
        values.update({k: v for k, v in overrides.items() if v is not None})
        for required in ("account_sid", "auth_token", "account_type"):
            if required not in values:
                raise ConfigurationError(required, "must not be empty" + _hint(required))
        return cls(**values)
