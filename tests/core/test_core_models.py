"""Models: strict requests, tolerant responses (way 8 of docs/guide.md; docs/api-facts.md §2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reportexport_async.core.models import (
    ClickExportRequest,
    ExportRequest,
    ExportTicket,
    FrozenFilters,
    Job,
    JobPage,
    JobStatus,
    job_id_from_uri,
    parse_report_catalog,
)

UTC = dt.UTC
JOB_DOC_EXAMPLE: dict[str, Any] = {
    # Shape of the docs' examples: numbers and booleans as strings, "" for unset dates.
    "Id": "d8807a9f-a5ee-4e3f-ad2b-3dfd19d1915f",
    "Type": "ApiReport",
    "ProgramId": "3629",
    "CreatedBy": "IRabc",
    "CreatedDate": "2022-06-07T04:33:50-05:00",
    "StartedDate": "2022-06-07T04:34:00-05:00",
    "CompletedDate": "",
    "FailedDate": None,
    "Status": "RUNNING",
    "StatusMessage": "Job is running.",
    "RecordsProcessed": "250",
    "PercentageComplete": "40",
    "Replayable": "false",
    "ResultUri": "/Mediapartners/IRabc/Jobs/d8807a9f-a5ee-4e3f-ad2b-3dfd19d1915f/Download",
    "SomethingNew": {"nested": 1},
}


# --- JobStatus ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("QUEUED", JobStatus.QUEUED),
        ("running", JobStatus.RUNNING),
        (" COMPLETED ", JobStatus.COMPLETED),
        ("ERROR", JobStatus.ERROR),
        ("PAUSED", JobStatus.UNKNOWN),
        ("", JobStatus.UNKNOWN),
        (None, JobStatus.UNKNOWN),
        (3, JobStatus.UNKNOWN),
    ],
)
def test_job_status_parse(raw: object, expected: JobStatus) -> None:
    assert JobStatus.parse(raw) is expected


def test_job_status_enum_call_is_tolerant() -> None:
    assert JobStatus("SOMETHING_ELSE") is JobStatus.UNKNOWN
    assert JobStatus("failed") is JobStatus.FAILED


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (JobStatus.QUEUED, False),
        (JobStatus.RUNNING, False),
        (JobStatus.ERROR, False),  # the service re-runs ERROR jobs (docs/api-facts.md §2)
        (JobStatus.UNKNOWN, False),
        (JobStatus.COMPLETED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_is_final(status: JobStatus, final: bool) -> None:
    assert status.is_final is final


# --- Job -----------------------------------------------------------------------------------


def test_job_tolerates_the_documented_example() -> None:
    job = Job.model_validate(JOB_DOC_EXAMPLE)
    assert job.id == "d8807a9f-a5ee-4e3f-ad2b-3dfd19d1915f"
    assert job.status is JobStatus.RUNNING
    assert job.records_processed == 250
    assert job.percentage_complete == 40
    assert job.replayable is False
    assert job.completed_date is None
    assert job.failed_date is None
    assert job.created_date == dt.datetime(2022, 6, 7, 9, 33, 50, tzinfo=UTC)
    assert job.created_date is not None
    assert job.created_date.utcoffset() == dt.timedelta(hours=-5)
    assert job.program_id == "3629"
    assert job.model_extra == {"SomethingNew": {"nested": 1}}
    assert job.is_final is False


@pytest.mark.parametrize(
    ("field", "raw", "attr", "expected"),
    [
        ("RecordsProcessed", "250", "records_processed", 250),
        ("RecordsProcessed", 250, "records_processed", 250),
        ("RecordsProcessed", "250.0", "records_processed", 250),
        ("RecordsProcessed", "", "records_processed", None),
        ("RecordsProcessed", "lots", "records_processed", None),
        ("RecordsProcessed", True, "records_processed", None),
        ("Replayable", "true", "replayable", True),
        ("Replayable", "TRUE", "replayable", True),
        ("Replayable", "false", "replayable", False),
        ("Replayable", True, "replayable", True),
        ("Replayable", "", "replayable", None),
        ("Replayable", "maybe", "replayable", None),
        ("CompletedDate", "", "completed_date", None),
        ("CompletedDate", None, "completed_date", None),
        ("CompletedDate", "not a date", "completed_date", None),
        (
            "CompletedDate",
            "2026-01-15T00:00:00Z",
            "completed_date",
            dt.datetime(2026, 1, 15, tzinfo=UTC),
        ),
        (
            "CompletedDate",
            "2026-01-15T00:00:00",  # no offset: read as UTC so all datetimes compare
            "completed_date",
            dt.datetime(2026, 1, 15, tzinfo=UTC),
        ),
        ("ProgramId", 3629, "program_id", "3629"),
        ("StatusMessage", "", "status_message", None),
        ("Status", "BRAND_NEW_STATE", "status", JobStatus.UNKNOWN),
    ],
)
def test_job_field_tolerance(field: str, raw: object, attr: str, expected: object) -> None:
    job = Job.model_validate({"Id": "j1", field: raw})
    assert getattr(job, attr) == expected


JOB_OPTIONAL = {
    "Type": "type",
    "StatusMessage": "status_message",
    "ProgramId": "program_id",
    "CreatedBy": "created_by",
    "CreatedDate": "created_date",
    "StartedDate": "started_date",
    "CompletedDate": "completed_date",
    "AbandonedDate": "abandoned_date",
    "CancelledDate": "cancelled_date",
    "FailedDate": "failed_date",
    "LastProgressUpdateDate": "last_progress_update_date",
    "RecordsProcessed": "records_processed",
    "PercentageComplete": "percentage_complete",
    "Replayable": "replayable",
    "ResultUri": "result_uri",
}
UNSET = [
    pytest.param(lambda body, key: body.update({key: None}), id="null"),
    pytest.param(lambda body, key: body.update({key: ""}), id="empty"),
    pytest.param(lambda body, key: body.pop(key), id="missing"),
]


@pytest.mark.parametrize("unset", UNSET)
@pytest.mark.parametrize("field", list(JOB_OPTIONAL))
def test_every_optional_job_value_may_be_null_empty_or_missing(field: str, unset: Any) -> None:
    """The three ways the sources leave a value out (brand `null`, the agency examples' `""`,
    the strict dialect's absent key) read alike, and leave every other field as it was."""
    moment = "2022-06-07T04:40:00-05:00"
    dates = {key: moment for key in JOB_OPTIONAL if key.endswith("Date")}
    full = {**JOB_DOC_EXAMPLE, **dates}
    body = dict(full)
    unset(body, field)
    job, whole = Job.model_validate(body), Job.model_validate(full)
    attr = JOB_OPTIONAL[field]
    assert getattr(whole, attr) is not None
    assert getattr(job, attr) is None
    others = {a for a in JOB_OPTIONAL.values() if a != attr}
    assert {a: getattr(job, a) for a in others} == {a: getattr(whole, a) for a in others}


@pytest.mark.parametrize("unset", UNSET)
@pytest.mark.parametrize("field", ["ResultUri", "ReplayUri", "Message"])
def test_ticket_optional_values_may_be_null_empty_or_missing(field: str, unset: Any) -> None:
    body: dict[str, Any] = {
        "Status": "QUEUED",
        "QueuedUri": "/x/Jobs/j1",
        "ResultUri": "/x/Jobs/j1/Download",
        "ReplayUri": "/x/Jobs/j1/Replay",
        "Message": "m",
    }
    unset(body, field)
    ticket = ExportTicket.model_validate(body)
    assert ticket.job_id == "j1"
    attr = {"ResultUri": "result_uri", "ReplayUri": "replay_uri", "Message": "message"}[field]
    assert getattr(ticket, attr) is None


REPORT_OPTIONAL = {
    "Name": "name",
    "Category": "category",
    "Description": "description",
    "ApiAccessible": "api_accessible",
    "DeferredApiRunUri": "deferred_api_run_uri",
    "MetaDataUri": "metadata_uri",
}


@pytest.mark.parametrize("unset", UNSET)
@pytest.mark.parametrize("field", list(REPORT_OPTIONAL))
def test_report_optional_values_may_be_null_empty_or_missing(field: str, unset: Any) -> None:
    body: dict[str, Any] = {
        "Id": "r1",
        "Name": "R",
        "Category": "C",
        "Description": "D",
        "ApiAccessible": True,
        "DeferredApiRunUri": "/a/ReportExport/r1",
        "MetaDataUri": "/a/Reports/r1/MetaData",
    }
    unset(body, field)
    (report,) = parse_report_catalog({"Reports": [body]})
    assert report.id == "r1"
    assert [a for a in REPORT_OPTIONAL.values() if getattr(report, a) is None] == [
        REPORT_OPTIONAL[field]
    ]


def test_job_accepts_snake_case_and_old_jobid_alias() -> None:
    assert Job(id="a", status=JobStatus.COMPLETED).status is JobStatus.COMPLETED
    assert Job.model_validate({"JobId": "old"}).id == "old"


@pytest.mark.parametrize("body", [{}, {"Id": ""}, {"Id": None}, {"Status": "QUEUED"}])
def test_job_needs_an_id(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Job.model_validate(body)


def test_job_dumps_with_wire_names() -> None:
    dumped = Job.model_validate(JOB_DOC_EXAMPLE).model_dump(by_alias=True, mode="json")
    assert dumped["Id"] == JOB_DOC_EXAMPLE["Id"]
    assert dumped["RecordsProcessed"] == 250
    assert dumped["SomethingNew"] == {"nested": 1}


@settings(deadline=None)  # the first example pays pydantic's warm-up
@given(
    st.dictionaries(
        st.sampled_from(list(JOB_DOC_EXAMPLE)),
        st.one_of(st.none(), st.text(max_size=12), st.integers(), st.booleans(), st.floats()),
    )
)
def test_job_never_fails_on_odd_values_when_id_is_present(extra: dict[str, Any]) -> None:
    body = {**extra, "Id": "job-1"}
    job = Job.model_validate(body)
    assert job.id == "job-1"
    assert isinstance(job.status, JobStatus)
    assert job.records_processed is None or isinstance(job.records_processed, int)


# --- job ids from URIs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/Mediapartners/IRabc/Jobs/18edc7d5-aaaa", "18edc7d5-aaaa"),
        ("/Advertisers/IRabc/Jobs/abc/Download", "abc"),
        ("/Agencies/IRabc/Jobs/abc/Replay?x=1", "abc"),
        ("https://api.impact.com/Agencies/IR/Jobs/abc#frag", "abc"),
        ("/Agencies/IR/Jobs/a%20b", "a b"),
        ("/Agencies/IR/Jobs/", None),
        ("/Agencies/IR/Reports/x", None),
        ("", None),
        (None, None),
    ],
)
def test_job_id_from_uri(uri: str | None, expected: str | None) -> None:
    assert job_id_from_uri(uri) == expected


