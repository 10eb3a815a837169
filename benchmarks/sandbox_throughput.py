"""Sandbox throughput: how fast the sandbox serves a big result and answers job-status
polls, each beside a bare aiohttp baseline measured in the same run.

    .venv/bin/python -m benchmarks.sandbox_throughput                  # ~1 GB, 5 s load runs
    .venv/bin/python -m benchmarks.sandbox_throughput --size-mb 200 --seconds 2   # quicker

1. Download: the sandbox (its own process, `python -m reportexport_async.sandbox`) makes a job
   whose CSV result is about `--size-mb` MB, and serves it twice: `Download?Mode=Stream`, and the
   302 to the signed URL on its second listener. The baseline is a bare aiohttp `web.static`
   server (its own process) serving the very same file. The client is a plain aiohttp loop
   reading `iter_chunked(1 MiB)` and discarding the bytes. Target: >= 300 MB/s.
2. Status polls: `GET /Jobs/{Id}` against the sandbox, and against a minimal aiohttp app
   answering the same JSON body. Load comes from a separate process (32 keep-alive connections,
   plain aiohttp client) for `--seconds` each. Target: >= 2,000 requests/s on one core.

With two or more CPUs every server process is pinned to CPU 0 and the clients to CPU 1, so "one
core" means what it says; the servers' CPU use during the load runs is reported from /proc.
MB means 10**6 bytes. The figures go into the section `## Sandbox throughput` of
`benchmarks/RESULTS.md` (other sections are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .procstats import process_cpu_seconds
from .results import RESULTS_FILE, command_line, fmt, median, publish, section_head

SECTION_TITLE = "## Sandbox throughput"
DOWNLOAD_TARGET_MBPS = 300.0
STATUS_TARGET_RPS = 2000.0
CHUNK = 1 << 20
MB = 1_000_000
EXPORT_DAYS = 30
FIRST_DAY = "2025-01-01"  # long settled at the sandbox's start time: row counts never change
SANDBOX_START = "2026-06-15T12:00:00Z"
REPORT = "adv_action_listing_pm"
PERSONA = "Advertisers"
SERVER_CPU = 0
CLIENT_CPU = 1


# -- processes -----------------------------------------------------------------------------------


# Pinning servers and clients to separate CPUs (`--pin`) is off by default: on the 2-vCPU VM
# where RESULTS.md was measured it made the status figures erratic (4,000-14,000 requests/s from
# run to run, neither process busy), presumably from the cost of cross-CPU wake-ups; unpinned,
# the figures are steady.
PIN = False


def _pinning() -> bool:
    return PIN and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def _pin_to(cpu: int) -> Callable[[], None] | None:
    if not _pinning():
        return None

    def pin() -> None:  # runs in the child before exec: every later thread inherits it
        os.sched_setaffinity(0, {cpu})

    return pin


@dataclass
class Server:
    """A server in its own process; its first output line is JSON saying where it listens."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def start_server(argv: Sequence[str], what: str) -> Iterator[Server]:
    # stderr goes to a file, not a pipe nobody drains (a full pipe would stall the server).
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            preexec_fn=_pin_to(SERVER_CPU),
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                process.wait(timeout=10)
                errors.seek(0)
                raise RuntimeError(f"{what} did not start: {errors.read().strip()}")
            yield Server(process, json.loads(line))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()


# -- baseline servers (run as `--role ...` in their own process) ---------------------------------


