"""Which proxy a request goes through: the standard variables, or the `proxy` setting.

The session never lets aiohttp read the environment itself (`trust_env`), because that also reads
`~/.netrc` and could send credentials from it. It reads the variables here instead:

- `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http URLs (lower case wins over upper case, as in
  curl and urllib; `HTTP_PROXY` in upper case is ignored when `REQUEST_METHOD` says the process
  is a CGI script, where it can be set by a request header, "httpoxy");
- `NO_PROXY`: comma- or space-separated host names (a suffix match: `example.com` and
  `.example.com` cover `api.example.com`), `host:port`, IP addresses, CIDR blocks
  (`10.0.0.0/8`), or `*` for every host. Written here rather than taken from `urllib.request`,
  whose matching has no CIDR blocks and which the pure core does not import;
- the `proxy` setting: a proxy for every request (still minus `NO_PROXY`), or `direct` for none,
  whatever the environment says.

Only `http://` proxies: an https site is reached through a `CONNECT` tunnel, so the proxy sees the
host name and port and nothing else, and `Authorization` travels inside TLS. A request that
carries credentials over plain http (only ever to this machine's loopback, the local sandbox)
never goes through a proxy, which would read them. Proxy credentials (`http://user:pass@host`)
become a `Proxy-Authorization` header for the proxy alone, and never show in a repr.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError

__all__ = ["DIRECT", "ProxyRoute", "ProxySettings", "parse_proxy", "proxy_settings", "route_for"]

DIRECT = "direct"


@dataclass(frozen=True)
class ProxyRoute:
    """A proxy to send a request through: its URL (no credentials in it) and the
    `Proxy-Authorization` value, if it takes credentials."""

    url: str
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProxySettings:
    """Proxies by URL scheme, and the hosts that bypass them; `direct`: no proxy at all."""

    http: ProxyRoute | None = None
    https: ProxyRoute | None = None
    no_proxy: str = ""
    direct: bool = False


def parse_proxy(text: str) -> ProxyRoute:
    """`http://[user:pass@]host[:port][/]`, or `host:port` (http assumed, as curl does).
    Raises `ValueError` with a message that never quotes the text (it may hold a password)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid proxy URL") from None
    if parts.scheme.lower() != "http":
        raise ValueError(
            "only http:// proxies are supported (an https site is still reached through an "
            "encrypted CONNECT tunnel)"
        )
    if not parts.hostname:
        raise ValueError("needs a host, e.g. http://proxy.example.com:3128")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be a proxy origin, without a path or a query")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"http://{host}" + (f":{port}" if port is not None else "")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return ProxyRoute(url, authorization)


def _variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(the variable's name as set, its value): lower case first, then upper case."""
    for candidate in (name.lower(), name.upper()):
        if candidate == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            continue  # a CGI request header can set it ("httpoxy")
        value = environ.get(candidate, "").strip()
        if value:
            return candidate, value
    return None


def _route(environ: Mapping[str, str], name: str) -> ProxyRoute | None:
    found = _variable(environ, name)
    if found is None:
        return None
    variable, value = found
    try:
        return parse_proxy(value)
    except ValueError as exc:
        raise ConfigurationError(variable, str(exc)) from None


def proxy_settings(configured: str | None, environ: Mapping[str, str]) -> ProxySettings:
    """The proxies of a session: from `configured` (the `proxy` setting: a URL, or `direct`) or,
    when it is None, from the standard variables in `environ`. A bad value raises
    `ConfigurationError` naming the setting or the variable (`HTTPS_PROXY`)."""
    if configured is not None and configured.strip().lower() == DIRECT:
        return ProxySettings(direct=True)
    no_proxy = (_variable(environ, "no_proxy") or ("", ""))[1]
    if configured is not None:
        try:
            route = parse_proxy(configured)
        except ValueError as exc:
            raise ConfigurationError("proxy", str(exc)) from None
        return ProxySettings(http=route, https=route, no_proxy=no_proxy)
    return ProxySettings(
        http=_route(environ, "http_proxy"), https=_route(environ, "https_proxy"), no_proxy=no_proxy
    )


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    name = host.lower().rstrip(".").strip("[]")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        wanted_port: int | None = None
        if entry.startswith("["):  # [::1]:8080 or [::1]
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                wanted_port = int(rest[1:])
        elif entry.count(":") == 1:
            bare, _, port_text = entry.partition(":")
            if port_text.isdigit():
                entry, wanted_port = bare, int(port_text)
        if wanted_port is not None and wanted_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.removeprefix("*").removeprefix(".").rstrip(".")
        if entry and (name == entry or name.endswith("." + entry)):
            return True
    return False


def route_for(url: str, settings: ProxySettings, *, carries_credentials: bool) -> ProxyRoute | None:
    """The proxy for one request to `url`, or None to go direct."""
    if settings.direct:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http" and carries_credentials:
        return None  # the proxy would read the Authorization header of a plain-http request
    route = settings.https if scheme == "https" else settings.http if scheme == "http" else None
    if route is None or _bypassed(parts.hostname or "", parts.port, settings.no_proxy):
        return None
    return route
