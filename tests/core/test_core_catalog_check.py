"""`core.planning.unknown_reports` and `core.responses.worth_another_round`: pure tables."""

from __future__ import annotations

import errno

import pytest

from reportexport_async.core.models import Report
from reportexport_async.core.planning import unknown_reports
from reportexport_async.core.responses import report_refused, worth_another_round
from reportexport_async.errors import (
    APIError,
    DownloadIntegrityError,
    Forbidden,
    MalformedResponse,
    NotFound,
    OutputError,
    ReportExportError,
    ServerError,
    SignedURLRefused,
    TransportError,
    Unauthorized,
)

CATALOG = (
    Report.model_validate(
        {"Id": "mp_action_listing_fast", "Name": "Actions", "ApiAccessible": True}
    ),
    Report.model_validate(
        {
            "Id": "4222",
            "Name": "Clicks",
            "ApiAccessible": "true",
            "DeferredApiRunUri": "/Advertisers/IRx/ReportExport/adv_click_data_pm_only",
        }
    ),
    Report.model_validate({"Id": "legacy", "Name": "Legacy", "ApiAccessible": "false"}),
    Report.model_validate({"Id": "unflagged", "Name": "No flag"}),
)


@pytest.mark.parametrize(
    ("report_id", "problem"),
    [
        ("mp_action_listing_fast", None),
        ("4222", None),  # by Id
        ("adv_click_data_pm_only", None),  # by the handle in its ReportExport path
        ("unflagged", None),  # no ApiAccessible flag: the server judges
        ("legacy", "not API accessible"),
        ("mp_action_listing", "did you mean mp_action_listing_fast"),
        ("zzz", "has no report 'zzz'"),
    ],
)
def test_unknown_reports(report_id: str, problem: str | None) -> None:
    found = unknown_reports([report_id], CATALOG)
    if problem is None:
        assert found == {}
    else:
        assert problem in found[report_id]


def test_unknown_reports_names_each_once() -> None:
    assert list(unknown_reports(["zzz", "legacy", "zzz"], CATALOG)) == ["zzz", "legacy"]


URL = "http://h/Mediapartners/IRx/ReportExport/r"


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (TransportError("reset", method="GET", url=URL), True),
        (ServerError(503, method="GET", url=URL), True),
        (MalformedResponse("garbled", method="GET", url=URL), True),
        (DownloadIntegrityError("truncated", expected=10, actual=3), True),
        (SignedURLRefused(403, method="GET", url="http://s/signed/x"), True),
        (APIError("An internal error occurred. Please try again later.", method="GET", url=URL),
         True),
        (APIError("Not permitted to run report x", method="GET", url=URL), False),
        (NotFound(404, method="GET", url=URL), False),
        (Unauthorized(401, method="GET", url=URL), False),
        (Forbidden(403, method="GET", url=URL), False),
        (OutputError("/x", OSError(errno.ENOSPC, "No space left on device")), False),
    ],
)  # fmt: skip
def test_worth_another_round(error: ReportExportError, again: bool) -> None:
    assert worth_another_round(error) is again


def test_output_error_says_the_disk_is_full_and_what_to_do() -> None:
    full = OutputError("/data/r/a.csv", OSError(errno.ENOSPC, "No space left on device"))
    assert full.disk_full
    assert "/data/r/a.csv" in str(full)
    assert "free some space" in str(full)
    other = OutputError("/data", OSError(errno.EACCES, "Permission denied"))
    assert not other.disk_full
    assert "permissions" in str(other)


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (NotFound(404, method="GET", url=URL), True),
        (APIError("Not permitted to run report nonexistent_report", method="GET", url=URL), True),
        (APIError("Invalid result format. Must be one of CSV, JSON or XML", method="GET", url=URL),
         False),
        (MalformedResponse("not permitted (garbled)", method="GET", url=URL), False),
        (ServerError(503, method="GET", url=URL), False),
    ],
)  # fmt: skip
def test_report_refused(error: ReportExportError, refused: bool) -> None:
    assert report_refused(error) is refused
