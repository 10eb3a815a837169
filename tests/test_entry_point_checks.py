"""Every public entry point checks its input and prepares its output before any call.

One matrix over the `Client`'s entry points (`export`, `backfill`, `backfill_events`, `sync`,
`download`) and the command line's (`export`, `backfill`, `sync`), each with the mistakes users
make: a folder where a file is needed, a file where a folder is needed, a place nobody can write
(under a regular file, a name too long: root cannot write those either), an unknown report,
reversed or future dates, a bad chunk rule, a bad filter, a bad format. Every case ends with the
same error class (`ConfigurationError` naming the argument; exit 2 naming the flag), zero calls
counted by the sandbox but the catalog's (`GET /Reports`, which spends no quota), no file written
and no ledger entry. A folder that does not exist yet is made, and the run succeeds.

Run with `-s` to see the tally: "N cases, all with zero ReportExport calls".
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import platformdirs
import pytest
from aiohttp import web

from reportexport_async import Client, ConfigurationError, Dataset, ExportSpec
from reportexport_async.cli import main
from reportexport_async.errors import AccountUnavailable, NotFound, Unauthorized, UnknownReport
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.pytest_plugin import SandboxThread

from .conftest import SANDBOX_START, external_account, loopback_server

REPORT = "mp_clicks_by_day"
GOOD = (date(2026, 6, 1), date(2026, 6, 7))  # settled days before the sandbox's 2026-06-15
FUTURE = date(2026, 6, 20)
LONG = "n" * 300  # longer than any file system's name limit (255 bytes): ENAMETOOLONG
BAD_FILTER = {"START_DATE": "2026-06-01"}  # set through start/end, never as a filter

#: (entry point, mistake) -> the ReportExport calls the sandbox counted; the tally's source.
TALLY: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    yield
    if TALLY:
        spent = sum(TALLY.values())
        words = "all with zero" if spent == 0 else f"{spent}"
        print(f"\nentry-point checks: {len(TALLY)} cases, {words} ReportExport calls")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's folder: a regular file `afile` and an empty folder `adir` in it."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "adir").mkdir()
    monkeypatch.chdir(folder)
    return folder


def files_in(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


# -- the Client --------------------------------------------------------------------------------


@asynccontextmanager
async def sandboxed(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, Client]]:
    async with (
        Sandbox(clock=ManualClock(SANDBOX_START), job_duration=(30, 300)) as sandbox,
        Client.for_sandbox(sandbox, ledger=tmp_path / "ledger.sqlite") as client,
    ):
        yield sandbox, client


async def export(
    client: Client, *, report: str = REPORT, out: str = "x.csv", **changes: Any
) -> object:
    arguments: dict[str, Any] = {"start": GOOD[0], "end": GOOD[1], **changes}
    return await client.export(report, out=out, **arguments)


async def backfill(
    client: Client,
    *,
    events: bool = False,
    report: str = REPORT,
    start: date = GOOD[0],
    end: date = GOOD[1],
    out: str = "data",
    chunk: str = "1d",
    filters: dict[str, str] | None = None,
    result_format: str = "CSV",
) -> object:
    """`Client.backfill`, or with `events` its async iterator `Client.backfill_events`."""
    spec = ExportSpec(report, filters or {}, result_format)
    if not events:
        return await client.backfill(spec, start, end, out=out, chunk=chunk)
    async with client.backfill_events(spec, start, end, out=out, chunk=chunk) as progress:
        async for _ in progress:
            pass
    return progress.result


async def sync(
    client: Client,
    *,
    report: str = REPORT,
    first_day: date = GOOD[0],
    out: str = "data",
    chunk: str = "week",
    filters: dict[str, str] | None = None,
    result_format: str = "CSV",
) -> object:
    dataset = Dataset(
        "d", (report,), Path(out), first_day=first_day, chunk=chunk, filters=filters or {},
        result_format=result_format,
    )  # fmt: skip
    return await client.sync(dataset)


async def download(client: Client, *, out: str = "x.csv") -> object:
    return await client.download("no-such-job", out=out)


Entry = Callable[..., Awaitable[object]]
ENTRIES: dict[str, Entry] = {
    "export": export,
    "backfill": backfill,
    "backfill_events": partial(backfill, events=True),
    "sync": sync,
    "download": download,
}
FILE_PLACES = {  # where a file is needed
    "folder for file": ("adir", "out"),
    "under a regular file": ("afile/x.csv", "out"),
    "name too long": (f"{LONG}.csv", "out"),
}
FOLDER_PLACES = {  # where a folder is needed
    "file for folder": ("afile", "out"),
    "under a regular file": ("afile/sub", "out"),
    "name too long": (LONG, "out"),
}
# entry -> mistake -> (the arguments that make it, the argument the error must name)
MISTAKES: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "export": {
        **{what: ({"out": place}, name) for what, (place, name) in FILE_PLACES.items()},
        "unknown report": ({"report": "no_such_report"}, "report"),
        "reversed dates": ({"start": GOOD[1], "end": GOOD[0]}, "start"),
        "future dates": ({"end": FUTURE}, "end"),
        "bad filter": ({"filters": BAD_FILTER}, "filters"),
        "bad format": ({"result_format": "PDF"}, "result_format"),
    },
    **{
        entry: {
            **{what: ({"out": place}, name) for what, (place, name) in FOLDER_PLACES.items()},
            "unknown report": ({"report": "no_such_report"}, "report_id"),
            "reversed dates": ({"start": GOOD[1], "end": GOOD[0]}, "start"),
            "future dates": ({"end": FUTURE}, "end"),
            "bad chunk rule": ({"chunk": "fortnight"}, "chunk"),
            "bad filter": ({"filters": BAD_FILTER}, "filters"),
            "bad format": ({"result_format": "PDF"}, "result_format"),
        }
        for entry in ("backfill", "backfill_events")
    },
    "sync": {
        **{what: ({"out": place}, name) for what, (place, name) in FOLDER_PLACES.items()},
        "unknown report": ({"report": "no_such_report"}, "reports"),
        "future dates": ({"first_day": FUTURE}, "first_day"),
        "bad chunk rule": ({"chunk": "fortnight"}, "chunk"),
        "bad filter": ({"filters": BAD_FILTER}, "filters"),
        "bad format": ({"result_format": "PDF"}, "result_format"),
    },
    "download": {what: ({"out": place}, name) for what, (place, name) in FILE_PLACES.items()},
}
CLIENT_CASES = [
    pytest.param(entry, what, id=f"{entry}-{what}")
    for entry, mistakes in MISTAKES.items()
    for what in mistakes
]


@pytest.mark.parametrize(("entry", "mistake"), CLIENT_CASES)
async def test_a_client_mistake_is_refused_before_any_call(
    tmp_path: Path, work: Path, entry: str, mistake: str
) -> None:
    arguments, argument = MISTAKES[entry][mistake]
    before = files_in(work)
    async with sandboxed(tmp_path) as (sandbox, client):
        with pytest.raises(ConfigurationError) as caught:
            await ENTRIES[entry](client, **arguments)
        calls = sandbox.stats()["calls"]
        entries = await client.ledger.entries()
    error = caught.value
    assert error.setting == argument, error
    assert str(error).startswith(f"{argument}: ")
    TALLY[f"client {entry}: {mistake}"] = calls.get("ReportExport", 0)
    assert {name: n for name, n in calls.items() if n and name != "Reports"} == {}
    assert calls.get("Reports", 0) <= 1  # the catalog: no quota, and only for a report id
    if mistake == "unknown report":
        assert isinstance(error, UnknownReport)
        assert error.report_ids == ("no_such_report",)
        assert "reportexport reports" in str(error)
        assert "client.api.reports()" in str(error)
    else:
        assert calls.get("Reports", 0) == 0
    assert entries == []
    assert files_in(work) == before


@pytest.mark.parametrize("entry", list(ENTRIES))
async def test_a_missing_folder_is_made_and_the_run_succeeds(
    tmp_path: Path, work: Path, entry: str
) -> None:
    """As the command line always did: `out="nodir/..."` makes the folders, and the results land
    in them."""
    out = "nodir/x.csv" if entry in ("export", "download") else "nodir/sub"
    async with sandboxed(tmp_path) as (sandbox, client):
        if entry == "download":
            done = await client.export(REPORT, start=GOOD[0], end=GOOD[1], out="first.csv")
            await client.download(done.job_id, out=out)
        else:
            await ENTRIES[entry](client, out=out)
        calls = sandbox.stats()["calls"]
    written = files_in(work / "nodir")
    assert written, "the result is in the folder that was made"
    assert calls["ReportExport"] >= 1
    if entry in ("export", "download"):
        assert written == {work / out}


def test_the_client_matrix_covers_every_entry_point() -> None:
    assert set(MISTAKES) == {"export", "backfill", "backfill_events", "sync", "download"}
    assert len(CLIENT_CASES) == 37


# -- the command line --------------------------------------------------------------------------

TODAY = datetime.now(UTC).date()
END = TODAY - timedelta(days=TODAY.weekday() + 8)  # a settled week: the Sunday before last
START = END - timedelta(days=6)
RANGE = ["--start", str(START), "--end", str(END)]
CLI_FUTURE = str(TODAY + timedelta(days=5))

CLI_BASE: dict[str, list[str]] = {
    "export": ["export", REPORT, *RANGE, "--out", "x.csv"],
    "backfill": ["backfill", REPORT, *RANGE, "--out", "data", "--chunk", "1d"],
    "sync": ["sync", REPORT, "--first-day", str(START), "--out", "data", "--chunk", "week"],
}


def _with(base: list[str], flag: str, value: str) -> list[str]:
    """`base` with `flag`'s value replaced (or `flag value` added)."""
    argv = list(base)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


