"""Durable writes, in one place: a file appears whole under its name or not at all.

Every file the library writes (a download, the manifest, a merged file) goes to `<name>.part`
first, is flushed and fsynced, renamed over `<name>`, and the folder is fsynced so the rename
itself survives a power cut. A failure removes the `.part` and leaves the previous file, if any,
whole. All of it is blocking: run it in a worker thread.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_folder", "part_of", "publish"]


def part_of(dest: Path) -> Path:
    """Where `dest` is written before it is published."""
    return dest.with_name(dest.name + ".part")


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    try:
        directory = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some filesystems cannot open folders
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def publish(part: Path, dest: Path, *, sync_folder: bool = True) -> None:
    """Rename a written and fsynced `part` over `dest`, and make the rename durable (with
    `sync_folder=False` the caller fsyncs the folder itself, e.g. once for many renames)."""
    os.replace(part, dest)
    if sync_folder:
        fsync_folder(dest.parent)


def _open_part_locked(part: Path) -> BinaryIO:
    """`part` opened for writing, empty, and locked against the other processes writing the
    same file (several workers on one folder write one manifest): the lock is taken before the
    file is emptied, and taken again if another writer renamed the file away meanwhile."""
    while True:
        handle = open(part, "ab")  # noqa: SIM115 - returned to the caller, who closes it
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(part).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                handle.truncate(0)
                return handle
        except BaseException:
            handle.close()
            raise
        handle.close()  # published by the other writer: this one starts on a new file


def atomic_write(
    dest: Path, write: Callable[[BinaryIO], object], *, sync_folder: bool = True
) -> None:
    """Write `dest` through `write(handle)`: `.part`, flush, fsync, publish. On any failure the
    `.part` is removed and the exception goes on. Writers in several processes take turns."""
    part = part_of(dest)
    try:
        with _open_part_locked(part) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            # under the lock: the next writer waits for the rename
            publish(part, dest, sync_folder=sync_folder)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
