"""A measured run in a fresh process of its own: the parent sends the scenario as one JSON line
on stdin (it carries the token, which must not be on a command line), the child answers one JSON
line of figures on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_spec", "reply", "run_json_child"]

ROOT = Path(__file__).resolve().parents[1]


def run_json_child(argv: Sequence[str], spec: dict[str, Any], what: str) -> dict[str, Any]:
    """Run `python argv...` from the project's root with `spec` on stdin; its last line."""
    done = subprocess.run(
        [sys.executable, *argv],
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def read_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(sys.stdin.readline())
    return spec


def reply(figures: dict[str, Any]) -> int:
    print(json.dumps(figures), flush=True)
    return 0
