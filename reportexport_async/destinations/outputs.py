"""Outputs checked and prepared before any call: the one place every entry point (the `Client`'s
methods, the orchestrator, `sync` and the command line) asks whether its results can be written.

A result is downloaded after its job has run, so a place that cannot take it would be found only
once the quota is spent. These checks run first, and cost no call:

- `prepare_file(path)`: the parent folders are made (as the command line always did); a path
  that is a folder, a parent that is a file, a name the file system refuses (too long), or a
  folder that cannot be written is a `ConfigurationError` naming the argument;
- `prepare_folder(path)`: the folder is made; a file in its place, or a folder that cannot be
  written, is a `ConfigurationError` naming the argument;
- `check_folder(path)`: the same judgement, making nothing (a dry run leaves no trace).

Writability is proven by writing: an empty probe file is created and removed, since permission
bits do not tell (the superuser ignores them, a read-only mount does not show in them).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import ConfigurationError
from ..machine.files import part_of

__all__ = ["check_folder", "prepare_file", "prepare_folder"]


def prepare_file(path: str | Path, *, argument: str = "out") -> Path:
    """`path` can take a result file: its folders exist (made when missing) and can be written,
    and its name (with the `.part` written first) is one the file system accepts."""
    path = Path(path)
    if stat.S_ISDIR(_mode(path, argument)):
        raise ConfigurationError(
            argument, f"{str(path)!r} is a folder; give the path of a file in it, such as "
            f"{str(path / ('result' + (path.suffix or '.csv')))!r}",
        )  # fmt: skip
    folder = path.parent
    prepare_folder(folder, argument=argument)
    _check_name(folder, part_of(path).name, path, argument)
    return path


def prepare_folder(path: str | Path, *, argument: str = "out") -> Path:
    """`path` is a folder that can be written (made, with its parents, when missing)."""
    path = Path(path)
    mode = _mode(path, argument)
    if mode and not stat.S_ISDIR(mode):
        raise ConfigurationError(argument, f"{str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".reportexport-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(argument, _cannot(path, exc)) from None
    return path


def check_folder(path: str | Path, *, argument: str = "out") -> None:
    """Would `prepare_folder` pass? Judged on the folder or its nearest existing parent, without
    making anything."""
    path = Path(path)
    probe = path
    while not _mode(probe, argument) and probe.parent != probe:
        probe = probe.parent
    if not stat.S_ISDIR(_mode(probe, argument)):
        raise ConfigurationError(argument, f"{str(probe)!r} is a file, not a folder")
    for part in path.parts:  # a name no folder can have is refused now, not at the real run
        _check_name(probe, part, path, argument)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigurationError(argument, f"{str(path)!r} cannot be written (permission denied)")


def _mode(path: Path, argument: str) -> int:
    """The path's file mode, 0 when nothing is there (or a file stands in its way); a path the
    system refuses to look up (a name too long, a loop of links) is a `ConfigurationError`."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except OSError as exc:
        raise ConfigurationError(argument, _cannot(path, exc)) from None


def _check_name(folder: Path, name: str, path: Path, argument: str) -> None:
    """A name longer than the folder's file system allows is refused (ENAMETOOLONG)."""
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255  # the common limit, when the file system does not say
    if len(os.fsencode(name)) > longest:
        exc = OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        raise ConfigurationError(argument, _cannot(path, exc))


def _cannot(path: Path, exc: OSError) -> str:
    return f"{str(path)!r} cannot be written ({exc.strerror or exc})"
