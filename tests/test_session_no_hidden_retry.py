"""The session sends every request itself: aiohttp's own silent second try of an idempotent
request on a cut keep-alive connection is off, because the first try may have reached the server
and been counted against a daily quota (ReportExport is a GET) while the unseen second one, if it
cannot connect, would make the call look never sent and its quota unit refunded."""

from __future__ import annotations

import asyncio

import pytest

from reportexport_async.transport.session import Session

from .conftest import loopback_config


async def test_a_get_cut_on_a_reused_connection_is_not_sent_again_behind_our_back() -> None:
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.readuntil(b"\r\n\r\n"):
            received.append(request.split(b"\r\n", 1)[0])
            if len(received) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
            else:  # the second request is read (and would be counted), then the line is cut
                writer.transport.abort()
                return

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = loopback_config(port)
    try:
        async with Session(config) as session:
            async with session.stream(f"http://127.0.0.1:{port}/first", None) as response:
                assert await response.read() == b"ok"
            with pytest.raises(Exception):  # noqa: B017, PT011 - the cut, however it is named
                async with session.stream(f"http://127.0.0.1:{port}/second", None) as response:
                    await response.read()
    finally:
        server.close()
        await server.wait_closed()
    # Two requests reached the server, the second once: no third one on a new connection.
    assert received == [b"GET /first HTTP/1.1", b"GET /second HTTP/1.1"]