def test_ticket_takes_job_id_from_queued_uri() -> None:
    ticket = ExportTicket.model_validate(
        {
            "Status": "QUEUED",
            "QueuedUri": "/Mediapartners/IRabc/Jobs/J1",
            "ResultUri": "/Mediapartners/IRabc/Jobs/J1/Download",
            "ReplayUri": "/Mediapartners/IRabc/Jobs/J1/Replay",
        }
    )
    assert ticket.job_id == "J1"
    assert ticket.status is JobStatus.QUEUED
    assert ticket.replay_uri == "/Mediapartners/IRabc/Jobs/J1/Replay"


def test_brand_ticket_without_replay_uri() -> None:
    ticket = ExportTicket.model_validate(
        {"Status": "QUEUED", "QueuedUri": "/Advertisers/S/Jobs/B1", "ResultUri": "/x"}
    )
    assert ticket.replay_uri is None
    assert ticket.job_id == "B1"


def test_ticket_falls_back_to_result_uri() -> None:
    ticket = ExportTicket.model_validate({"Status": "QUEUED", "ResultUri": "/A/S/Jobs/R1/Download"})
    assert ticket.job_id == "R1"


@pytest.mark.parametrize("body", [{"Status": "QUEUED"}, {"QueuedUri": "/nothing/here"}, []])
def test_ticket_without_job_id_is_invalid(body: object) -> None:
    with pytest.raises(ValidationError):
        ExportTicket.model_validate(body)


