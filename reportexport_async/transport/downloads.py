"""Streaming a job's result to disk, durably, without holding it in memory.

`GET /Jobs/{Id}/Download` answers 202 with the Job while it is not complete, 302 to a short-lived
signed URL on another origin, or 200 with the bytes under `Mode=Stream` (docs/api-facts.md
§2). This module:

- waits on 202 with the poll schedule, and stops with `JobFailed` when the Job says FAILED or
  CANCELLED;
- follows the 302 by hand, without `Authorization` (the session's redirect policy), and goes back
  to the Download endpoint for a fresh signed URL when one has expired or is refused;
- streams into `<dest>.part` while hashing, in a writer and a hasher thread fed with batches of
  the pieces as the network gave them (network reads, disk writes and hashing overlap; at most
  about `(_IN_FLIGHT + 1) x _BATCH` bytes in memory);
- checks the byte count against `Content-Length` (a truncated body is downloaded again), then
  fsyncs, renames over `dest` and fsyncs the folder (way 9 of docs/guide.md): `dest` is either
  absent, the previous file, or the whole new one, never half-written.

A small result (at most `_SMALL` bytes, by its `Content-Length` or, without one, by its end
arriving first) is read whole and costs one hop to a small pool of threads shared by every
download (`_DISK`), which write, fsync, rename and hash it in one pass; no thread of its own.
The folder's fsync is shared: one fsync of a folder covers every rename made in it before that
fsync began, so downloads finishing together into one folder share it (`_FolderSync`, in the
same hop as the rename). The result is written into the caller's `Receipt` in the rename's
cancellation shield, after the fsync that covers the rename: a caller cancelled right after
still knows the file is there (and records it; the download itself never writes the ledger).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import aiohttp
import anyio

from ..core.models import Job, JobStatus
from ..core.requests import Endpoint, build_download
from ..core.responses import (
    DownloadPending,
    DownloadRedirect,
    check_download_integrity,
    interpret_download,
)
from ..errors import (
    JobFailed,
    JobNotReady,
    OutputError,
    ReportExportError,
    SignedURLRefused,
)
from ..machine.files import atomic_write, fsync_folder, part_of, publish
from .session import Session, _parse_body

__all__ = ["DownloadResult", "download_job"]

log = logging.getLogger("reportexport_async.transport.downloads")

_CHUNK = 1 << 20  # the most bytes asked of the network at a time (it gives up to 256 KiB)
# Pieces are handed to the threads in batches of at least this many bytes: one thread hop per
# 4 MiB, not per piece. 1 MiB batches cost more CPU (more hops, more page faults as freed
# batches are given back to the OS and taken again), as the repository's client-download
# benchmark measured.
_BATCH = 4 << 20
_IN_FLIGHT = 4  # batches waiting for each thread, at most (memory: ~(_IN_FLIGHT + 1) x _BATCH)
_SMALL = 1 << 20  # results up to this size are read whole and written in one thread hop
_WRITEBACK = 32 << 20  # start writing out every this many bytes
# Linux: starting writeback early is a hint; elsewhere the fsync at the end does it all.
_FADVISE = (
    (lambda fd, offset, length: os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED))
    if hasattr(os, "posix_fadvise")
    else None
)
_MAX_ERROR_BODY = 1 << 20


@dataclass(frozen=True)
class DownloadResult:
    """A result file on disk: where, how many bytes, and their sha256."""

    job_id: str
    path: Path
    size: int
    sha256: str


class _DiskWriter:
    """Writes and hashes batches in two threads of its own, in order, while the event loop keeps
    reading: hashing (hashlib releases the GIL) and writing overlap each other and the network.
    A batch is the list of pieces as the network gave them, not joined (a copy of every byte
    saved); both threads get the same list. The file is unbuffered: `os.write` straight from
    each piece, no copy into a Python buffer. At most `_IN_FLIGHT` batches wait per thread, so
    memory stays bounded. Every `_WRITEBACK` bytes the kernel is told to start writing the range
    out, so the fsync at the end is short and the page cache does not swell with a multi-GB
    result."""

    def __init__(self, part: Path) -> None:
        # Unbuffered (a FileIO): nothing is left to flush when closing, also on a full disk.
        self.handle: IO[bytes] = open(part, "wb", buffering=0)  # noqa: SIM115 - closed in finish()/abort()
        self.digest = hashlib.sha256()
        self._write = ThreadPoolExecutor(1, thread_name_prefix="reportexport-write")
        self._hash = ThreadPoolExecutor(1, thread_name_prefix="reportexport-hash")
        self._pending: deque[asyncio.Future[None]] = deque()
        self._written = 0
        self._advised = 0

    def _write_batch(self, pieces: list[bytes]) -> None:
        fd = self.handle.fileno()
        for piece in pieces:
            done = os.write(fd, piece)
            while done < len(piece):  # a short write: rare on a regular file, but allowed
                done += os.write(fd, memoryview(piece)[done:])
            self._written += done
        if self._written - self._advised >= _WRITEBACK and _FADVISE is not None:
            _FADVISE(fd, self._advised, self._written - self._advised)
            self._advised = self._written

    def _hash_batch(self, pieces: list[bytes]) -> None:
        update = self.digest.update
        for piece in pieces:
            update(piece)

    async def put(self, pieces: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._write, self._write_batch, pieces))
        self._pending.append(loop.run_in_executor(self._hash, self._hash_batch, pieces))
        while len(self._pending) > 2 * _IN_FLIGHT:
            await self._pending.popleft()

    async def drain(self) -> None:
        while self._pending:
            await self._pending.popleft()

    def _shutdown(self) -> None:
        self._write.shutdown(wait=True, cancel_futures=True)
        self._hash.shutdown(wait=True, cancel_futures=True)

    def finish(self, part: Path, dest: Path) -> None:
        """Blocking: flush, fsync, close, rename over `dest` (the caller fsyncs the folder)."""
        self._shutdown()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        publish(part, dest, sync_folder=False)

    def forget(self) -> None:
        """In the event loop, on failure: the chunks still queued will not be awaited (their
        errors, such as the ENOSPC that caused the failure, are read here, not logged later)."""
        for future in self._pending:
            if future.done() and not future.cancelled():
                future.exception()
            else:
                future.cancel()
        self._pending.clear()

    def abort(self, part: Path) -> None:
        """Blocking: stop, close and remove the partial file (also when closing fails, as it
        does on a full disk when buffered bytes cannot be flushed)."""
        self._shutdown()
        try:
            self.handle.close()
        except OSError:
            pass
        finally:
            part.unlink(missing_ok=True)


def _write_whole(body: bytes, dest: Path) -> str:
    """Blocking: a small result written, fsynced and renamed over `dest` in one go (the caller
    fsyncs the folder); returns its sha256, hashed in the same pass."""
    atomic_write(dest, lambda handle: handle.write(body), sync_folder=False)
    return hashlib.sha256(body).hexdigest()


@dataclass
class _Folder:
    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: int = 0  # renames announced so far (`_FolderSync.sync` calls)
    covered: int = 0  # of these, how many an fsync that began after them has made durable


class _FolderSync:
    """Group fsync of folders, in the worker threads that rename (blocking): a rename is
    durable once an fsync of its folder that began after it has ended. A thread announces its
    rename (a number), then either finds it covered by an fsync that began meanwhile, or runs
    one that covers every rename announced so far. Downloads finishing together into one folder
    share one fsync instead of one each."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.folders: dict[Path, _Folder] = {}

    def sync(self, folder: Path) -> None:
        with self.guard:
            state = self.folders.get(folder)
            if state is None:
                state = self.folders[folder] = _Folder()
            state.asked += 1
            mine = state.asked
        with state.lock:
            if state.covered >= mine:
                return  # an fsync that began after this rename has ended
            with self.guard:
                upto = state.asked  # every rename announced by now is before this fsync
            fsync_folder(folder)
            state.covered = max(state.covered, upto)


