"""`-v/--verbose`: the library's log on stderr, one line per call and wait, never a secret; and
without it, a library log that stays silent (each error reaches the user as the command's own
one line)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import IO

__all__ = [
    "known_secrets",
    "register_origin",
    "register_secret",
    "silence_library_log",
    "verbose_logging",
]

#: Secrets the command line holds (a token read from a file, the sandbox's token), besides the
#: ones in the environment: never printed, not even by `-v`.
_SECRETS: set[str] = set()
SECRET_ENV = ("IMPACT_AUTH_TOKEN", "IMPACT_POSTBACK_TOKEN")


def register_secret(value: str | None) -> None:
    if value:
        _SECRETS.add(value)


#: API origins: `-v` shows paths on them (the origin is said once, by the command).
_ORIGINS: set[str] = set()


def register_origin(base_url: str) -> None:
    _ORIGINS.add(base_url.rstrip("/"))


def known_secrets() -> Iterable[str]:
    yield from _SECRETS
    for name in SECRET_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            yield value


class _Scrub(logging.Filter):
    """Replaces every secret in a record's final text by `***` (a belt to the braces of the
    library, which never logs a token)."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in self.secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        for origin in _ORIGINS:
            text = text.replace(f" {origin}/", " /")
        record.msg, record.args = text, None
        return True


#: The library's log has no place on stderr without `-v`: each error it logs reaches the user as
#: the command's own one line (without a handler, Python's last resort would print it too).
_SILENT = logging.NullHandler()


def silence_library_log() -> None:
    logging.getLogger("reportexport_async").addHandler(_SILENT)  # added once, however often


def verbose_logging(
    enabled: bool,
    *,
    secrets: Callable[[], Iterable[str]] = known_secrets,
    stream: IO[str] | None = None,
) -> Callable[[], None]:
    """`-v`: the library's log on stderr, one line each: every call (method, path, status, time)
    and every wait. Returns the function that undoes it."""
    if not enabled:
        return lambda: None
    logger = logging.getLogger("reportexport_async")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_Scrub(secrets))
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before)

    return undo