# --- listings ---------------------------------------------------------------------------


def test_job_page_brand_shape_with_next_page() -> None:
    page = JobPage.parse(
        {
            "@page": "1",
            "@numpages": "2",
            "@nextpageuri": "/Advertisers/S/Jobs?Page=2",
            "Jobs": [{"Id": "a", "Status": "COMPLETED"}, {"Id": "b"}],
        }
    )
    assert [j.id for j in page.jobs] == ["a", "b"]
    assert page.next_page_uri == "/Advertisers/S/Jobs?Page=2"
    assert page.meta["@numpages"] == "2"


def test_job_page_partner_spelling() -> None:
    page = JobPage.parse({"Jobs": [], "@nextpageruri": "/Mediapartners/S/Jobs?Page=3"})
    assert page.next_page_uri == "/Mediapartners/S/Jobs?Page=3"


@pytest.mark.parametrize("meta", [{}, {"@nextpageuri": ""}, {"@nextpageruri": "  "}])
def test_job_page_without_next(meta: dict[str, str]) -> None:
    page = JobPage.parse({"Jobs": [{"Id": "a"}], **meta})
    assert page.next_page_uri is None
    assert len(page.jobs) == 1


def test_job_page_agency_top_level_array() -> None:
    page = JobPage.parse([{"Id": "a"}, {"Id": "b", "Status": "FAILED"}])
    assert [j.status for j in page.jobs] == [JobStatus.UNKNOWN, JobStatus.FAILED]
    assert page.next_page_uri is None


