"""Proxies, through a small forwarding proxy on loopback that records every request it is given:
the standard variables and the `proxy` setting are honoured, `.netrc` is never read, and
`Authorization` never reaches the proxy (https goes through its CONNECT tunnel, with TLS inside)
nor any origin but the API's.

The https API is the sandbox behind a TLS front on loopback, with a certificate made for the test
(`openssl`) and trusted through `SSL_CERT_FILE`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reportexport_async import (
    ClientConfig,
    ExportRequest,
    RateLimiter,
    ReportExportClient,
    RetryPolicy,
)
from reportexport_async.errors import ConnectError
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.testing import SandboxTime

from .conftest import SANDBOX_START

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
PROXY_USER, PROXY_PASSWORD = "proxy-user", "proxy-pa55"
NETRC_PASSWORD = "from-the-netrc-0000"
REQUEST = ExportRequest(
    report_id="mp_action_listing_fast", start=date(2026, 1, 1), end=date(2026, 1, 3)
)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class ForwardingProxy:
    """CONNECT tunnels and absolute-form GETs, each recorded; with `credentials`, a request
    without the right `Proxy-Authorization` gets 407."""

    credentials: str | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, OSError):
            writer.close()
            return
        first, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = first.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        self.seen.append(Seen(method, target, headers))
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                writer.close()
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            parts = urlsplit(target)
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            skip = {"proxy-authorization", "proxy-connection", "connection"}
            forwarded = [f"{method} {path} {version}"]
            forwarded += [f"{name}: {value}" for name, value in headers.items() if name not in skip]
            up_writer.write(("\r\n".join([*forwarded, "Connection: close"]) + "\r\n\r\n").encode())
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    @property
    def every_header(self) -> list[str]:
        return [f"{name}: {value}" for seen in self.seen for name, value in seen.headers.items()]


@asynccontextmanager
async def serving(proxy: ForwardingProxy) -> AsyncIterator[ForwardingProxy]:
    server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield proxy
        server.close()


@asynccontextmanager
async def tls_front(port: int, certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    """https://127.0.0.1:<port> in front of a plain-http server on `port`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    return _mint_certificate(tmp_path_factory.mktemp("tls"))


def _mint_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (a new key each time), and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy variable from the machine, and a `.netrc` that would hand out credentials for
    every host of the test to anyone who reads it."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"default login netrc-user password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text(netrc.read_text())
    (tmp_path / ".netrc").chmod(0o600)


@asynccontextmanager
async def account(
    base_url: str | None = None, **config: Any
) -> AsyncIterator[tuple[Sandbox, ReportExportClient]]:
    async with Sandbox(
        clock=ManualClock(SANDBOX_START), job_duration=(10, 10), rows_per_day=5
    ) as sandbox:
        clock = SandboxTime(sandbox)
        settings = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,
            account_type="Mediapartners",
            base_url=base_url or sandbox.base_url,
            **config,
        )
        async with ReportExportClient(
            settings, limiter=RateLimiter(clock=clock), clock=clock, random_source=lambda: 0.5
        ) as client:
            yield sandbox, client


async def export_and_download(client: ReportExportClient, dest: Path) -> int:
    ticket = await client.export(REQUEST)
    await client.wait(ticket.job_id)
    return (await client.download(ticket.job_id, dest)).size


def netrc_leaked(proxy: ForwardingProxy) -> bool:
    return any(NETRC_PASSWORD in base64.b64decode(h.split()[-1] + "==").decode(errors="replace")
               for h in proxy.every_header if "authorization" in h.split(":")[0])  # fmt: skip


async def test_https_goes_through_the_proxys_tunnel_and_authorization_stays_inside_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    proxy = ForwardingProxy(credentials=f"{PROXY_USER}:{PROXY_PASSWORD}")
    async with serving(proxy):
        with_credentials = proxy.url.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")
        monkeypatch.setenv("HTTPS_PROXY", with_credentials)
        monkeypatch.setenv("HTTP_PROXY", with_credentials)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        async with account() as (sandbox, _):
            port = int(sandbox.base_url.rsplit(":", 1)[1])
            async with tls_front(port, certificate) as https_url:
                clock = SandboxTime(sandbox)
                config = ClientConfig(
                    account_sid=sandbox.account_sid,
                    auth_token=sandbox.auth_token,
                    account_type="Mediapartners",
                    base_url=https_url,
                )
                async with ReportExportClient(
                    config, limiter=RateLimiter(clock=clock), clock=clock
                ) as client:
                    size = await export_and_download(client, tmp_path / "r.csv")
                stats = sandbox.stats()
    assert size == (tmp_path / "r.csv").stat().st_size > 0
    tunnels = {seen.target for seen in proxy.seen if seen.method == "CONNECT"}
    assert tunnels == {https_url.removeprefix("https://")}
    # The signed URL (plain http on loopback here, no credentials) went through as a GET.
    signed = [seen for seen in proxy.seen if seen.method == "GET"]
    assert [urlsplit(seen.target).path.startswith("/signed/") for seen in signed] == [True]
    # The proxy saw its own credentials, never the API's, nor the .netrc's.
    assert not any(h.startswith("authorization:") for h in proxy.every_header)
    assert sandbox.auth_token not in "".join(proxy.every_header)
    assert not netrc_leaked(proxy)
    assert all("proxy-authorization" in seen.headers for seen in proxy.seen)
    assert stats["calls"]["ReportExport"] == 1
    assert stats["unauthorized"] == 0
    assert stats["signed_requests_with_authorization"] == 0