async def _serve_forever(app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"base_url": f"http://127.0.0.1:{port}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def baseline_static_app(root: Path) -> web.Application:
    """The download baseline: aiohttp's own static file handler (sendfile where possible)."""
    app = web.Application()
    app.router.add_static("/", root)
    return app


def baseline_json_app(body: dict[str, Any]) -> web.Application:
    """The status baseline: one route, the same JSON body, serialised per request as the sandbox
    does, and no authentication, rate limiting or job state."""

    async def job(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{persona}/{sid}/Jobs/{job_id}", job)
    return app


# -- clients ------------------------------------------------------------------------------------


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        read_bufsize=CHUNK,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
        auto_decompress=False,
    )


async def _read_all(response: aiohttp.ClientResponse) -> int:
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        received += len(chunk)  # discarded
    return received


async def timed_download(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    follow_signed: bool = False,
) -> tuple[int, float]:
    """(bytes, seconds) of one download; with `follow_signed`, the Download's 302 is followed by
    hand to the signed URL without the Basic credentials (the signed origin refuses them)."""
    started = time.perf_counter()
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        if follow_signed:
            if response.status != 302:
                raise RuntimeError(f"expected 302 from {url}, got {response.status}")
            location = response.headers["Location"]
        else:
            if response.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {response.status}")
            received = await _read_all(response)
    if follow_signed:
        async with session.get(location, allow_redirects=False) as response:
            if response.status != 200:
                raise RuntimeError(f"GET signed URL: HTTP {response.status}")
            received = await _read_all(response)
    return received, time.perf_counter() - started


async def load_run(
    url: str, headers: dict[str, str], seconds: float, concurrency: int, server_pid: int = 0
) -> dict[str, Any]:
    """`concurrency` keep-alive connections asking `url` in a loop for `seconds`, counted after
    a warm-up; with `server_pid`, the server's CPU time over the counted window too."""
    warmup = min(0.5, seconds / 4)
    connector = aiohttp.TCPConnector(limit=concurrency)
    counts = {"ok": 0, "other": 0}
    marks: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        counting_from = time.perf_counter() + warmup
        stop_at = counting_from + seconds

        async def mark_start() -> None:
            await asyncio.sleep(max(0.0, counting_from - time.perf_counter()))
            marks["server"] = process_cpu_seconds(server_pid) if server_pid else math.nan
            marks["client"] = time.process_time()

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if time.perf_counter() >= counting_from:
                        counts["ok" if response.status == 200 else "other"] += 1

        await asyncio.gather(mark_start(), *(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - counting_from
        server_cpu = (process_cpu_seconds(server_pid) if server_pid else math.nan) - marks["server"]
        client_cpu = time.process_time() - marks["client"]
    return {
        "requests": counts["ok"],
        "non_200": counts["other"],
        "seconds": elapsed,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def run_load_process(
    server: Server, url: str, headers: dict[str, str], seconds: float, concurrency: int
) -> Any:
    """One load run from a separate process, so the server keeps a core to itself."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks.sandbox_throughput",
        "--role",
        "load",
        "--url",
        url,
        "--headers",
        json.dumps(headers),
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        "--server-pid",
        str(server.pid),
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_pin_to(CLIENT_CPU),
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Figures:
    size_bytes: int = 0
    generate_seconds: float = math.nan
    rows: int = 0
    stream: list[float] = field(default_factory=list)  # MB/s
    signed: list[float] = field(default_factory=list)
    static: list[float] = field(default_factory=list)
    status: list[float] = field(default_factory=list)  # requests/s
    status_baseline: list[float] = field(default_factory=list)
    status_cpu: list[float] = field(default_factory=list)  # server CPU share during the runs
    baseline_cpu: list[float] = field(default_factory=list)
    server_counts: dict[str, int] = field(default_factory=dict)
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


class SandboxApi:
    def __init__(self, info: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.base = str(info["base_url"])
        self.root = f"{self.base}/{PERSONA}/{info['account_sid']}"
        self.headers = {
            "Authorization": aiohttp.encode_basic_auth(info["account_sid"], info["auth_token"])
        }
        self.session = session

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> Any:
        async with self.session.get(url, params=params, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def export(self, days: int) -> str:
        """Queue a CSV export of `days` settled days; the job's relative path."""
        end_text = (date.fromisoformat(FIRST_DAY) + timedelta(days=days - 1)).isoformat()
        body = await self.get_json(
            f"{self.root}/ReportExport/{REPORT}",
            {"StartDate": f"{FIRST_DAY}T00:00:00Z", "EndDate": f"{end_text}T00:00:00Z"},
        )
        if body.get("Status") != "QUEUED":
            raise RuntimeError(f"export refused: {body}")
        return str(body["QueuedUri"])

    async def wait_completed(self, job_path: str, limit: float = 600.0) -> dict[str, Any]:
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            job = await self.get_json(self.base + job_path)
            if job["Status"] == "COMPLETED":
                return dict(job)
            if job["Status"] in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"job ended {job['Status']}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{job_path} did not complete in {limit} s")

    async def configure(self, **changes: Any) -> None:
        async with self.session.post(f"{self.base}/_sandbox/configure", json=changes) as response:
            if response.status != 200:
                raise RuntimeError(f"configure: HTTP {response.status}: {await response.text()}")

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.base}/_sandbox/stats") as response:
            return dict(await response.json())


def instant_sandbox_argv(storage: Path, *extra: str) -> list[str]:
    """`python -m reportexport_async.sandbox` on a free port, its results in `storage`, with
    instant jobs and no hourly or daily limits (the benchmarks measure speed, not the quota)."""
    return [
        "-m", "reportexport_async.sandbox", "--port", "0", "--hourly-limit", "0",
        "--daily-export-limit", "0", "--job-duration", "0", "--storage", str(storage), *extra,
    ]  # fmt: skip


def sandbox_argv(storage: Path) -> list[str]:
    return instant_sandbox_argv(storage, "--rows-per-day", "2000", "--start-time", SANDBOX_START)


async def prepare_big_job(api: SandboxApi, size_mb: float, figures: Figures) -> dict[str, Any]:
    """Calibrate bytes per row on one day, then make the ~size_mb job and time its writing."""
    probe = await api.export(1)
    probe_job = await api.wait_completed(probe)
    async with api.session.get(
        api.base + probe + "/Download", params={"Mode": "Stream"}, headers=api.headers
    ) as response:
        probe_bytes = len(await response.read())
    bytes_per_row = probe_bytes / max(1, int(probe_job["RecordsProcessed"]))
    rows_per_day = max(1, math.ceil(size_mb * MB / bytes_per_row / EXPORT_DAYS))
    await api.configure(rows_per_day=rows_per_day)
    started = time.perf_counter()
    job_path = await api.export(EXPORT_DAYS)
    job = await api.wait_completed(job_path)
    figures.generate_seconds = time.perf_counter() - started
    figures.rows = int(job["RecordsProcessed"])
    return job


def find_result(storage: Path, job_id: str) -> Path:
    """The sandbox writes `<job id>-<generation>.<format>` into its storage folder."""
    files = [p for p in storage.iterdir() if p.name.startswith(job_id) and p.suffix == ".csv"]
    if len(files) != 1:
        raise RuntimeError(f"cannot find the result file of {job_id} in {storage}")
    return files[0]


def file_size(path: Path) -> int:
    return path.stat().st_size


async def measure_downloads(
    args: argparse.Namespace, storage: Path, sandbox: Server, figures: Figures
) -> dict[str, Any]:
    async with _session() as session:
        api = SandboxApi(sandbox.info, session)
        job = await prepare_big_job(api, args.size_mb, figures)
        result = find_result(storage, job["Id"])
        figures.size_bytes = file_size(result)
        print(
            f"result: {figures.size_bytes / MB:.0f} MB, {figures.rows:,} rows, written in "
            f"{figures.generate_seconds:.1f} s",
            flush=True,
        )
        download = api.base + job["ResultUri"]
        static_argv = ["-m", "benchmarks.sandbox_throughput", "--role", "static"]
        with start_server([*static_argv, "--root", str(storage)], "static baseline") as static:
            static_url = f"{static.info['base_url']}/{result.name}"
            for repetition in range(1, args.repeats + 1):
                no_auth: dict[str, str] = {}
                runs: tuple[tuple[str, str, dict[str, str], bool, list[float]], ...] = (
                    ("stream", download + "?Mode=Stream", api.headers, False, figures.stream),
                    ("signed", download, api.headers, True, figures.signed),
                    ("static", static_url, no_auth, False, figures.static),
                )
                for name, url, headers, signed, sink in runs:
                    received, seconds = await timed_download(
                        session, url, headers, follow_signed=signed
                    )
                    if received != figures.size_bytes:
                        raise RuntimeError(f"{name}: {received} bytes, expected the whole file")
                    sink.append(received / MB / seconds)
                    print(f"  download {repetition} {name:6} {sink[-1]:8.0f} MB/s", flush=True)
        stats = await api.stats()
        figures.server_counts = {
            key: int(stats["calls"][key]) for key in ("Download", "SignedDownload", "GetJob")
        }
        return job


async def measure_status(
    args: argparse.Namespace, sandbox: Server, job: dict[str, Any], figures: Figures
) -> None:
    async with _session() as session:
        api = SandboxApi(sandbox.info, session)
        job_url = f"{api.base}/{PERSONA}/{sandbox.info['account_sid']}/Jobs/{job['Id']}"
        body = await api.get_json(job_url)
    json_argv = ["-m", "benchmarks.sandbox_throughput", "--role", "json"]
    with start_server([*json_argv, "--body", json.dumps(body)], "JSON baseline") as baseline:
        baseline_url = baseline.info["base_url"] + job_url.removeprefix(api.base)
        no_auth: dict[str, str] = {}
        targets: tuple[tuple[str, Server, str, dict[str, str], list[float], list[float]], ...] = (
            ("sandbox", sandbox, job_url, api.headers, figures.status, figures.status_cpu),
            (
                "baseline",
                baseline,
                baseline_url,
                no_auth,
                figures.status_baseline,
                figures.baseline_cpu,
            ),
        )
        for repetition in range(1, args.repeats + 1):
            for name, server, url, headers, rates, cpu_shares in targets:
                result = await asyncio.to_thread(
                    run_load_process, server, url, headers, args.seconds, args.concurrency
                )
                if result["non_200"]:
                    raise RuntimeError(f"{name}: {result['non_200']} answers were not 200")
                rates.append(result["requests"] / result["seconds"])
                cpu_shares.append(result["server_cpu"] / result["seconds"])
                print(
                    f"  status   {repetition} {name:8} {rates[-1]:8.0f} req/s "
                    f"(server CPU {cpu_shares[-1]:.0%}, load generator CPU "
                    f"{result['client_cpu'] / result['seconds']:.0%})",
                    flush=True,
                )


# -- the report ---------------------------------------------------------------------------------


def _capacity(rates: Sequence[float], shares: Sequence[float]) -> float:
    """Requests per second of server CPU: what one fully busy core would answer."""
    per_core = [rate / share for rate, share in zip(rates, shares, strict=True) if share > 0]
    return median(per_core)


def _runs(values: Sequence[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def render_section(args: argparse.Namespace, figures: Figures, command: str) -> str:
    size = f"{figures.size_bytes / MB:,.0f} MB"
    rows: list[tuple[str, float, float, float | None]] = [
        (
            f"Download {size}, `Mode=Stream` (MB/s)",
            median(figures.stream),
            median(figures.static),
            DOWNLOAD_TARGET_MBPS,
        ),
        (
            f"Download {size}, 302 to the signed URL (MB/s)",
            median(figures.signed),
            median(figures.static),
            DOWNLOAD_TARGET_MBPS,
        ),
        (
            f"`GET /Jobs/{{Id}}`, {args.concurrency} connections (requests/s)",
            median(figures.status),
            median(figures.status_baseline),
            STATUS_TARGET_RPS,
        ),
        (
            "`GET /Jobs/{Id}` per second of server CPU (one busy core)",
            _capacity(figures.status, figures.status_cpu),
            _capacity(figures.status_baseline, figures.baseline_cpu),
            STATUS_TARGET_RPS,
        ),
        (
            "Server CPU share during the status runs",
            median(figures.status_cpu) * 100,
            median(figures.baseline_cpu) * 100,
            None,
        ),
    ]
    lines = [
        *section_head(SECTION_TITLE, command, figures.load_average),
        f"Medians of {args.repeats} repetitions; MB = 10^6 bytes; ratio = sandbox / baseline.",
        "",
        "| Figure | Sandbox | Baseline | Ratio | Target | Met? |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, value, baseline, target in rows:
        ratio = value / baseline if baseline and not math.isnan(baseline) else math.nan
        if target is None:
            lines.append(f"| {name} | {fmt(value)} % | {fmt(baseline)} % | – | – | – |")
            continue
        met = "yes" if value >= target else "**no**"
        lines.append(
            f"| {name} | {fmt(value)} | {fmt(baseline)} | {fmt(ratio, 2)} | "
            f"≥ {target:,.0f} | {met} |"
        )
    lines += [
        f"| Write the {size} result ({figures.rows:,} CSV rows; ReportExport to COMPLETED) (s) "
        f"| {fmt(figures.generate_seconds, 1)} | – | – | – | – |",
        "",
        "- Every server runs in its own process: the sandbox as "
        "`python -m reportexport_async.sandbox --port 0 ...`, the download baseline as a bare "
        "aiohttp `web.static` server over the sandbox's storage folder (the very same file), "
        "the status baseline as a one-route aiohttp app answering the same Job JSON (no "
        "authentication, limits or job state).",
        "- Downloads: a plain aiohttp client in the benchmark process reads "
        "`iter_chunked(1 MiB)` and discards; the signed-URL figure includes the 302 round trip "
        "and follows `Location` without credentials. The file is in the page cache.",
        "- Status: the load comes from a separate process (plain aiohttp client, keep-alive). "
        "An asyncio server uses one core at most; a CPU share below 100 % means the "
        "single-process load generator, not the server, set the pace, so the measured rate "
        "understates the server and the per-CPU-second row is its capacity on one core.",
        f"- All runs. Stream MB/s: {_runs(figures.stream)}; signed: {_runs(figures.signed)}; "
        f"static: {_runs(figures.static)}. Status requests/s, sandbox: {_runs(figures.status)}; "
        f"baseline: {_runs(figures.status_baseline)}.",
        "- Sandbox-side counts (`GET /_sandbox/stats`) after the downloads: "
        + ", ".join(f"{key} {value}" for key, value in figures.server_counts.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


async def benchmark(args: argparse.Namespace) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="sandbox-throughput-") as folder:
        storage = Path(folder)
        with start_server(sandbox_argv(storage), "sandbox") as sandbox:
            job = await measure_downloads(args, storage, sandbox, figures)
            await measure_status(args, sandbox, job, figures)
    return figures


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sandbox_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--size-mb", type=float, default=1000.0, help="result size (default 1000)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of each status load run (default 5)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="load connections (32)")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS")
    parser.add_argument(
        "--pin", action="store_true", help="pin servers to CPU 0 and clients to CPU 1"
    )
    # Internal roles: the helper processes of the benchmark.
    parser.add_argument("--role", choices=("main", "static", "json", "load"), default="main")
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--headers", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mb <= 0 or args.seconds <= 0 or args.repeats < 1 or args.concurrency < 1:
        parser.error("--size-mb, --seconds, --repeats and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "static":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_forever(baseline_static_app(args.root)))
        return 0
    if args.role == "json":
        body = json.loads(args.body)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_forever(baseline_json_app(body)))
        return 0
    if args.role == "load":
        headers = json.loads(args.headers)
        result = asyncio.run(
            load_run(args.url, headers, args.seconds, args.concurrency, args.server_pid)
        )
        print(json.dumps(result), flush=True)
        return 0
    global PIN
    PIN = args.pin
    if _pinning():
        os.sched_setaffinity(0, {CLIENT_CPU})
    command = command_line(
        "benchmarks.sandbox_throughput", argv if argv is not None else sys.argv[1:]
    )
    started = time.perf_counter()
    figures = asyncio.run(benchmark(args))
    section = render_section(args, figures, command)
    publish(section, SECTION_TITLE, args.results, write=not args.no_write, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