def test_job_page_skips_unreadable_entries() -> None:
    page = JobPage.parse({"Jobs": [{"Id": "a"}, {"NoId": 1}, "junk"]})
    assert [j.id for j in page.jobs] == ["a"]
    assert page.skipped == 2


def test_job_page_reads_only_the_ids_asked_for_and_counts_the_rest() -> None:
    body = [
        {"Id": " a ", "Status": "COMPLETED"},
        {"JobId": 7},
        {"id": "c"},
        {"Id": "d"},
        {"NoId": 1},
        "junk",
    ]
    page = JobPage.parse(body, only={"a", "7"})
    assert [(j.id, j.status) for j in page.jobs] == [
        ("a", JobStatus.COMPLETED),
        ("7", JobStatus.UNKNOWN),
    ]
    assert (page.ignored, page.skipped, page.entries) == (2, 2, 6)
    # Without `only`, the same page reads every readable entry.
    assert [j.id for j in JobPage.parse(body).jobs] == ["a", "7", "c", "d"]


@pytest.mark.parametrize("body", ["text", 3, None, {"Jobs": "nope"}])
def test_job_page_rejects_other_shapes(body: object) -> None:
    with pytest.raises(ValueError, match=r"listing|array"):
        JobPage.parse(body)


def test_report_catalog_both_shapes() -> None:
    entry = {"Id": "mp_action_listing_fast", "Name": "Actions", "ApiAccessible": "true"}
    wrapped = parse_report_catalog({"Reports": [entry]})
    bare = parse_report_catalog([entry, {"Name": "no id"}])
    assert wrapped == bare
    assert wrapped[0].api_accessible is True
    with pytest.raises(ValueError, match="Reports"):
        parse_report_catalog({"Other": []})


