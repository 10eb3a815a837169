"""The fast download path: `_DiskWriter` gets batches of pieces as lists, writes them
unbuffered with `os.write` and hashes them in another thread. Every byte is written once, in
order, and hashed; a short write is completed; a failure removes the partial file."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from reportexport_async import downloads


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
