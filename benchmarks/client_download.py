"""Client download: `ReportExportClient.download()` of a ~1 GB result beside bare
aiohttp loops that read the same URL to disk, in one run against one sandbox and one job.

    .venv/bin/python -m benchmarks.client_download                  # ~1 GB, 3 rounds
    .venv/bin/python -m benchmarks.client_download --size-mb 200 --repeats 2   # quicker

The sandbox (its own process, `python -m reportexport_async.sandbox --port 0 ...`) makes a
`Mediapartners` CSV job of about `--size-mb` MB. Six methods then download it, each run in a
fresh process of its own (`--child METHOD`) so that its peak memory is its own:

- `library-redirect`: `ReportExportClient.download(job_id, dest)`, default mode (the 302 to the
  signed URL, followed without `Authorization`);
- `library-stream`: the same with `stream_downloads=True` (`Download?Mode=Stream`);
- `durable-signed`, `durable-stream`: the equal-work references, bare aiohttp loops doing what
  the library does to every byte: GET Download with the Basic header (following the 302 by hand,
  for the signed URL), `iter_chunked(1 MiB)` hashed (sha256) and written to `<file>.part`, then
  fsync, rename over the file and fsync of the folder. The targets compare with these;
- `baseline-signed`, `baseline-stream`: the same loops writing the file and nothing else (no
  hashing, no fsync, no rename): not targets, they show what the durable work costs.

Each child reads its idle RSS (`VmRSS`) after imports and after opening its client or session,
resets the peak (`/proc/self/clear_refs`), downloads, and reports the peak (`VmHWM`); growth =
peak - idle. Every file is checked against the sha256 of the sandbox's own result file (and the
sha256 a method computed, against the file's) and deleted before the next run. After one
unmeasured warm-up download, methods are rotated from round to round; figures are medians.
Targets: growth below 64 MB, throughput at least 90 % of the equal-work loop. MB means 10**6
bytes. The figures go into `## Client download` of `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from reportexport_async import ReportExportClient
from reportexport_async.core.models import ExportRequest, Job, JobStatus
from reportexport_async.transport.config import ClientConfig

from .procstats import cpu_seconds, proc_status_kib, process_cpu_seconds, reset_peak_rss
from .results import RESULTS_FILE, fmt, median, ratio, section_head, update_results
from .sandbox_throughput import Server, instant_sandbox_argv, start_server

SECTION_TITLE = "## Client download"
MEMORY_TARGET_MB = 64.0
THROUGHPUT_TARGET = 0.90  # library / the equal-work loop
CHUNK = 1 << 20
MB = 1_000_000
EXPORT_DAYS = 30
FIRST_DAY = date(2025, 1, 1)  # long settled at the sandbox's start time: row counts never change
SANDBOX_START = "2026-06-15T12:00:00Z"
PERSONA = "Mediapartners"
REPORT = "mp_action_listing_fast"
METHODS = (
    "library-redirect",
    "library-stream",
    "durable-signed",
    "durable-stream",
    "baseline-signed",
    "baseline-stream",
)
PAIRS = (  # (label, library method, equal-work loop, bare loop)
    ("302 to the signed URL", "library-redirect", "durable-signed", "baseline-signed"),
    ("`Mode=Stream`", "library-stream", "durable-stream", "baseline-stream"),
)


# -- the child: one download in a fresh process ---------------------------------------------------


@dataclass
class Probe:
    """Memory and time around the download in a child."""

    idle_kib: int = 0
    peak_reset: bool = False
    started: float = 0.0
    cpu_started: float = 0.0

    def begin(self) -> None:
        self.idle_kib = proc_status_kib("VmRSS")
        self.peak_reset = reset_peak_rss()
        self.cpu_started = cpu_seconds()
        self.started = time.perf_counter()

    def end(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        cpu = cpu_seconds() - self.cpu_started
        peak_kib = proc_status_kib("VmHWM")
        if not self.peak_reset:  # ru_maxrss is the peak since the start, imports included
            peak_kib = max(peak_kib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "idle_rss_bytes": self.idle_kib * 1024,
            "peak_rss_bytes": peak_kib * 1024,
            "growth_bytes": max(0, peak_kib - self.idle_kib) * 1024,
            "peak_reset": self.peak_reset,
        }


def download_url(spec: dict[str, Any]) -> str:
    return f"{spec['base_url']}/{PERSONA}/{spec['account_sid']}/Jobs/{spec['job_id']}/Download"


async def run_library(spec: dict[str, Any], out: Path, stream: bool) -> dict[str, Any]:
    config = ClientConfig(
        account_sid=spec["account_sid"],
        auth_token=spec["auth_token"],
        account_type=PERSONA,
        base_url=spec["base_url"],
    )
    probe = Probe()
    async with ReportExportClient(config, stream_downloads=stream) as client:
        probe.begin()
        result = await client.download(spec["job_id"], out)
        figures = probe.end()
        usage = client.usage
    figures.update(
        bytes=result.size,
        sha256=result.sha256,
        path=str(result.path),
        usage={
            "calls": dict(usage.calls),
            "signed_downloads": usage.signed_downloads,
            "bytes_downloaded": usage.bytes_downloaded,
            "retries": usage.retries,
        },
    )
    return figures


async def bare_loop(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    out: Path,
    signed: bool,
    durable: bool,
) -> tuple[int, str | None]:
    """GET, (follow the 302 without credentials,) write 1 MiB chunks: (bytes, sha256 or None).
    `durable`: the library's work, in the plainest loop: hash each chunk, write to `.part`,
    fsync, rename, fsync the folder."""
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        if signed:
            if response.status != 302:
                raise RuntimeError(f"expected 302 from the Download, got {response.status}")
            url, headers = response.headers["Location"], {}
    received = 0
    digest = hashlib.sha256() if durable else None
    target = out.with_name(out.name + ".part") if durable else out
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {response.url.path}: HTTP {response.status}")
        with open(target, "wb") as handle:
            async for chunk in response.content.iter_chunked(CHUNK):
                if digest is not None:
                    digest.update(chunk)
                handle.write(chunk)
                received += len(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    if durable:
        os.replace(target, out)
        folder = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return received, None if digest is None else digest.hexdigest()


async def run_baseline(
    spec: dict[str, Any], out: Path, signed: bool, durable: bool
) -> dict[str, Any]:
    url = download_url(spec)
    if not signed:
        url += "?Mode=Stream"
    headers = {"Authorization": aiohttp.encode_basic_auth(spec["account_sid"], spec["auth_token"])}
    probe = Probe()
    async with aiohttp.ClientSession() as session:
        probe.begin()
        received, sha256 = await bare_loop(session, url, headers, out, signed, durable)
        figures = probe.end()
    figures.update(bytes=received, path=str(out))
    if sha256 is not None:
        figures["sha256"] = sha256
    return figures


def child_main(method: str, out: Path) -> int:
    spec = json.loads(sys.stdin.readline())  # the token comes on stdin, not on the command line
    if method.startswith("library-"):
        figures = asyncio.run(run_library(spec, out, stream=method == "library-stream"))
    else:
        figures = asyncio.run(
            run_baseline(
                spec,
                out,
                signed=method.endswith("-signed"),
                durable=method.startswith("durable-"),
            )
        )
    figures["method"] = method
    print(json.dumps(figures), flush=True)
    return 0


# -- the parent: sandbox, job, runs ---------------------------------------------------------------


@dataclass
class Figures:
    size_bytes: int = 0
    rows: int = 0
    generate_seconds: float = math.nan
    source_sha256: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)
    sha256_seconds_per_gb: float = math.nan
    server: dict[str, Any] = field(default_factory=dict)
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])

    def values(self, method: str, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs if run["method"] == method]

    def mbps(self, method: str) -> list[float]:
        return [run["bytes"] / MB / run["seconds"] for run in self.runs if run["method"] == method]


def sandbox_argv(storage: Path) -> list[str]:
    return instant_sandbox_argv(storage, "--start-time", SANDBOX_START)


def client_config(info: dict[str, Any]) -> ClientConfig:
    return ClientConfig(
        account_sid=info["account_sid"],
        auth_token=info["auth_token"],
        account_type=PERSONA,
        base_url=info["base_url"],
    )


async def completed(client: ReportExportClient, days: int, limit: float = 600.0) -> Job:
    """Export `days` settled days and poll (every 0.25 s, not the client's schedule) until the
    job is COMPLETED."""
    end = FIRST_DAY + timedelta(days=days - 1)
    ticket = await client.export(ExportRequest(report_id=REPORT, start=FIRST_DAY, end=end))
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        job = await client.get_job(ticket.job_id)
        if job.status is JobStatus.COMPLETED:
            return job
        if job.is_final:
            raise RuntimeError(f"job {job.id} ended {job.status.value}")
        await asyncio.sleep(0.25)
    raise TimeoutError(f"job {ticket.job_id} did not complete in {limit} s")


async def prepare_job(info: dict[str, Any], size_mb: float, scratch: Path, figures: Figures) -> Job:
    """Measure bytes per row on one day, then make the ~size_mb job and time its writing."""
    base = str(info["base_url"])
    async with ReportExportClient(client_config(info)) as client:
        probe = await completed(client, 1)
        sample = await client.download(probe.id, scratch / "probe.csv")
        (scratch / "probe.csv").unlink()
        bytes_per_row = sample.size / max(1, probe.records_processed or 0)
        rows_per_day = max(1, math.ceil(size_mb * MB / bytes_per_row / EXPORT_DAYS))
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/_sandbox/configure", json={"rows_per_day": rows_per_day}) as r,
        ):
            if r.status != 200:
                raise RuntimeError(f"configure: HTTP {r.status}: {await r.text()}")
        started = time.perf_counter()
        job = await completed(client, EXPORT_DAYS)
        figures.generate_seconds = time.perf_counter() - started
        figures.rows = job.records_processed or 0
        return job


async def sandbox_stats(info: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{info['base_url']}/_sandbox/stats") as response,
    ):
        return dict(await response.json())


def result_file(storage: Path, job_id: str) -> Path:
    files = [p for p in storage.iterdir() if p.name.startswith(job_id) and p.suffix == ".csv"]
    if len(files) != 1:
        raise RuntimeError(f"cannot find the result file of {job_id} in {storage}")
    return files[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK * 4):
            digest.update(block)
    return digest.hexdigest()


def sha256_cpu_seconds_per_gb() -> float:
    """CPU time of hashlib.sha256 over 10^9 bytes in 4 MiB updates, on one core of this machine."""
    block = os.urandom(4 << 20)
    digest = hashlib.sha256()
    started = time.thread_time()
    for _ in range(math.ceil(1e9 / len(block))):
        digest.update(block)
    return (time.thread_time() - started) * 1e9 / (len(block) * math.ceil(1e9 / len(block)))


def run_child(
    method: str, spec: dict[str, Any], out: Path, server_pid: int | None = None
) -> dict[str, Any]:
    server_cpu = process_cpu_seconds(server_pid) if server_pid else math.nan
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.client_download", "--child", method, "--out", str(out)],
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if server_pid:
        result["server_cpu_seconds"] = process_cpu_seconds(server_pid) - server_cpu
    return result


def check_run(run: dict[str, Any], figures: Figures) -> None:
    """The file is whole and right; the library's own sha256 is the file's."""
    path = Path(run["path"])
    on_disk = sha256_of(path)
    problems = []
    if run["bytes"] != figures.size_bytes or path.stat().st_size != figures.size_bytes:
        problems.append(f"{run['bytes']} bytes, expected {figures.size_bytes}")
    if on_disk != figures.source_sha256:
        problems.append("sha256 of the file differs from the sandbox's result")
    if "sha256" in run and run["sha256"] != on_disk:
        problems.append("the sha256 the method computed is not the file's")
    if "usage" in run:  # the client's own counters: one Download call, the bytes, no retries
        usage = run["usage"]
        signed = 1 if run["method"] == "library-redirect" else 0
        if usage["calls"] != {"Download": 1} or usage["signed_downloads"] != signed:
            problems.append(
                f"unexpected calls {usage['calls']}, signed {usage['signed_downloads']}"
            )
        if usage["bytes_downloaded"] != figures.size_bytes or usage["retries"]:
            problems.append(f"usage counters {usage}")
    if problems:
        raise RuntimeError(f"{run['method']}: " + "; ".join(problems))
    run["verified"] = True


def order_of(repetition: int) -> list[str]:
    """Methods rotated by one place per round, so none always runs first or last."""
    shift = repetition % len(METHODS)
    return list(METHODS[shift:] + METHODS[:shift])


def benchmark(args: argparse.Namespace) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="client-download-") as folder:
        storage = Path(folder) / "sandbox"
        storage.mkdir()
        outputs = args.out_dir or Path(folder) / "out"
        outputs.mkdir(parents=True, exist_ok=True)
        server: Server
        with start_server(sandbox_argv(storage), "sandbox") as server:
            info = server.info
            job = asyncio.run(prepare_job(info, args.size_mb, outputs, figures))
            source = result_file(storage, job.id)
            figures.size_bytes = source.stat().st_size
            # Write the source to disk now, so that its write-back does not land in a run.
            with open(source, "rb") as handle:
                os.fsync(handle.fileno())
            figures.source_sha256 = sha256_of(source)
            print(
                f"result: {figures.size_bytes / MB:,.0f} MB, {figures.rows:,} rows, written in "
                f"{figures.generate_seconds:.1f} s; sha256 {figures.source_sha256[:16]}…",
                flush=True,
            )
            spec = {
                "base_url": info["base_url"],
                "account_sid": info["account_sid"],
                "auth_token": info["auth_token"],
                "job_id": job.id,
            }
            # One unmeasured download first: the first file written to a fresh folder is slow
            # (seen at 3-4 s instead of ~1.8 s), whichever method comes first.
            warmup = outputs / "warm-up.csv"
            figures.warmup = run_child("library-stream", spec, warmup)
            check_run(figures.warmup, figures)
            warmup.unlink()
            for repetition in range(args.repeats):
                for method in order_of(repetition):
                    out = outputs / f"{method}.csv"
                    run = run_child(method, spec, out, server.pid)
                    run["round"] = repetition + 1
                    try:
                        check_run(run, figures)
                    finally:
                        for leftover in (out, out.with_name(out.name + ".part")):
                            leftover.unlink(missing_ok=True)
                    figures.runs.append(run)
                    print(
                        f"  round {repetition + 1} {method:16} "
                        f"{run['bytes'] / MB / run['seconds']:7,.0f} MB/s  "
                        f"{run['seconds']:5.2f} s  growth {run['growth_bytes'] / MB:6.1f} MB  "
                        f"CPU {run['cpu_seconds']:5.2f} s",
                        flush=True,
                    )
            figures.server = asyncio.run(sandbox_stats(info))
        figures.sha256_seconds_per_gb = sha256_cpu_seconds_per_gb()
        if args.out_dir is None:
            shutil.rmtree(outputs, ignore_errors=True)
    return figures


# -- the report ---------------------------------------------------------------------------------


def render_section(args: argparse.Namespace, figures: Figures, command: str) -> str:
    size = f"{figures.size_bytes / MB:,.0f} MB"
    lines = [
        *section_head(SECTION_TITLE, command, figures.load_average),
        f"One sandbox, one {size} `{PERSONA}` CSV job ({figures.rows:,} rows, written in "
        f"{fmt(figures.generate_seconds, 1)} s). Medians of {args.repeats} rounds, methods "
        "rotated from round to round, each download in a fresh process; MB = 10^6 bytes; "
        "ratio = library / loop. The targets compare with the equal-work loop (the same durable "
        "work as the library: sha256 of every byte, fsync, rename); the bare loop (writing "
        "only) is shown for information.",
        "",
        "| Figure | Library | Equal-work loop | Ratio | Target | Met? |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, library, durable, _ in PAIRS:
        value, base = median(figures.mbps(library)), median(figures.mbps(durable))
        speed = ratio(value, base)
        met = "yes" if speed >= THROUGHPUT_TARGET else "**no**"
        lines.append(
            f"| Download {size}, {label} (MB/s) | {fmt(value)} | {fmt(base)} | "
            f"{fmt(speed, 2)} | ≥ {THROUGHPUT_TARGET:.2f} × equal-work loop | {met} |"
        )
    for label, library, durable, _ in PAIRS:
        value = median(figures.values(library, "growth_bytes")) / MB
        base = median(figures.values(durable, "growth_bytes")) / MB
        met = "yes" if value < MEMORY_TARGET_MB else "**no**"
        lines.append(
            f"| Peak RSS growth, {label} (MB) | {fmt(value, 1)} | {fmt(base, 1)} | "
            f"{fmt(ratio(value, base), 2)} | < {MEMORY_TARGET_MB:.0f} | {met} |"
        )
    for label, library, durable, _ in PAIRS:
        value = median(figures.values(library, "cpu_seconds"))
        base = median(figures.values(durable, "cpu_seconds"))
        lines.append(
            f"| Client CPU time, {label} (s) | {fmt(value, 2)} | {fmt(base, 2)} | "
            f"{fmt(ratio(value, base), 2)} | – | – |"
        )
    for label, library, _, bare in PAIRS:
        value, base = median(figures.mbps(library)), median(figures.mbps(bare))
        lines.append(
            f"| Download {size}, {label}, against the bare loop: no hashing, no fsync (MB/s) | "
            f"{fmt(value)} | {fmt(base)} | {fmt(ratio(value, base), 2)} | – | – |"
        )
    gb = figures.size_bytes / 1e9
    sha_cpu = figures.sha256_seconds_per_gb * gb
    lib_cpu = median(figures.values("library-stream", "cpu_seconds"))
    durable_cpu = median(figures.values("durable-stream", "cpu_seconds"))
    bare_cpu = median(figures.values("baseline-stream", "cpu_seconds"))
    idle = {m: median(figures.values(m, "idle_rss_bytes")) / MB for m in METHODS}
    calls = figures.server.get("calls", {})
    counted = {k: v for k, v in calls.items() if v}
    runs = "; ".join(
        f"{method}: "
        + ", ".join(
            f"{run['bytes'] / MB / run['seconds']:,.0f} MB/s {run['growth_bytes'] / MB:.1f} MB"
            for run in figures.runs
            if run["method"] == method
        )
        for method in METHODS
    )
    lines += [
        "",
        '- Library: `ReportExportClient(ClientConfig(..., account_type="Mediapartners", '
        "base_url=<sandbox>)).download(job_id, dest)`, default (302 to the signed URL) and "
        "`stream_downloads=True` (`Mode=Stream`): hands the pieces the network gives (up to "
        "256 KiB each) to two threads of its own in batches of 4 MiB, as lists (not joined), "
        "one writing them unbuffered (`os.write`), one hashing them (sha256), at most 4 batches "
        "waiting per thread; starts writeback every 32 MiB, checks the length, fsyncs, renames, "
        "fsyncs the folder.",
        "- Equal-work loop (`durable-signed`, `durable-stream`): a bare aiohttp loop, GET with "
        "the Basic header (following the 302 by hand without it, for the signed URL), "
        "`iter_chunked(1 MiB)`, each chunk `sha256.update`d then written to `<file>.part` in "
        "the same folder; then fsync, rename over the file, fsync of the folder, all inside the "
        "timed span. Bare loop (`baseline-signed`, `baseline-stream`): the same loop writing "
        "the file, nothing else. Every time includes the Download call.",
        f"- CPU: sha256 alone costs {fmt(figures.sha256_seconds_per_gb, 2)} CPU-s per GB on "
        f"this CPU ({fmt(sha_cpu, 2)} s for this file, on one core). `Mode=Stream`: the bare "
        f"loop took {fmt(bare_cpu, 2)} CPU-s, the equal-work loop {fmt(durable_cpu, 2)} CPU-s "
        f"(hashing in line with the reads), the library {fmt(lib_cpu, 2)} CPU-s (hashing and "
        "writing in threads, overlapping the network).",
        "- Memory: idle RSS read after imports and after opening the client (or session), peak "
        "reset through `/proc/self/clear_refs`, then `VmHWM` after the download; growth = peak "
        "- idle. Idle RSS (MB): " + ", ".join(f"{m} {fmt(v, 1)}" for m, v in idle.items()) + ".",
        f"- Every file was checked: {figures.size_bytes:,} bytes, sha256 equal to the sandbox's "
        f"result file (`{figures.source_sha256[:16]}…`) and, for the library and the equal-work "
        "loops, to the sha256 they computed; each was deleted before the next run.",
        f"- All runs (in order within each method; MB/s and growth): {runs}. Not counted: "
        f"one warm-up `library-stream` download before the first round, "
        f"{figures.warmup['bytes'] / MB / figures.warmup['seconds']:,.0f} MB/s.",
        "- Sandbox-side counts (`GET /_sandbox/stats`) at the end, set-up included: "
        + ", ".join(f"{key} {value}" for key, value in counted.items())
        + f"; signed requests carrying `Authorization`: "
        f"{figures.server.get('signed_requests_with_authorization')}.",
        "",
    ]
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.client_download", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--size-mb", type=float, default=1000.0, help="result size (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--out-dir", type=Path, help="folder for the downloaded files (default: a temporary one)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS")
    # Internal: one measured download in its own process.
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mb <= 0 or args.repeats < 1:
        parser.error("--size-mb and --repeats must be positive")
    if args.child and args.out is None:
        parser.error("--child needs --out")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.out)
    command = ".venv/bin/python -m benchmarks.client_download" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    started = time.perf_counter()
    figures = benchmark(args)
    section = render_section(args, figures, command)
    print()
    print(section)
    print(f"(took {time.perf_counter() - started:.0f} s)")
    if not args.no_write:
        update_results(args.results, SECTION_TITLE, section.removeprefix(SECTION_TITLE))
        print(f"updated {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