_FOLDERS = _FolderSync()  # shared by every download of the process

# The last step of every download (write or fsync, rename, hash, the folder's fsync): a small pool
# shared by every download of the process, bounded, its threads made once and reused.
_DISK = ThreadPoolExecutor(8, thread_name_prefix="reportexport-disk")
R = TypeVar("R")


async def _on_disk(work: Callable[..., R], *args: object) -> R:
    """Run blocking disk work in the shared pool (callers shield it from cancellation)."""
    return await asyncio.get_running_loop().run_in_executor(_DISK, work, *args)


def _save_whole(body: bytes, dest: Path) -> str:
    """Blocking, one hop: write, fsync, rename, hash (`_write_whole`), then the folder's shared
    fsync; returns the sha256."""
    sha256 = _write_whole(body, dest)
    _FOLDERS.sync(dest.parent)
    return sha256


def _finish(writer: _DiskWriter, part: Path, dest: Path) -> None:
    """Blocking, one hop: the streamed file's fsync and rename, then the folder's shared fsync."""
    writer.finish(part, dest)
    _FOLDERS.sync(dest.parent)


@dataclass
class Receipt:
    """Filled with the result the moment its file is in place, in the same cancellation shield
    as the rename and without a pause in between: a caller cancelled afterwards (Ctrl-C, a run
    that stops) still knows the file exists, and records it (the driver, shielded)."""

    result: DownloadResult | None = None


