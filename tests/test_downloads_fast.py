"""The fast download path: `_DiskWriter` gets batches of pieces as lists, writes them
unbuffered with `os.write` and hashes them in another thread. Every byte is written once, in
order, and hashed; a short write is completed; a failure removes the partial file."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reportexport_async.transport import downloads


def _pieces(total: int, seed: int) -> list[bytes]:
    """Pieces of uneven sizes, as the network gives them."""
    rng = random.Random(seed)
    pieces, left = [], total
    while left:
        size = min(left, rng.choice((1, 17, 4096, 65536, 262144, 262143)))
        pieces.append(rng.randbytes(size))
        left -= size
    return pieces


async def _write(part: Path, dest: Path, pieces: list[bytes], batch: int) -> downloads._DiskWriter:
    writer = downloads._DiskWriter(part)
    current: list[bytes] = []
    size = 0
    for piece in pieces:
        current.append(piece)
        size += len(piece)
        if size >= batch:
            await writer.put(current)
            current, size = [], 0
    if current:
        await writer.put(current)
    await writer.drain()
    writer.finish(part, dest)
    return writer


@pytest.mark.parametrize("batch", [1, 300_000, 4 << 20])
async def test_every_byte_is_written_in_order_and_hashed(tmp_path: Path, batch: int) -> None:
    pieces = _pieces(9 * (1 << 20) + 123, seed=batch)
    body = b"".join(pieces)
    part, dest = tmp_path / "r.csv.part", tmp_path / "r.csv"
    writer = await _write(part, dest, pieces, batch)
    assert dest.read_bytes() == body
    assert writer.digest.hexdigest() == hashlib.sha256(body).hexdigest()
    assert not part.exists()


async def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def short_write(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, memoryview(data)[:1000])

    monkeypatch.setattr(downloads.os, "write", short_write)
    pieces = _pieces(3 * 262144 + 5, seed=1)
    part, dest = tmp_path / "r.csv.part", tmp_path / "r.csv"
    await _write(part, dest, pieces, 1 << 20)
    assert dest.read_bytes() == b"".join(pieces)


async def test_a_refused_write_fails_and_abort_removes_the_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    part = tmp_path / "r.csv.part"
    writer = downloads._DiskWriter(part)
    monkeypatch.setattr(downloads.os, "write", full_disk)
    await writer.put([b"x" * 10_000])
    with pytest.raises(OSError, match="No space left"):
        await writer.drain()
    writer.forget()
    writer.abort(part)
    assert not part.exists()


def test_renames_finishing_together_share_one_folder_fsync_that_began_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group fsync of a folder: 12 downloads finishing at once need far fewer than 12 fsyncs,
    and each returns only after an fsync that began after its own rename was announced."""
    events: list[tuple[str, int]] = []
    guard = threading.Lock()

    def slow_fsync(folder: Path) -> None:
        with guard:
            number = 1 + sum(1 for kind, _ in events if kind == "begin")
            events.append(("begin", number))
        time.sleep(0.05)
        with guard:
            events.append(("end", number))

    monkeypatch.setattr(downloads, "fsync_folder", slow_fsync)
    syncer = downloads._FolderSync()
    covered: dict[int, tuple[int, int]] = {}  # caller -> (fsyncs begun before it, last ended)

    def one(n: int) -> None:
        with guard:
            before = sum(1 for kind, _ in events if kind == "begin")
        syncer.sync(tmp_path)
        with guard:
            covered[n] = (before, max(k for kind, k in events if kind == "end"))

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(one, range(12)))
    fsyncs = sum(1 for kind, _ in events if kind == "begin")
    assert len(covered) == 12
    assert 1 <= fsyncs <= 3
    # The fsync each caller waited for began after its call: its number is above the count of
    # fsyncs already begun when it asked.
    assert all(last > before for before, last in covered.values())


async def test_a_small_result_without_a_length_is_saved_without_threads_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Content-Length (chunked): a body that ends within the small-result bound is written in
    one hop, with its sha256; a larger one still streams through the writer."""
    from aiohttp import web

    from reportexport_async.transport.session import Session

    from .conftest import loopback_config

    small, large = b"a,b\n" * 1000, random.Random(3).randbytes(downloads._SMALL + 300_000)

    async def answer(request: web.Request) -> web.StreamResponse:
        body = small if request.path == "/small" else large
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 100_000):
            await response.write(body[start : start + 100_000])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/small", answer)
    app.router.add_get("/large", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    writers: list[object] = []
    real_writer = downloads._DiskWriter

    def counted_writer(part: Path) -> downloads._DiskWriter:
        writers.append(part)
        return real_writer(part)

    monkeypatch.setattr(downloads, "_DiskWriter", counted_writer)
    config = loopback_config(port)
    try:
        async with Session(config) as session:
            for name, body in (("small", small), ("large", large)):
                dest = tmp_path / f"{name}.csv"
                async with session.stream(f"http://127.0.0.1:{port}/{name}", None) as response:
                    assert response.content_length is None
                    result = await downloads.save_response(session, response, dest, "J")
                assert dest.read_bytes() == body
                assert (result.size, result.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    finally:
        await runner.cleanup()
    assert writers == [tmp_path / "large.csv.part"]
    assert not list(tmp_path.glob("*.part"))
