"""Choosing a proxy (`core.proxies`): the standard variables, the `proxy` setting, `NO_PROXY`."""

from __future__ import annotations

import base64

import pytest

from reportexport_async.core.proxies import (
    ProxyRoute,
    ProxySettings,
    parse_proxy,
    proxy_settings,
    route_for,
)
from reportexport_async.errors import ConfigurationError

SECRET = "pr0xy-s3cret"


@pytest.mark.parametrize(
    ("text", "url", "credentials"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128", None),
        ("http://proxy.corp:3128/", "http://proxy.corp:3128", None),
        ("HTTP://Proxy.Corp", "http://proxy.corp", None),
        ("http://[::1]:8080", "http://[::1]:8080", None),
        (f"http://alice:{SECRET}@proxy:8080", "http://proxy:8080", f"alice:{SECRET}"),
        ("http://al%40ce:p%3Ass@proxy:8080", "http://proxy:8080", "al@ce:p:ss"),
    ],
)
def test_parse_proxy(text: str, url: str, credentials: str | None) -> None:
    route = parse_proxy(text)
    assert route.url == url
    expected = None
    if credentials is not None:
        expected = "Basic " + base64.b64encode(credentials.encode()).decode()
    assert route.authorization == expected
    assert SECRET not in repr(route)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"https://bob:{SECRET}@proxy:8443", "only http:// proxies"),
        (f"socks5://bob:{SECRET}@proxy:1080", "only http:// proxies"),
        ("http://", "needs a host"),
        (f"http://bob:{SECRET}@proxy:3128/path", "without a path"),
        (f"http://bob:{SECRET}@proxy:99999", "not a valid proxy URL"),
    ],
)
def test_parse_proxy_refuses_without_quoting_the_url(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        parse_proxy(text)
    assert SECRET not in str(info.value)


def test_variables_lower_case_first_and_httpoxy() -> None:
    environ = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}
    assert proxy_settings(None, environ).https == ProxyRoute("http://lower:1")
    cgi = {"HTTP_PROXY": "http://attacker:80", "REQUEST_METHOD": "GET"}
    assert proxy_settings(None, cgi).http is None  # a CGI request header can set HTTP_PROXY
    assert proxy_settings(None, {**cgi, "http_proxy": "http://ok:3"}).http == ProxyRoute(
        "http://ok:3"
    )


def test_the_setting_wins_over_the_variables() -> None:
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "internal"}
    direct = proxy_settings("direct", environ)
    assert direct.direct
    assert route_for("https://api.impact.com/x", direct, carries_credentials=True) is None
    chosen = proxy_settings("http://mine:2", environ)
    assert chosen.https == chosen.http == ProxyRoute("http://mine:2")
    assert chosen.no_proxy == "internal"  # NO_PROXY still applies to the setting's proxy


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy"])
def test_a_bad_variable_is_named_and_not_quoted(variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        proxy_settings(None, {variable: f"socks5://u:{SECRET}@proxy:1080"})
    assert info.value.setting == variable
    assert SECRET not in str(info.value)


SETTINGS = ProxySettings(http=ProxyRoute("http://p:1"), https=ProxyRoute("http://p:2"))


@pytest.mark.parametrize(
    ("url", "credentials", "expected"),
    [
        ("https://api.impact.com/Jobs", True, "http://p:2"),  # a CONNECT tunnel: TLS inside
        ("https://storage.example/signed?sig=1", False, "http://p:2"),
        ("http://storage.example/signed", False, "http://p:1"),
        ("http://127.0.0.1:8000/Jobs", True, None),  # plain http with credentials: never
        ("ftp://example/file", False, None),
    ],
)
def test_route_by_scheme(url: str, credentials: bool, expected: str | None) -> None:
    route = route_for(url, SETTINGS, carries_credentials=credentials)
    assert (route.url if route else None) == expected


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("*", "https://api.impact.com/", True),
        ("impact.com", "https://api.impact.com/", True),
        ("impact.com", "https://impact.com/", True),
        ("impact.com", "https://notimpact.com/", False),
        (".impact.com", "https://api.impact.com/", True),
        ("*.impact.com", "https://api.impact.com/", True),
        ("other.com, impact.com", "https://api.impact.com/", True),
        ("other.com api.impact.com", "https://API.impact.com./", True),
        ("api.impact.com:8443", "https://api.impact.com/", False),
        ("api.impact.com:443", "https://api.impact.com:443/", True),
        ("10.0.0.0/8", "https://10.1.2.3/", True),
        ("10.0.0.0/8", "https://11.1.2.3/", False),
        ("192.168.1.5", "https://192.168.1.5:9000/", True),
        ("::1", "https://[::1]:8443/", True),
        ("[::1]:8443", "https://[::1]:8443/", True),
        ("[::1]:9", "https://[::1]:8443/", False),
        ("", "https://api.impact.com/", False),
    ],
)
def test_no_proxy(no_proxy: str, url: str, bypassed: bool) -> None:
    settings = ProxySettings(https=ProxyRoute("http://p:2"), no_proxy=no_proxy)
    assert (route_for(url, settings, carries_credentials=False) is None) is bypassed