def _saved(result: DownloadResult, receipt: Receipt | None) -> DownloadResult:
    if receipt is not None:
        receipt.result = result
    return result


async def _save_small(
    dest: Path,
    job_id: str,
    pieces: list[bytes],
    expected: int | None,
    receipt: Receipt | None = None,
) -> DownloadResult:
    """A whole result of at most `_SMALL` bytes, already read: one hop to the shared worker
    threads for the disk (write, fsync, rename, hash) instead of a writer and a hasher thread of
    its own, then the folder's shared fsync, then the `receipt`."""
    body = b"".join(pieces)
    problem = check_download_integrity(received=len(body), expected_length=expected, job_id=job_id)
    if problem is not None:
        raise problem
    with anyio.CancelScope(shield=True):  # a rename half done, or not recorded, is not an option
        sha256 = await _on_disk(_save_whole, body, dest)
        result = _saved(
            DownloadResult(job_id=job_id, path=dest, size=len(body), sha256=sha256), receipt
        )
    return result


async def save_response(
    session: Session,
    response: aiohttp.ClientResponse,
    dest: Path,
    job_id: str,
    receipt: Receipt | None = None,
) -> DownloadResult:
    """Stream one 200 answer into `dest` (via `dest.part`) and return what was written. A disk
    that refuses the bytes raises `OutputError` (the one place OSError is translated)."""
    try:
        return await _save_response(session, response, dest, job_id, receipt)
    except OSError as exc:
        raise OutputError(dest, exc) from exc


async def _save_response(
    session: Session,
    response: aiohttp.ClientResponse,
    dest: Path,
    job_id: str,
    receipt: Receipt | None,
) -> DownloadResult:
    part = part_of(dest)
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("identity", "")
    # With a Content-Encoding, Content-Length counts the encoded bytes, not what we write.
    expected = None if encoded else response.content_length
    body = session.iter_body(response, _CHUNK)
    if expected is not None and expected <= _SMALL:
        pieces = [piece async for piece in body]
        return await _save_small(dest, job_id, pieces, expected, receipt)
    pieces = []
    size = 0
    if expected is None:
        # No length known: a body that ends within `_SMALL` bytes is a small result all the same.
        async for piece in body:
            pieces.append(piece)
            size += len(piece)
            if size > _SMALL:
                break
        else:
            return await _save_small(dest, job_id, pieces, expected, receipt)
    received = size
    writer = await anyio.to_thread.run_sync(_DiskWriter, part)
    try:
        async for piece in body:
            received += len(piece)
            pieces.append(piece)
            size += len(piece)
            if size >= _BATCH:
                # Fewer, larger hand-offs to the threads: the network gives small pieces.
                # The list itself is handed over, not b"".join(pieces): no copy.
                await writer.put(pieces)
                pieces, size = [], 0
        if pieces:
            await writer.put(pieces)
        await writer.drain()
        problem = check_download_integrity(
            received=received, expected_length=expected, job_id=job_id
        )
        if problem is not None:
            raise problem
        with anyio.CancelScope(shield=True):  # the rename and its record, never one alone
            await _on_disk(_finish, writer, part, dest)
            result = _saved(
                DownloadResult(
                    job_id=job_id, path=dest, size=received, sha256=writer.digest.hexdigest()
                ),
                receipt,
            )
    except BaseException:
        writer.forget()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.abort, part)
        raise
    return result


