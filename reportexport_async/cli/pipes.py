"""A reader that goes away (`| head`): the command stops as a Unix tool does, through
cancellation, with nothing more printed, nothing said on stderr and exit code 0."""

from __future__ import annotations

import errno
import os
import select
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import anyio

from ..client import unwrapped

__all__ = ["READER", "echo", "quiet_broken_pipe", "reader_gone_error", "reader_watched"]


def quiet_broken_pipe() -> None:
    """After the reader of stdout went away (`| head`): point stdout at /dev/null, so the
    interpreter's last flush does not fail too (the recipe of Python's `signal` docs). The
    command then ends with exit code 0: what was asked for was printed as far as anyone reads
    it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no real stdout
        pass


class _Reader:
    """Whether the reader of stdout is still there. When it goes away, the command stops as a
    Unix tool does, but through cancellation: the running command's scope is cancelled, so a
    run cleans up as after Ctrl-C (the manifest written, the ledger's jobs kept for the next
    run to re-attach to), nothing more is printed, nothing is said on stderr, and the exit code
    is 0. Found by the first write that fails or, on a pipe, by the pipe itself, at once, when
    the command has nothing to print for a while (a backfill's chunks on a pipe)."""

    def __init__(self) -> None:
        self.gone = False
        self.scope: anyio.CancelScope | None = None

    def reset(self) -> None:
        self.gone, self.scope = False, None

    def lost(self) -> None:
        if self.gone:
            return
        self.gone = True
        quiet_broken_pipe()
        if self.scope is not None:
            self.scope.cancel()


READER = _Reader()


def echo(text: str, stream: IO[str] | None = None) -> None:
    """`text` and a newline on stdout (or `stream`), flushed; nothing once the reader is gone."""
    stream = sys.stdout if stream is None else stream
    if READER.gone and stream is sys.stdout:
        return
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            READER.lost()


def _watched_pipe() -> int | None:
    """stdout's descriptor when it is a pipe that poll(2) can watch, else None."""
    try:
        fd = sys.stdout.fileno()
        return fd if hasattr(select, "poll") and stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, AttributeError):  # replaced by a test, or closed
        return None


def _reader_closed(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


async def _watch(fd: int) -> None:
    # The write end of a pipe is never readable: waiting "for reading" wakes only when the pipe
    # reports an error, which it does once its last reader is gone.
    while not READER.gone and not _reader_closed(fd):
        try:
            await anyio.wait_readable(fd)
        except OSError:  # stdout is no pipe any more (the reader left: it is /dev/null now)
            break
        if not _reader_closed(fd):  # a wake-up for something else: look again later
            await anyio.sleep(0.5)
    READER.lost()


@asynccontextmanager
async def reader_watched() -> AsyncIterator[None]:
    """The body runs until it ends, or until the reader of stdout goes away: then it is
    cancelled, and the block ends normally with `READER.gone` set."""
    with anyio.CancelScope() as scope:
        READER.scope = scope
        try:
            fd = _watched_pipe()
            if fd is None:
                yield
            else:
                with unwrapped():
                    async with anyio.create_task_group() as group:
                        group.start_soon(_watch, fd)
                        yield
                        group.cancel_scope.cancel()
        finally:
            READER.scope = None


def reader_gone_error() -> BrokenPipeError:
    return BrokenPipeError(errno.EPIPE, "the reader of stdout went away")
