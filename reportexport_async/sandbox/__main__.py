"""`python -m reportexport_async.sandbox`: run the sandbox until interrupted.

The first line of output is JSON with `base_url`, `account_sid` and `auth_token` (and a few more
keys), so a script can start it with `--port 0` and read where it listens.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import anyio

from .config import FAULT_NAMES, SandboxConfig, parse_fault, parse_range
from .dialect import DIALECT_ENV, DIALECTS
from .server import Sandbox, SandboxError


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 0 and 65535")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _seconds_range(what: str) -> argparse._ActionType:
    def parse(text: str) -> tuple[float, float]:
        try:
            return parse_range(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _fault(text: str) -> tuple[str, float]:
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("the start time needs a UTC offset, e.g. ...T00:00:00Z")
    return moment


def build_parser(prog: str = "python -m reportexport_async.sandbox") -> argparse.ArgumentParser:
    """The sandbox's options; `reportexport sandbox serve` reuses them."""
    defaults = SandboxConfig(account_sid="IRdefaults", auth_token="defaults")
    parser = _OneLineParser(
        prog=prog,
        description="Run a local server that behaves like impact.com's ReportExport and Jobs APIs.",
    )
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    add("--port", type=_port, default=0, help="API port; 0 picks a free one (default 0)")
    add("--signed-port", type=_port, default=0, help="port of the signed-URL origin (default 0)")
    add("--account-sid", help="account SID to accept (default: random)")
    add("--auth-token-file", type=Path, help="file holding the auth token (default: random)")
    add("--storage", type=Path, help="folder for result files (default: a temporary folder)")
    add("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    add(
        "--time-scale",
        type=_positive_float,
        default=defaults.time_scale,
        help="sandbox seconds per real second (default %(default)s)",
    )
    add(
        "--start-time",
        type=_start_time,
        help="sandbox time at start, ISO 8601 with offset (default: now)",
    )
    add(
        "--job-duration",
        type=_seconds_range("--job-duration"),
        default=defaults.job_duration,
        metavar="SECONDS|MIN-MAX",
        help="sandbox seconds one job attempt takes (default 2-10)",
    )
    add("--rows-per-day", type=_non_negative_int, default=defaults.rows_per_day)
    add("--settle-days", type=_non_negative_int, default=defaults.settle_days)
    add(
        "--hourly-limit",
        type=_non_negative_int,
        default=defaults.hourly_limit,
        help="requests per hour, 0 for none",
    )
    add(
        "--daily-export-limit",
        type=_non_negative_int,
        default=defaults.daily_export_limit,
        help="ReportExport calls per day, 0 for none",
    )
    add(
        "--daily-click-limit",
        type=_non_negative_int,
        default=defaults.daily_click_limit,
        help="ClickExport calls per day, 0 for none",
    )
    add("--reset-style", choices=("seconds", "epoch"), default=defaults.reset_style)
    add("--string-values", action="store_true", help="numbers and booleans as JSON strings")
    add(
        "--dialect",
        choices=DIALECTS,
        default=None,
        help="examples (the documentation examples' answers, the default) or strict (answers "
        "valid against the published documents, 400/406 for undocumented requests); default: "
        f"${DIALECT_ENV} or examples",
    )
    add("--utc-offset-minutes", type=int, default=0, help="the account's timezone")
    add("--signed-url-ttl", type=_positive_float, default=defaults.signed_url_ttl)
    add("--page-size", type=_non_negative_int, default=defaults.jobs_page_size)
    add("--postback-url", help="job-completion postback URL")
    add("--postback-method", choices=("GET", "POST"), default="GET")
    add(
        "--postback-delay",
        type=_seconds_range("--postback-delay"),
        default=defaults.postback_delay,
        metavar="SECONDS|MIN-MAX",
    )
    add(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=RATE",
        help=f"inject a fault with probability RATE (repeatable): {', '.join(FAULT_NAMES)}",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Turn parsed options into a `SandboxConfig` (ValueError for combinations that fail)."""
    extra: dict[str, object] = {}
    if args.account_sid:
        extra["account_sid"] = args.account_sid
    if args.dialect:
        extra["dialect"] = args.dialect
    if args.auth_token_file:
        try:
            extra["auth_token"] = args.auth_token_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"--auth-token-file: cannot read it ({exc.strerror})") from None
    return SandboxConfig(
        host=args.host,
        port=args.port,
        signed_port=args.signed_port,
        storage=args.storage,
        seed=args.seed,
        time_scale=args.time_scale,
        job_duration=args.job_duration,
        rows_per_day=args.rows_per_day,
        settle_days=args.settle_days,
        hourly_limit=args.hourly_limit,
        daily_export_limit=args.daily_export_limit,
        daily_click_limit=args.daily_click_limit,
        reset_style=args.reset_style,
        string_values=args.string_values,
        utc_offset_minutes=args.utc_offset_minutes,
        signed_url_ttl=args.signed_url_ttl,
        jobs_page_size=max(1, args.page_size),
        postback_url=args.postback_url,
        postback_method=args.postback_method,
        postback_delay=args.postback_delay,
        faults=dict(args.fault),
        **extra,  # type: ignore[arg-type]
    )


async def serve(config: SandboxConfig, start_time: datetime | None = None) -> None:
    from .clock import ScaledClock

    clock = ScaledClock(start=start_time, scale=config.time_scale)
    async with Sandbox(config, clock=clock) as sandbox:
        line = {
            "base_url": sandbox.base_url,
            "account_sid": sandbox.account_sid,
            "auth_token": sandbox.auth_token,
            "signed_base_url": sandbox.signed_base_url,
            "storage": str(sandbox.storage),
            "now": sandbox.now().isoformat(),
            "time_scale": config.time_scale,
            "dialect": config.dialect,
        }
        # SIGTERM (what process managers and `Popen.terminate` send) ends the sandbox as
        # cleanly as Ctrl-C does, so its temporary storage folder is removed. The line goes out
        # once the handler is in place, so whoever read it may signal at once.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(json.dumps(line), flush=True)
            async for _ in signals:
                return


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        anyio.run(serve, config, args.start_time)
    except SandboxError as exc:
        text = str(exc)
        if "storage folder" in text:
            text += " (--storage PATH)"  # the library's message, in the command line's terms
        parser.error(text)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