async def download_job(
    session: Session,
    job_id: str,
    dest: Path,
    *,
    stream_mode: bool = False,
    max_attempts: int | None = None,
    random_source: Callable[[], float] = random.random,
    wait: bool = True,
    receipt: Receipt | None = None,
) -> DownloadResult:
    """Download a job's result into `dest`, waiting while it is not complete (with
    `wait=False`, a 202 raises `JobNotReady` at once: one call, nothing changed). `receipt`
    gets the result once the file is in place, shielded together with its rename. Failed
    attempts are retried by the session's one retry loop (`Session.retrier`), as its calls are:
    a cut or short body, an expired signed URL, a 5xx or a 429 is downloaded again."""
    config = session.config
    spec = build_download(config.account_type, config.account_sid, job_id, stream=stream_mode)
    url = session.url(spec.path)
    limit = max_attempts or config.retry.max_attempts
    polls = 0  # waiting for the job is not retrying: its own schedule, across attempts

    async def attempt() -> DownloadResult:
        nonlocal polls
        while True:
            async with session.stream(url, Endpoint.DOWNLOAD, params=spec.params) as response:
                if response.status == 200:
                    return await save_response(session, response, dest, job_id, receipt)
                body = None
                if response.status not in (301, 302, 303, 307, 308):
                    raw = await session.read_capped(response, _MAX_ERROR_BODY)
                    body = _parse_body(raw, response.content_type)
                outcome = interpret_download(
                    response.status,
                    dict(response.headers),
                    body,
                    method="GET",
                    url=url,
                    now=session.clock.now(),
                )
            if isinstance(outcome, ReportExportError):
                raise outcome
            if not isinstance(outcome, DownloadPending):
                break
            if not wait and outcome.job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                raise JobNotReady(outcome.job)
            await _wait_pending(session, outcome.job, polls, random_source)
            polls += 1
        if not isinstance(outcome, DownloadRedirect):  # pragma: no cover - every status is one
            raise ReportExportError(f"no download for job {job_id}")
        location = session.url(outcome.location)
        async with session.stream(location, None) as signed:
            if signed.status == 200:
                return await save_response(session, signed, dest, job_id, receipt)
            # 400/401/403 from cloud storage: expired or refused; ask for a fresh URL.
            raise SignedURLRefused(
                signed.status,
                method="GET",
                url=location,
                message=f"signed URL refused (HTTP {signed.status}); asking for a new one",
            )

    def describe(error: ReportExportError, failures: int, delay: float) -> None:
        log.info(
            "download of job %s failed (%s: %s); attempt %d of %d in %.2fs",
            job_id,
            type(error).__name__,
            error,
            failures + 1,
            limit,
            delay,
        )

    return await session.retrier.run(
        attempt,
        Endpoint.DOWNLOAD,
        describe,
        max_attempts=limit,
        timed=False,
        random_source=random_source,
    )


async def _wait_pending(
    session: Session, job: Job, polls: int, random_source: Callable[[], float]
) -> None:
    """202: the job is not complete. A FAILED or CANCELLED job will never have a file."""
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobFailed(job)
    pause = session.config.poll.interval(polls, random_source())
    log.info(
        "job %s is %s: its download is asked for again in %.1f s", job.id, job.status.value, pause
    )
    await session.clock.sleep(pause)
