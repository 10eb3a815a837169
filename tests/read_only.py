"""Real read-only and locked ledgers for the tests, also when the tests run as root.

`chmod` alone does not stop root (CAP_DAC_OVERRIDE writes through any mode bits), so as root a
file or folder is also given the immutable attribute (`chattr +i`: refused to root as well; it
needs CAP_LINUX_IMMUTABLE and a file system with the attribute, such as ext4). Each condition is
proven by a write attempt before a test relies on it; when it cannot be produced the test is
skipped with the reason. A lock is held by another process, as in real life.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest


def _writable(path: Path) -> bool:
    """Whether this process can really write `path` (a file) or create a file in it (a folder)."""
    try:
        if path.is_dir():
            probe = path / ".write-probe"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            probe.unlink()
        else:
            with open(path, "r+b"):
                pass
    except OSError:
        return False
    return True


def _chattr(flag: str, path: Path) -> bool:
    tool = shutil.which("chattr")
    if tool is None:
        return False
    done = subprocess.run([tool, flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (a file or a folder) is read-only for this process inside the block."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = False
    try:
        if _writable(path):
            immutable = _chattr("+i", path)
        if _writable(path):
            pytest.skip(
                f"cannot make {path} read-only for this process: running as uid {os.geteuid()}, "
                "chmod does not stop it and `chattr +i` is missing or refused (it needs "
                "CAP_LINUX_IMMUTABLE and a file system with the immutable attribute)"
            )
        yield
    finally:
        if immutable:
            _chattr("-i", path)
        path.chmod(mode)


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` run so that file modes bind it: as is for a user, and as root without the
    capabilities that bypass them (`setpriv` drops them from the bounding set, so the
    command runs as root but chmod 444 stops it like anyone)."""
    if os.geteuid() != 0:
        return argv
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.skip("running as root and `setpriv` (util-linux) is missing: chmod cannot bind")
    return [tool, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *argv]


_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN " + sys.argv[2])
db.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@contextmanager
def locked_by_another_process(path: Path, kind: str = "IMMEDIATE") -> Iterator[None]:
    """Another process holds a write transaction (`IMMEDIATE`: writers wait, WAL readers do not;
    `EXCLUSIVE` on a rollback-journal file: readers wait too) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        with suppress(OSError):
            assert holder.stdin is not None
            holder.stdin.close()
        holder.wait(timeout=10)