def _cli_mistakes(command: str) -> dict[str, tuple[list[str], str]]:
    """mistake -> (argv, what the one-line error names): the Client's mistakes, as flags."""
    base = CLI_BASE[command]
    places = FILE_PLACES if command == "export" else FOLDER_PLACES
    found = {what: (_with(base, "--out", place), "--out") for what, (place, _) in places.items()}
    found["unknown report"] = ([base[0], "no_such_report", *base[2:]], "REPORT")
    if command == "sync":
        found["future dates"] = (_with(base, "--first-day", CLI_FUTURE), "--first-day")
    else:
        reversed_ = _with(_with(base, "--start", str(END)), "--end", str(START))
        found["reversed dates"] = (reversed_, "--start")
        found["future dates"] = (_with(base, "--end", CLI_FUTURE), "--end")
    if command != "export":  # one export has no chunks
        found["bad chunk rule"] = (_with(base, "--chunk", "fortnight"), "--chunk")
    found["bad filter"] = (_with(base, "--param", "START_DATE=2026-01-01"), "--param")
    return found


CLI_MISTAKES = {command: _cli_mistakes(command) for command in CLI_BASE}
CLI_CASES = [
    pytest.param(command, what, id=f"{command}-{what}")
    for command, mistakes in CLI_MISTAKES.items()
    for what in mistakes
]


