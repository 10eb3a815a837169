"""Streaming a job's result to disk, durably, without holding it in memory.

`GET /Jobs/{Id}/Download` answers 202 with the Job while it is not complete, 302 to a short-lived
signed URL on another origin, or 200 with the bytes under `Mode=Stream` (API-FACTS §2). This
module:

- waits on 202 with the poll schedule, and stops with `JobFailed` when the Job says FAILED or
  CANCELLED;
- follows the 302 by hand, without `Authorization` (the session's redirect policy), and goes back
  to the Download endpoint for a fresh signed URL when one has expired or is refused;
- streams into `<dest>.part` while hashing, in a writer thread fed through a small bounded queue
  (network reads and disk writes overlap; at most `_QUEUE_CHUNKS` x `_CHUNK` bytes in memory);
- checks the byte count against `Content-Length` (a truncated body is downloaded again), then
  fsyncs, renames over `dest` and fsyncs the folder (DESIGN way 9): `dest` is either absent, the
  previous file, or the whole new one, never half-written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import anyio
from anyio.abc import ObjectReceiveStream

from .core.models import Job, JobStatus
from .core.requests import Endpoint, build_download
from .core.responses import (
    DownloadPending,
    DownloadRedirect,
    check_download_integrity,
    interpret_download,
    is_transient,
)
from .errors import (
    DownloadIntegrityError,
    HTTPStatusError,
    JobFailed,
    RateLimited,
    ReportExportError,
    TransportError,
    redact_url,
)
from .session import Session, _parse_body

__all__ = ["DownloadResult", "download_job"]

log = logging.getLogger("reportexport_async.downloads")

_CHUNK = 1 << 20  # bytes handed to the writer thread at a time
_QUEUE_CHUNKS = 4  # chunks buffered between the network and the disk
_MAX_ERROR_BODY = 1 << 20


@dataclass(frozen=True)
class DownloadResult:
    """A result file on disk: where, how many bytes, and their sha256."""

    job_id: str
    path: Path
    size: int
    sha256: str


def _write_chunks(handle: IO[bytes], digest: hashlib._Hash, chunks: list[bytes]) -> None:
    # hashlib releases the GIL on large buffers, so this thread hashes while the loop reads.
    for chunk in chunks:
        digest.update(chunk)
        handle.write(chunk)


def _finish(handle: IO[bytes], part: Path, dest: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(part, dest)
    try:
        directory = os.open(dest.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - some filesystems cannot open folders
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _writer(
    handle: IO[bytes], digest: hashlib._Hash, chunks: ObjectReceiveStream[bytes]
) -> None:
    async with chunks:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(_write_chunks, handle, digest, [chunk])


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The writer's own error out of its task group (a full disk, say), not the group."""
    errors = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    first = (errors or list(group.exceptions))[0]
    if isinstance(first, BaseExceptionGroup):
        return _single(first)
    return first


async def save_response(
    session: Session, response: aiohttp.ClientResponse, dest: Path, job_id: str
) -> DownloadResult:
    """Stream one 200 answer into `dest` (via `dest.part`) and return what was written."""
    part = dest.with_name(dest.name + ".part")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("identity", "")
    # With a Content-Encoding, Content-Length counts the encoded bytes, not what we write.
    expected = None if encoded else response.content_length
    digest = hashlib.sha256()
    received = 0
    handle = await anyio.to_thread.run_sync(open, part, "wb")
    try:
        send, receive = anyio.create_memory_object_stream[bytes](_QUEUE_CHUNKS)
        read_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_writer, handle, digest, receive)
                async with send:
                    pending: list[bytes] = []
                    size = 0
                    try:
                        async for data in session.iter_body(response):
                            pending.append(data)
                            size += len(data)
                            received += len(data)
                            if size >= _CHUNK:
                                await send.send(b"".join(pending))
                                pending, size = [], 0
                    except TransportError as exc:
                        # Kept aside so the bytes already read still reach the disk's writer
                        # cleanly, and the caller sees this error, not a task group's.
                        read_error = exc
                    else:
                        if pending:
                            await send.send(b"".join(pending))
        except BaseExceptionGroup as group_error:
            raise _single(group_error) from None
        if read_error is not None:
            raise read_error
        problem = check_download_integrity(
            received=received, expected_length=expected, job_id=job_id
        )
        if problem is not None:
            raise problem
        await anyio.to_thread.run_sync(_finish, handle, part, dest)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(handle.close)
            await anyio.to_thread.run_sync(lambda: part.unlink(missing_ok=True))
        raise
    return DownloadResult(job_id=job_id, path=dest, size=received, sha256=digest.hexdigest())


async def download_job(
    session: Session,
    job_id: str,
    dest: Path,
    *,
    stream_mode: bool = False,
    max_attempts: int | None = None,
    random_source: Callable[[], float] = random.random,
) -> DownloadResult:
    """Download a job's result into `dest`, waiting while it is not complete."""
    config = session.config
    spec = build_download(config.account_type, config.account_sid, job_id, stream=stream_mode)
    url = session.url(spec.path)
    retry = config.retry
    limit = max_attempts or retry.max_attempts
    failures = 0
    polls = 0
    while True:
        try:
            location: str | None = None
            async with session.stream(url, Endpoint.DOWNLOAD, params=spec.params) as response:
                if response.status == 200:
                    return await save_response(session, response, dest, job_id)
                body = None
                if response.status not in (301, 302, 303, 307, 308):
                    raw = await response.content.read(_MAX_ERROR_BODY)
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
            if isinstance(outcome, DownloadPending):
                await _wait_pending(session, outcome.job, polls, random_source)
                polls += 1
                continue
            if isinstance(outcome, DownloadRedirect):
                location = session.url(outcome.location)
            if location is None:  # pragma: no cover - interpret_download covers every status
                raise ReportExportError(f"no download for job {job_id}")
            async with session.stream(location, None) as signed:
                if signed.status == 200:
                    return await save_response(session, signed, dest, job_id)
                # 400/401/403 from cloud storage: expired or refused; ask for a fresh URL.
                raise HTTPStatusError(
                    signed.status,
                    method="GET",
                    url=location,
                    message=f"signed URL refused (HTTP {signed.status}); asking for a new one",
                )
        except (TransportError, DownloadIntegrityError, HTTPStatusError) as error:
            if isinstance(error, HTTPStatusError) and not _worth_retrying(error, url):
                raise
            failures += 1
            hint = error.retry_after if isinstance(error, RateLimited) else None
            delay = retry.delay_with_hint(failures, hint, random_source())
            if failures >= limit:
                raise
            log.info(
                "download of job %s failed (%s: %s); attempt %d of %d in %.2fs",
                job_id,
                type(error).__name__,
                error,
                failures + 1,
                limit,
                delay,
            )
            await session.clock.sleep(delay)


def _worth_retrying(error: HTTPStatusError, api_url: str) -> bool:
    """A refused signed URL (another origin) is always worth a fresh one; on the API origin only
    transient statuses (5xx, 429) are."""
    if error.path != redact_url(api_url):
        return True
    return is_transient(error)


async def _wait_pending(
    session: Session, job: Job, polls: int, random_source: Callable[[], float]
) -> None:
    """202: the job is not complete. A FAILED or CANCELLED job will never have a file."""
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobFailed(job)
    await session.clock.sleep(session.config.poll.interval(polls, random_source()))