# --- ExportRequest ----------------------------------------------------------------------


def test_export_request_defaults() -> None:
    req = ExportRequest(report_id="mp_action_listing_fast")
    assert req.start is None
    assert req.end is None
    assert req.result_format == "CSV"
    assert dict(req.filters) == {}


def test_export_request_is_frozen_and_hashable() -> None:
    a = ExportRequest(report_id="r", filters={"SUBAID": 1, "B": "x"})
    b = ExportRequest(report_id="r", filters={"B": "x", "SUBAID": 1})
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(ValidationError):
        a.report_id = "other"  # type: ignore[misc]


def test_export_request_filters_are_read_only_and_sorted() -> None:
    req = ExportRequest(report_id="r", filters={"Z": 1, "A": 2})
    assert isinstance(req.filters, FrozenFilters)
    assert list(req.filters) == ["A", "Z"]
    with pytest.raises(TypeError):
        req.filters["A"] = 3  # type: ignore[index]


def test_export_request_result_format_case() -> None:
    assert ExportRequest(report_id="r", result_format="json").result_format == "JSON"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"report_id": ""}, "empty"),
        ({"report_id": "a/b"}, "must not contain"),
        ({"report_id": "..x"}, "must not contain"),
        ({"report_id": "a b"}, "whitespace"),
        ({"report_id": "a\tb"}, "whitespace"),
        ({"report_id": "a\x00b"}, "whitespace"),
        ({"report_id": "r", "start": dt.date(2026, 1, 1)}, "both start and end"),
        ({"report_id": "r", "end": dt.date(2026, 1, 1)}, "both start and end"),
        (
            {"report_id": "r", "start": dt.date(2026, 1, 2), "end": dt.date(2026, 1, 1)},
            "after end",
        ),
        (
            {
                "report_id": "r",
                "start": dt.datetime(2026, 1, 1, tzinfo=UTC),
                "end": dt.date(2026, 1, 2),
            },
            "not a datetime",
        ),
        ({"report_id": "r", "filters": {"START_DATE": "2026-01-01"}}, "start/end"),
        ({"report_id": "r", "filters": {"enddate": "2026-01-01"}}, "start/end"),
        ({"report_id": "r", "filters": {"ResultFormat": "CSV"}}, "result_format"),
        ({"report_id": "r", "filters": {"Start Date": "x"}}, "whitespace"),
        ({"report_id": "r", "filters": {"": "x"}}, "non-empty"),
        ({"report_id": "r", "filters": {"X": float("nan")}}, "finite"),
        ({"report_id": "r", "filters": {"X": [1, 2]}}, "unsupported"),
        ({"report_id": "r", "filters": ["X"]}, "mapping"),
        ({"report_id": "r", "result_format": "PDF"}, "CSV"),
        ({"report_id": "r", "colour": "blue"}, "Extra inputs"),
    ],
)
def test_export_request_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ExportRequest(**kwargs)


@given(
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
)
def test_export_request_date_order_property(a: dt.date, b: dt.date) -> None:
    if a <= b:
        assert ExportRequest(report_id="r", start=a, end=b).start == a
    else:
        with pytest.raises(ValidationError):
            ExportRequest(report_id="r", start=a, end=b)


def test_click_export_request_normalises_ids() -> None:
    req = ClickExportRequest(program_id=5, ad_ids=[1, "2"], date="2026-01-02")  # type: ignore[arg-type]
    assert req.program_id == "5"
    assert req.ad_ids == ("1", "2")
    assert req.date == dt.date(2026, 1, 2)
    with pytest.raises(ValidationError):
        ClickExportRequest(ad_ids=["a b"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ClickExportRequest(program_id="../x")
    with pytest.raises(ValidationError):
        ClickExportRequest(unknown=1)  # type: ignore[call-arg]