@pytest.fixture
def account(
    impact_sandbox_factory: Callable[..., SandboxThread],
    monkeypatch: pytest.MonkeyPatch,
    work: Path,
) -> SandboxThread:
    return external_account(impact_sandbox_factory, monkeypatch)


def ledger_rows() -> int:
    """Exports recorded in the command line's default ledger (0 when there is none)."""
    path = platformdirs.user_data_path("reportexport", appauthor=False) / "ledger.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM exports").fetchone()[0])


@pytest.mark.parametrize(("command", "mistake"), CLI_CASES)
def test_a_command_line_mistake_is_one_line_exit_2_before_any_call(
    account: SandboxThread,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    mistake: str,
) -> None:
    argv, flag = CLI_MISTAKES[command][mistake]
    before = files_in(work)
    code = main(argv)
    out, err = capsys.readouterr()
    calls = account.stats()["calls"]
    lines = [line for line in err.splitlines() if line.strip()]
    TALLY[f"command line {command}: {mistake}"] = calls.get("ReportExport", 0)
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"reportexport {command}: error: "), err
    assert flag in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert "ValidationError" not in err + out
    assert {name: n for name, n in calls.items() if n and name != "Reports"} == {}
    if mistake == "unknown report":
        assert "no_such_report" in lines[0]
        assert "reportexport reports" in lines[0]
    else:
        assert calls.get("Reports", 0) == 0
    assert ledger_rows() == 0
    assert files_in(work) == before


