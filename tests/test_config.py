"""ClientConfig: strict settings, messages that name the setting, a token that never shows."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from reportexport_async.core.personas import AccountType
from reportexport_async.core.policies import PollPolicy, RetryPolicy
from reportexport_async.errors import ConfigurationError
from reportexport_async.transport.config import DEFAULT_BASE_URL, ClientConfig

TOKEN = "tok-VERY-s3cret-123"
GOOD: dict[str, Any] = {"account_sid": "IRabc", "auth_token": TOKEN, "account_type": "brand"}


def make(**changes: Any) -> ClientConfig:
    return ClientConfig(**{**GOOD, **changes})


def test_minimal_config() -> None:
    cfg = make()
    assert cfg.account_type is AccountType.ADVERTISERS
    assert cfg.base_url == DEFAULT_BASE_URL == "https://api.impact.com"
    assert cfg.auth_token.get_secret_value() == TOKEN
    assert cfg.account_root == "/Advertisers/IRabc"
    assert cfg.persona.start_param == "StartDate"
    assert cfg.retry == RetryPolicy()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Advertisers", AccountType.ADVERTISERS),
        ("advertiser", AccountType.ADVERTISERS),
        ("BRAND", AccountType.ADVERTISERS),
        ("Mediapartners", AccountType.MEDIAPARTNERS),
        ("mediapartner", AccountType.MEDIAPARTNERS),
        ("Partner", AccountType.MEDIAPARTNERS),
        ("agency", AccountType.AGENCIES),
        ("Agencies", AccountType.AGENCIES),
        (AccountType.AGENCIES, AccountType.AGENCIES),
    ],
)
def test_account_type_aliases(raw: Any, expected: AccountType) -> None:
    assert make(account_type=raw).account_type is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://api.impact.com/", "https://api.impact.com"),
        ("HTTPS://api.impact.com", "https://api.impact.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("  http://localhost:1234/  ", "http://localhost:1234"),
    ],
)
def test_base_url_normalised(raw: str, expected: str) -> None:
    assert make(base_url=raw).base_url == expected


@pytest.mark.parametrize(
    ("changes", "setting", "fragment"),
    [
        (
            {"account_sid": ""},
            "account_sid",
            "must not be empty (set IMPACT_ACCOUNT_SID or pass account_sid=...)",
        ),
        ({"account_sid": "   "}, "account_sid", "must not be empty"),
        ({"account_sid": "IR abc"}, "account_sid", "whitespace"),
        ({"account_sid": "IR/abc"}, "account_sid", "'/'"),
        ({"auth_token": ""}, "auth_token", "must not be empty (set IMPACT_AUTH_TOKEN"),
        ({"account_type": "wholesaler"}, "account_type", "unknown account type"),
        ({"account_type": "wholesaler"}, "account_type", "IMPACT_ACCOUNT_TYPE"),
        ({"account_type": 7}, "account_type", "must be Advertisers"),
        ({"base_url": "api.impact.com"}, "base_url", "must start with https://"),
        ({"base_url": "ftp://api.impact.com"}, "base_url", "must start with https://"),
        ({"base_url": "https://"}, "base_url", "must include a host"),
        ({"base_url": "https://u:p@api.impact.com"}, "base_url", "user info"),
        ({"base_url": "https://api.impact.com?x=1"}, "base_url", "query"),
        ({"base_url": "https://api.impact.com/v1"}, "base_url", "without a path"),
        ({"base_url": "https://api.impact.com:99999"}, "base_url", "not a valid URL"),
        ({"base_url": ""}, "base_url", "IMPACT_BASE_URL"),
        ({"retry": "fast"}, "retry", "RetryPolicy"),
    ],
)
def test_bad_values_name_the_setting(changes: dict[str, Any], setting: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make(**changes)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")
    assert fragment in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.5.6.7", "http://127.5.6.7"),
        ("http://[::1]:9", "http://[::1]:9"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://LOCALHOST.:1", "http://localhost.:1"),
        ("https://anything", "https://anything"),
        ("https://192.0.2.2:18765", "https://192.0.2.2:18765"),
    ],
)
def test_plain_http_is_accepted_for_loopback_and_https_anywhere(raw: str, expected: str) -> None:
    assert make(base_url=raw).base_url.lower() == expected.lower()


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("http://192.0.2.2:18765", "192.0.2.2"),
        ("http://example.com", "example.com"),
        ("http://10.0.0.1", "10.0.0.1"),
        ("http://127.0.0.1.example.com", "127.0.0.1.example.com"),
        ("http://localhost.example.com:80", "localhost.example.com"),
        ("http://[2001:db8::1]:80", "[2001:db8::1]"),
        ("http://0.0.0.0:8080", "0.0.0.0"),
    ],
)
def test_plain_http_to_another_host_is_refused_without_the_token(raw: str, host: str) -> None:
    """The Basic-auth token would cross the network in clear text."""
    with pytest.raises(ConfigurationError) as info:
        make(base_url=raw)
    message = str(info.value)
    assert info.value.setting == "base_url"
    assert message.startswith(
        "base_url: plain http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); "
        f"use https:// for {host}"
    )
    assert TOKEN not in message
    assert TOKEN not in "".join(traceback.format_exception(info.value))
    with pytest.raises(ConfigurationError, match="plain http://"):
        ClientConfig.from_env({"IMPACT_BASE_URL": raw}, **GOOD)
    with pytest.raises(ConfigurationError, match="plain http://"):
        ClientConfig.model_validate({**GOOD, "base_url": raw})


def test_policy_errors_pass_through() -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig.model_validate({**GOOD, "retry": {"max_attempts": 0}})
    assert info.value.setting == "retry.max_attempts"


def test_model_validate_unknown_setting() -> None:
    with pytest.raises(ConfigurationError, match="colour: is not a known setting"):
        ClientConfig.model_validate({**GOOD, "colour": "blue"})


def test_policies_as_values() -> None:
    cfg = make(retry=RetryPolicy(max_attempts=2), poll=PollPolicy(initial=1.0, maximum=2.0))
    assert cfg.retry.max_attempts == 2
    assert cfg.poll.maximum == 2.0
    from_dict = ClientConfig.model_validate({**GOOD, "retry": {"max_attempts": 3}})
    assert from_dict.retry == RetryPolicy(max_attempts=3)


def test_frozen() -> None:
    cfg = make()
    with pytest.raises(Exception, match="frozen"):
        cfg.account_sid = "other"  # type: ignore[misc]


def test_token_never_in_repr_str_or_dump() -> None:
    cfg = make()
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), str(cfg.model_dump())):
        assert TOKEN not in text
    assert "**********" in repr(cfg)


@pytest.mark.parametrize(
    "changes",
    [
        {"account_sid": ""},
        {"account_type": "nope"},
        {"base_url": "nope"},
        {"auth_token": TOKEN + "\x00"},
        {"retry": TOKEN},
    ],
)
def test_token_not_in_errors_or_tracebacks(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make(**changes)
    err = info.value
    assert err.__cause__ is None
    assert err.__context__ is None
    rendered = "".join(traceback.format_exception(err))
    assert TOKEN not in rendered
    assert TOKEN not in repr(err)


def test_from_env() -> None:
    env = {
        "IMPACT_ACCOUNT_SID": "IRenv",
        "IMPACT_AUTH_TOKEN": TOKEN,
        "IMPACT_ACCOUNT_TYPE": "partner",
        "IMPACT_BASE_URL": "http://127.0.0.1:9999",
        "UNRELATED": "x",
    }
    cfg = ClientConfig.from_env(env)
    assert (cfg.account_sid, cfg.account_type, cfg.base_url) == (
        "IRenv",
        AccountType.MEDIAPARTNERS,
        "http://127.0.0.1:9999",
    )
    overridden = ClientConfig.from_env(env, account_type="agency", base_url=None)
    assert overridden.account_type is AccountType.AGENCIES
    assert overridden.base_url == "http://127.0.0.1:9999"  # None override = not given


def test_from_env_defaults_base_url_and_ignores_empty() -> None:
    env = {
        "IMPACT_ACCOUNT_SID": "IRenv",
        "IMPACT_AUTH_TOKEN": TOKEN,
        "IMPACT_ACCOUNT_TYPE": "brand",
        "IMPACT_BASE_URL": "",
    }
    assert ClientConfig.from_env(env).base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("env", "setting", "variable"),
    [
        ({}, "account_sid", "IMPACT_ACCOUNT_SID"),
        ({"IMPACT_ACCOUNT_SID": "S"}, "auth_token", "IMPACT_AUTH_TOKEN"),
        (
            {"IMPACT_ACCOUNT_SID": "S", "IMPACT_AUTH_TOKEN": "t"},
            "account_type",
            "IMPACT_ACCOUNT_TYPE",
        ),
        (
            {"IMPACT_ACCOUNT_SID": "S", "IMPACT_AUTH_TOKEN": "t", "IMPACT_ACCOUNT_TYPE": "x"},
            "account_type",
            "IMPACT_ACCOUNT_TYPE",
        ),
    ],
)
def test_from_env_missing(env: dict[str, str], setting: str, variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig.from_env(env)
    assert info.value.setting == setting
    assert variable in str(info.value)


def test_from_env_unknown_override() -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        ClientConfig.from_env({}, colour="blue")


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPACT_ACCOUNT_SID", "IRos")
    monkeypatch.setenv("IMPACT_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("IMPACT_ACCOUNT_TYPE", "Agencies")
    monkeypatch.delenv("IMPACT_BASE_URL", raising=False)
    assert ClientConfig.from_env().account_sid == "IRos"


PROXY_SECRET = "pr0xy-pa55word"


def test_proxy_setting_hides_its_password() -> None:
    cfg = make(proxy=f"http://alice:{PROXY_SECRET}@proxy.corp:3128")
    assert cfg.proxy is not None
    assert cfg.proxy.get_secret_value().endswith("@proxy.corp:3128")
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), str(cfg.model_dump())):
        assert PROXY_SECRET not in text
    assert make(proxy=" DIRECT ").proxy == make(proxy="direct").proxy
    assert make().proxy is None  # the standard variables decide


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (f"socks5://alice:{PROXY_SECRET}@proxy:1080", "only http:// proxies"),
        (f"https://alice:{PROXY_SECRET}@proxy:443", "only http:// proxies"),
        (f"http://alice:{PROXY_SECRET}@proxy:3128/x", "without a path"),
        ("  ", "proxy URL"),
    ],
)
def test_a_bad_proxy_names_the_setting_and_hides_the_value(value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make(proxy=value)
    assert info.value.setting == "proxy"
    assert fragment in str(info.value)
    assert PROXY_SECRET not in "".join(traceback.format_exception(info.value))