async def test_plain_http_with_credentials_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The loopback sandbox over plain http: its calls carry `Authorization` in clear, so they go
    direct although HTTP_PROXY is set; the signed download, which carries none, is proxied."""
    proxy = ForwardingProxy()
    async with serving(proxy):
        monkeypatch.setenv("http_proxy", proxy.url)
        async with account() as (sandbox, client):
            await export_and_download(client, tmp_path / "r.csv")
            api = urlsplit(sandbox.base_url).netloc
            signed_origin = urlsplit(sandbox.signed_base_url).netloc
    targets = [(seen.method, urlsplit(seen.target).netloc) for seen in proxy.seen]
    assert targets == [("GET", signed_origin)]
    assert api not in str(proxy.seen)
    assert not any(
        h.startswith(("authorization:", "proxy-authorization:")) for h in proxy.every_header
    )
    assert not netrc_leaked(proxy)


async def test_the_proxy_setting_and_direct(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    used, ignored = ForwardingProxy(), ForwardingProxy()
    async with serving(used), serving(ignored):
        monkeypatch.setenv("HTTP_PROXY", ignored.url)
        async with account(proxy=used.url) as (_, client):
            await export_and_download(client, tmp_path / "a.csv")
        async with account(proxy="direct") as (_, client):
            await export_and_download(client, tmp_path / "b.csv")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with account() as (_, client):
            await export_and_download(client, tmp_path / "c.csv")
    assert [seen.method for seen in used.seen] == ["GET"]  # the setting's proxy, once
    assert ignored.seen == []  # `direct`, and NO_PROXY, left the variable's proxy unused


async def test_a_proxy_that_wants_credentials_refuses_and_nothing_reaches_the_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    proxy = ForwardingProxy(credentials=f"{PROXY_USER}:{PROXY_PASSWORD}")
    async with serving(proxy):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # no credentials: the .netrc must not help
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        async with account() as (sandbox, _):
            port = int(sandbox.base_url.rsplit(":", 1)[1])
            async with tls_front(port, certificate) as https_url:
                config = ClientConfig(
                    account_sid=sandbox.account_sid,
                    auth_token=sandbox.auth_token,
                    account_type="Mediapartners",
                    base_url=https_url,
                    retry=RetryPolicy(max_attempts=1),
                )
                async with ReportExportClient(config) as client:
                    with pytest.raises(ConnectError, match="proxy refused the connection") as info:
                        await client.get_job("ef134f2a-180b-405d-a91a-b32d2976f51d")
            stats = sandbox.stats()
    assert "407" in str(info.value)
    assert sandbox.auth_token not in str(info.value)
    assert stats["total_calls"] == 0
    assert proxy.seen
    assert not any("proxy-authorization" in seen.headers for seen in proxy.seen)


async def test_sessions_share_one_tls_context_until_the_certificate_file_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """Loading the certificates is made once per setting (one client per account would each
    pay for it), yet a certificate file replaced in place is read again by the next session."""
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(certificate[0].read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
    other = _mint_certificate(tmp_path)
    async with account() as (sandbox, _):
        port = int(sandbox.base_url.rsplit(":", 1)[1])
        config = ClientConfig(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,
            account_type="Mediapartners",
            base_url="https://127.0.0.1:1",  # replaced below, once the front listens
            retry=RetryPolicy(max_attempts=1),
        )
        async with tls_front(port, certificate) as https_url:
            at = config.model_copy(update={"base_url": https_url})
            contexts = []
            for _ in range(2):
                async with ReportExportClient(at) as client:
                    assert await client.reports()
                    contexts.append(client.session.http.connector._ssl)  # type: ignore[union-attr]
            assert contexts[0] is contexts[1]
        async with tls_front(port, other) as https_url:
            at = config.model_copy(update={"base_url": https_url})
            async with ReportExportClient(at) as client:  # still the first file's trust
                with pytest.raises(ConnectError):
                    await client.reports()
            trusted.write_bytes(other[0].read_bytes())  # the new authority, in place
            async with ReportExportClient(at) as client:
                assert await client.reports()
                assert client.session.http.connector._ssl is not contexts[0]  # type: ignore[union-attr]
