"""Merging the chunk files of one export into one file, in date order.

CSV keeps a single header, JSON becomes one array, XML one `<Records>` list. The merged file is
written durably (`machine.files.atomic_write`): a reader never sees it half written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ..machine.files import atomic_write

__all__ = ["merge_files"]

_XML_OPEN = b"<Records>"
_XML_CLOSE = b"</Records>"
_PIECE = 1 << 20


def merge_files(files: Sequence[Path], target: Path, fmt: str) -> None:
    """Stream `files` (chunk results of format `fmt`, in the order given) into `target`.
    Blocking: run it in a thread."""
    writers = {"CSV": _csv, "JSON": _json}
    write = writers.get(fmt.upper(), _xml)
    atomic_write(target, lambda out: write(files, out))


def _csv(files: Sequence[Path], out: BinaryIO) -> None:
    for index, path in enumerate(files):
        with open(path, "rb") as source:
            header = source.readline()
            if index == 0:
                out.write(header)
            while piece := source.read(_PIECE):
                out.write(piece)


def _json(files: Sequence[Path], out: BinaryIO) -> None:
    out.write(b"[\n")
    first = True
    for path in files:
        body = path.read_bytes().strip()
        inner = body[1:-1].strip() if body.startswith(b"[") else body
        if inner:
            if not first:
                out.write(b",\n")
            out.write(inner)
            first = False
    out.write(b"\n]\n")


def _xml(files: Sequence[Path], out: BinaryIO) -> None:
    tail = b"\n"
    for index, path in enumerate(files):
        body = path.read_bytes()
        start = body.find(_XML_OPEN)
        stop = body.rfind(_XML_CLOSE)
        if start < 0 or stop < 0:
            raise ValueError(f"{path} is not an XML result with <Records>")
        if index == 0:
            out.write(body[: start + len(_XML_OPEN)])
            tail = body[stop:]
        out.write(body[start + len(_XML_OPEN) : stop])
    out.write(tail)