@pytest.mark.parametrize("command", list(CLI_BASE))
def test_the_command_line_makes_a_missing_folder(
    account: SandboxThread, work: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out = "nodir2/x.csv" if command == "export" else "nodir2/sub"
    code = main(_with(CLI_BASE[command], "--out", out))
    _, err = capsys.readouterr()
    assert code == 0, err
    assert files_in(work / "nodir2")
    assert account.stats()["calls"]["ReportExport"] >= 1


def test_the_command_line_matrix_covers_every_command() -> None:
    assert set(CLI_MISTAKES) == {"export", "backfill", "sync"}
    assert len(CLI_CASES) == 22


# -- a catalog that cannot be read -------------------------------------------------------------


@asynccontextmanager
async def catalog_answering(status: int, sandbox: Sandbox) -> AsyncIterator[str]:
    """A loopback HTTP forwarder in front of `sandbox` that answers `GET .../Reports` with
    `status` (a token scoped without the catalog: 403; a refused token: 401) and passes every
    other call on; yields its base URL."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.StreamResponse:
            if request.path.endswith("/Reports"):
                return web.json_response({"Status": "ERROR", "Message": "no"}, status=status)
            async with session.request(
                request.method,
                sandbox.base_url + request.path_qs,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                data=await request.read(),
                allow_redirects=False,
            ) as answer:
                hop = {"content-length", "transfer-encoding", "connection"}
                headers = {k: v for k, v in answer.headers.items() if k.lower() not in hop}
                return web.Response(status=answer.status, headers=headers, body=await answer.read())

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        async with loopback_server(app) as port:
            yield f"http://127.0.0.1:{port}"


async def test_a_catalog_that_cannot_be_read_leaves_the_judgement_to_the_server(
    tmp_path: Path, work: Path
) -> None:
    """A token without the catalog (403): the server judges the report at its submit (the one
    probe it costs), the catalog is asked for once, and a known report exports as usual."""
    async with Sandbox(clock=ManualClock(SANDBOX_START), job_duration=(30, 300)) as sandbox:
        async with (
            catalog_answering(403, sandbox) as url,
            Client.for_sandbox(sandbox, base_url=url, ledger=tmp_path / "l.sqlite") as client,
        ):
            with pytest.raises(NotFound):
                await export(client, report="no_such_report")
            done = await export(client, out="good.csv")
            asked = client.usage.calls["Reports"]
        calls = sandbox.stats()["calls"]
    assert calls["ReportExport"] == 2  # the unknown report's one submit, and the good one's
    assert asked == 1  # not asked again after it could not be read
    assert done.path.stat().st_size > 0


async def test_credentials_refused_at_the_catalog_spend_nothing(tmp_path: Path, work: Path) -> None:
    """A 401 at the catalog call: every call would be refused, so none is made after it."""
    async with Sandbox(clock=ManualClock(SANDBOX_START), job_duration=(30, 300)) as sandbox:
        async with (
            catalog_answering(401, sandbox) as url,
            Client.for_sandbox(sandbox, base_url=url, ledger=tmp_path / "l.sqlite") as client,
        ):
            with pytest.raises(Unauthorized):
                await export(client)
            with pytest.raises(AccountUnavailable) as stopped:
                await backfill(client)
            entries = await client.ledger.entries()
        calls = sandbox.stats()["calls"]
    assert stopped.value.problem == "credentials"
    assert calls.get("ReportExport", 0) == 0
    assert entries == []
    assert files_in(work) == {work / "afile", work / "data" / "manifest.json"}
