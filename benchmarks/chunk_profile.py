"""Where one chunk's time goes: the library child of `benchmarks.backfill_10k` recorded with
py-spy (every thread), summarized by part of the code (`benchmarks.profile_summary`).

    .venv/bin/python -m benchmarks.chunk_profile --chunks 2000
    .venv/bin/python -m benchmarks.chunk_profile --chunks 2000 --root ../other-checkout

One sandbox (as `backfill_10k`'s: instant jobs, no limits), one library run of `--chunks`
one-day chunks at concurrency 8 under `py-spy record --threads --format raw`, and, unrecorded,
the same run again for its CPU time. `--root` runs the library child of another checkout (the
commit before a change, say), with this sandbox and this summary, so that a before and an after
are recorded the same way in the same minutes. Needs py-spy (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .backfill_10k import PY_SPY_RATE, control, sandbox_argv
from .profile_summary import summarize
from .sandbox_throughput import start_server

ROOT = Path(__file__).resolve().parents[1]


def child(root: Path, spec: dict[str, Any], scratch: Path, prefix: Sequence[str]) -> dict[str, Any]:
    """One library run of `root`'s `backfill_10k` child; its JSON line."""
    out, ledger = scratch / "out", scratch / "ledger.sqlite"
    argv = [*prefix, sys.executable, "-m", "benchmarks.backfill_10k", "--child", "library"]
    argv += ["--out", str(out), "--ledger", str(ledger)]
    done = subprocess.run(
        argv, input=json.dumps(spec) + "\n", capture_output=True, text=True, cwd=root
    )
    if done.returncode != 0:
        raise RuntimeError(f"library child failed: {done.stderr.strip()[-3000:]}")
    for leftover in [*scratch.glob("ledger.sqlite*"), *out.rglob("*")]:
        if leftover.is_file():
            leftover.unlink()
    line = [text for text in done.stdout.splitlines() if text.startswith("{")][-1]
    return dict(json.loads(line))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunk_profile")
    parser.add_argument("--chunks", type=int, default=2000, help="one-day chunks (2000)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose library runs")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    args = parser.parse_args(argv)
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else "py-spy"
    end = datetime.now(UTC).date() - timedelta(days=14)
    start = end - timedelta(days=args.chunks - 1)
    with tempfile.TemporaryDirectory(prefix="chunk-profile-") as folder:
        scratch = Path(folder)
        (scratch / "sandbox").mkdir()
        raw = args.raw or scratch / "profile.raw"
        with start_server(sandbox_argv(scratch / "sandbox"), "sandbox") as server:
            info = server.info
            spec = {
                "base_url": info["base_url"], "account_sid": info["account_sid"],
                "auth_token": info["auth_token"], "start": start.isoformat(),
                "end": end.isoformat(), "concurrency": 8, "poll_sleep": 0.05,
            }  # fmt: skip
            asyncio.run(control(str(info["base_url"]), "POST", "reset"))
            record = [spy, "record", "--threads", "--format", "raw"]
            record += ["--rate", str(PY_SPY_RATE), "-o", str(raw), "--"]
            child(args.root, spec, scratch, record)
            asyncio.run(control(str(info["base_url"]), "POST", "reset"))
            plain = child(args.root, spec, scratch, ())
        per_chunk = 1000 * plain["cpu_seconds"] / args.chunks
        print(f"{args.root}: {args.chunks} chunks, unrecorded run {plain['seconds']:.1f} s, "
              f"client CPU {per_chunk:.2f} ms per chunk")  # fmt: skip
        print(summarize(raw.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
