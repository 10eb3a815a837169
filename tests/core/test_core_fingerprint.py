"""Request fingerprints (the guide's rules 1 and 5, docs/guide.md): what makes two exports "the
same".

Equal on the wire means equal key; any change that reaches the wire (or the account, or the
origin) means a different key; a default-range request carries its calendar day."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from reportexport_async.core.fingerprint import (
    Fingerprint,
    account_key,
    canonical_origin,
    export_key,
    fingerprint,
)
from reportexport_async.core.models import ClickExportRequest, ExportRequest
from reportexport_async.core.personas import AccountType

FAST = settings(max_examples=200, deadline=None)

ORIGIN = "https://api.impact.com"
SID = "IRabc123"
TODAY = date(2026, 6, 15)


def key(
    request: ExportRequest | ClickExportRequest,
    *,
    base_url: str = ORIGIN,
    account_type: AccountType | str = AccountType.MEDIAPARTNERS,
    account_sid: str = SID,
    today: date = TODAY,
) -> str:
    return fingerprint(
        request,
        base_url=base_url,
        account_type=account_type,
        account_sid=account_sid,
        today=today,
    ).key


JAN = ExportRequest(
    report_id="mp_action_listing_fast",
    start=date(2026, 1, 1),
    end=date(2026, 1, 31),
    filters={"SUBAID": 3629, "SHOW_FLAG": True, "AS_OF": date(2026, 2, 1)},
    result_format="JSON",
)


# --- equal on the wire, equal key ------------------------------------------------------------


def test_filter_order_does_not_matter() -> None:
    reordered = ExportRequest(
        report_id=JAN.report_id,
        start=JAN.start,
        end=JAN.end,
        filters={"AS_OF": date(2026, 2, 1), "SHOW_FLAG": True, "SUBAID": 3629},
        result_format="JSON",
    )
    assert key(reordered) == key(JAN)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (3629, "3629"),
        (3629.0, "3629"),
        (True, "true"),
        (False, "false"),
        (date(2026, 2, 1), "2026-02-01"),
        (1.5, "1.5"),
    ],
)
def test_values_that_encode_alike_give_the_same_key(a: Any, b: Any) -> None:
    first = ExportRequest(report_id="r", start=JAN.start, end=JAN.end, filters={"X": a, "Y": 1})
    second = ExportRequest(report_id="r", start=JAN.start, end=JAN.end, filters={"Y": 1, "X": b})
    assert key(first) == key(second)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (3629, "3630"),
        (True, "TRUE"),  # a different string on the wire
        (True, False),
        (1, True),  # 1 goes out as "1", True as "true"
        (date(2026, 2, 1), "2026-2-1"),
        ("abc", "ABC"),
        ("", " "),
    ],
)
def test_values_that_encode_differently_give_different_keys(a: Any, b: Any) -> None:
    first = ExportRequest(report_id="r", filters={"X": a})
    second = ExportRequest(report_id="r", filters={"X": b})
    assert key(first) != key(second)


def test_result_format_case_is_normalised() -> None:
    assert key(JAN.model_copy(update={"result_format": "JSON"})) == key(
        ExportRequest.model_validate({**JAN.model_dump(), "result_format": "json"})
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.impact.com",
        "https://api.impact.com/",
        "HTTPS://API.impact.com:443/",
        "https://API.IMPACT.COM:443",
        "https://api.impact.com.",
    ],
)
def test_equivalent_origins_agree(base_url: str) -> None:
    assert canonical_origin(base_url) == "https://api.impact.com"
    assert key(JAN, base_url=base_url) == key(JAN)


@pytest.mark.parametrize(
    ("base_url", "canonical"),
    [
        ("http://api.impact.com:80/", "http://api.impact.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:443", "http://localhost:443"),  # 443 is not http's default port
        ("https://api.impact.com:8443", "https://api.impact.com:8443"),
    ],
)
def test_canonical_origin(base_url: str, canonical: str) -> None:
    assert canonical_origin(base_url) == canonical


@pytest.mark.parametrize(
    "other",
    [
        "http://api.impact.com",
        "https://api.impact.com:8443",
        "https://sandbox.impact.com",
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8081",
    ],
)
def test_a_different_origin_gives_a_different_key(other: str) -> None:
    assert key(JAN, base_url=other) != key(JAN)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("partner", "Mediapartners"),
        ("Mediapartners", AccountType.MEDIAPARTNERS),
        ("media-partner", "Mediapartners"),
        ("brand", "Advertisers"),
        ("advertiser", AccountType.ADVERTISERS),
        ("agency", "Agencies"),
    ],
)
def test_account_type_aliases_agree(alias: str, canonical: AccountType | str) -> None:
    assert key(JAN, account_type=alias) == key(JAN, account_type=canonical)


def test_account_types_differ_from_each_other() -> None:
    keys = {key(JAN, account_type=kind) for kind in AccountType}
    assert len(keys) == len(AccountType)


def test_unknown_account_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown account type"):
        key(JAN, account_type="reseller")


# --- any single change, a different key (Hypothesis) -----------------------------------------

filter_names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=8).filter(
    lambda name: name not in {"START_DATE", "END_DATE", "STARTDATE", "ENDDATE", "RESULTFORMAT"}
)
filter_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
    st.booleans(),
    st.dates(date(2020, 1, 1), date(2030, 12, 31)),
)
days = st.dates(date(2024, 1, 1), date(2028, 12, 31))


@st.composite
def export_requests(draw: st.DrawFn, *, dated: bool | None = None) -> ExportRequest:
    has_dates = draw(st.booleans()) if dated is None else dated
    start = end = None
    if has_dates:
        start = draw(days)
        end = start + timedelta(days=draw(st.integers(0, 60)))
    try:
        return ExportRequest(
            report_id=draw(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1)),
            start=start,
            end=end,
            filters=draw(st.dictionaries(filter_names, filter_values, max_size=4)),
            result_format=draw(st.sampled_from(["CSV", "JSON", "XML"])),
        )
    except ValueError:  # a reserved filter name: not a request anyone can make
        reject()


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "base_url": draw(
            st.sampled_from(
                ["https://api.impact.com", "http://127.0.0.1:8080", "https://sandbox.example"]
            )
        ),
        "account_type": draw(st.sampled_from(list(AccountType))),
        "account_sid": draw(st.text("IRabcdefXYZ0123456789", min_size=1, max_size=12)),
        "today": draw(days),
    }


def _other_value(value: Any) -> Any:
    """A value whose wire form surely differs from `value`'s."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, date):
        return value + timedelta(days=1)
    return value + "x"


@st.composite
def one_change(
    draw: st.DrawFn, request: ExportRequest, context: dict[str, Any]
) -> tuple[ExportRequest, dict[str, Any], str]:
    options = ["origin", "account_type", "sid", "report_id", "format", "new_filter"]
    if request.filters:
        options += ["filter_value", "drop_filter"]
    if request.start is not None:
        options += ["start", "end", "drop_dates"]
    else:
        options += ["add_dates"]
    what = draw(st.sampled_from(options))
    ctx = dict(context)
    fields = request.model_dump()
    if what == "origin":
        ctx["base_url"] = draw(
            st.sampled_from(
                [
                    "https://api2.impact.com",
                    "http://api.impact.com",
                    "https://api.impact.com:8443",
                    "http://127.0.0.1:8081",
                ]
            ).filter(lambda url: canonical_origin(url) != canonical_origin(ctx["base_url"]))
        )
    elif what == "account_type":
        ctx["account_type"] = draw(
            st.sampled_from([k for k in AccountType if k is not ctx["account_type"]])
        )
    elif what == "sid":
        ctx["account_sid"] = ctx["account_sid"] + draw(st.text("0123456789", min_size=1))
    elif what == "report_id":
        fields["report_id"] = fields["report_id"] + "_x"
    elif what == "format":
        fields["result_format"] = draw(
            st.sampled_from([f for f in ("CSV", "JSON", "XML") if f != request.result_format])
        )
    elif what == "new_filter":
        name = draw(filter_names.filter(lambda n: n not in request.filters))
        fields["filters"] = {**fields["filters"], name: draw(filter_values)}
    elif what == "filter_value":
        name = draw(st.sampled_from(sorted(request.filters)))
        fields["filters"] = {**fields["filters"], name: _other_value(request.filters[name])}
    elif what == "drop_filter":
        name = draw(st.sampled_from(sorted(request.filters)))
        fields["filters"] = {k: v for k, v in fields["filters"].items() if k != name}
    elif what == "start":
        fields["start"] = request.start - timedelta(days=draw(st.integers(1, 30)))  # type: ignore[operator]
    elif what == "end":
        fields["end"] = request.end + timedelta(days=draw(st.integers(1, 30)))  # type: ignore[operator]
    elif what == "drop_dates":
        fields["start"] = fields["end"] = None
    elif what == "add_dates":
        fields["start"] = fields["end"] = ctx["today"]
    return ExportRequest.model_validate(fields), ctx, what


@FAST
@given(st.data(), export_requests(), contexts())
def test_any_single_change_gives_a_different_key(
    data: st.DataObject, request: ExportRequest, context: dict[str, Any]
) -> None:
    changed, ctx, what = data.draw(one_change(request, context), label="change")
    before = fingerprint(request, **context)
    after = fingerprint(changed, **ctx)
    assert after.key != before.key, what
    assert after.canonical != before.canonical


@FAST
@given(export_requests(), contexts())
def test_the_key_is_a_pure_function_of_the_request(
    request: ExportRequest, context: dict[str, Any]
) -> None:
    first = fingerprint(request, **context)
    # A rebuilt, equal request (filters reordered) gives the same fingerprint.
    rebuilt = ExportRequest.model_validate(
        {**request.model_dump(), "filters": dict(reversed(list(request.filters.items())))}
    )
    assert fingerprint(rebuilt, **context) == first
    assert fingerprint(request, **context) == first
    assert str(first) == first.key


@FAST
@given(export_requests(), contexts())
def test_wire_equal_filter_values_agree(request: ExportRequest, context: dict[str, Any]) -> None:
    # Replace every filter value with the string that goes on the wire for it.
    as_text = {
        k: ("true" if v else "false")
        if isinstance(v, bool)
        else (v.isoformat() if isinstance(v, date) else str(v))
        for k, v in request.filters.items()
    }
    textual = ExportRequest.model_validate({**request.model_dump(), "filters": as_text})
    assert fingerprint(textual, **context) == fingerprint(request, **context)


@FAST
@given(export_requests(), contexts())
def test_canonical_is_sorted_json_and_the_key_its_sha256(
    request: ExportRequest, context: dict[str, Any]
) -> None:
    fp = fingerprint(request, **context)
    assert isinstance(fp, Fingerprint)
    body = json.loads(fp.canonical)
    assert isinstance(body, dict)
    assert list(body) == sorted(body)
    assert json.dumps(body, sort_keys=True, separators=(",", ":")) == fp.canonical
    assert fp.key == hashlib.sha256(fp.canonical.encode("utf-8")).hexdigest()
    assert len(fp.key) == 64
    assert body["origin"] == canonical_origin(context["base_url"])
    assert body["account_type"] == AccountType.parse(context["account_type"]).value
    assert body["account_sid"] == context["account_sid"]
    assert body["report_id"] == request.report_id
    assert body["format"] == request.result_format
    assert [name for name, _ in body["filters"]] == sorted(request.filters)


# --- the default range carries its day -------------------------------------------------------


@FAST
@given(export_requests(dated=False), contexts(), days)
def test_default_range_includes_the_day(
    request: ExportRequest, context: dict[str, Any], other_day: date
) -> None:
    same_day = fingerprint(request, **context)
    next_day = fingerprint(request, **{**context, "today": other_day})
    if other_day == context["today"]:
        assert next_day == same_day
    else:
        assert next_day.key != same_day.key
    assert json.loads(same_day.canonical)["default_range_day"] == context["today"].isoformat()


@FAST
@given(export_requests(dated=True), contexts(), days)
def test_dated_request_does_not_depend_on_today(
    request: ExportRequest, context: dict[str, Any], other_day: date
) -> None:
    assert fingerprint(request, **{**context, "today": other_day}) == fingerprint(
        request, **context
    )
    body = json.loads(fingerprint(request, **context).canonical)
    assert "default_range_day" not in body
    assert (body["start"], body["end"]) == (request.start.isoformat(), request.end.isoformat())  # type: ignore[union-attr]


def test_default_range_is_not_the_same_as_todays_dates() -> None:
    # "No dates" and "today to today" are different requests on the wire.
    plain = ExportRequest(report_id="r")
    dated = ExportRequest(report_id="r", start=TODAY, end=TODAY)
    assert key(plain) != key(dated)
    assert key(plain, today=TODAY) == key(plain, today=TODAY)
    assert key(plain, today=TODAY) != key(plain, today=TODAY + timedelta(days=1))


# --- ClickExport -----------------------------------------------------------------------------


def test_click_export_ids_are_order_insensitive() -> None:
    a = ClickExportRequest(program_ids=("3", "1", "2"), sub_ids=("b", "a"), date=TODAY)
    b = ClickExportRequest(program_ids=(2, 3, 1), sub_ids=("a", "b"), date=TODAY)
    assert key(a) == key(b)
    c = ClickExportRequest(program_id=7, ad_ids=(5, 4), media_ids=("9", "8"), date=TODAY)
    d = ClickExportRequest(program_id="7", ad_ids=("4", "5"), media_ids=(8, 9), date=TODAY)
    assert key(c, account_type="brand") == key(d, account_type="brand")


def test_click_export_without_date_means_today() -> None:
    undated = ClickExportRequest(program_ids=("1",))
    assert key(undated, today=TODAY) == key(ClickExportRequest(program_ids=("1",), date=TODAY))
    assert key(undated, today=TODAY) != key(undated, today=TODAY + timedelta(days=1))
    dated = ClickExportRequest(program_ids=("1",), date=TODAY)
    assert key(dated, today=TODAY) == key(dated, today=TODAY + timedelta(days=5))


@pytest.mark.parametrize(
    "changes",
    [
        {"program_ids": ("1", "2")},
        {"ad_ids": ("1",)},
        {"media_ids": ("1",)},
        {"sub_ids": ("1",)},
        {"program_id": "1"},
        {"unique_click": True},
        {"unique_click": False},
        {"date": TODAY - timedelta(days=1)},
        {"result_format": "JSON"},
    ],
)
def test_click_export_changes_give_different_keys(changes: dict[str, Any]) -> None:
    base = ClickExportRequest(program_ids=("1",), date=TODAY)
    changed = ClickExportRequest.model_validate({**base.model_dump(), **changes})
    assert key(changed) != key(base)


def test_click_export_ids_in_different_fields_differ() -> None:
    # The same id as an ad id and as a media id are different requests.
    assert key(ClickExportRequest(ad_ids=("5",), date=TODAY)) != key(
        ClickExportRequest(media_ids=("5",), date=TODAY)
    )


def test_click_export_and_report_export_never_collide() -> None:
    click = fingerprint(
        ClickExportRequest(date=TODAY),
        base_url=ORIGIN,
        account_type="partner",
        account_sid=SID,
        today=TODAY,
    )
    report = fingerprint(
        ExportRequest(report_id="ClickExport"),
        base_url=ORIGIN,
        account_type="partner",
        account_sid=SID,
        today=TODAY,
    )
    assert click.key != report.key
    assert json.loads(click.canonical)["endpoint"] == "ClickExport"
    assert json.loads(report.canonical)["endpoint"] == "ReportExport"


def test_click_export_canonical_is_sorted_json() -> None:
    fp = fingerprint(
        ClickExportRequest(program_ids=("2", "1"), unique_click=True),
        base_url="HTTPS://API.impact.com:443/",
        account_type="partner",
        account_sid=SID,
        today=TODAY,
    )
    body = json.loads(fp.canonical)
    assert list(body) == sorted(body)
    assert body["program_ids"] == ["1", "2"]
    assert body["date"] == TODAY.isoformat()
    assert body["origin"] == ORIGIN
    assert body["account_type"] == "Mediapartners"
    assert fp.key == hashlib.sha256(fp.canonical.encode()).hexdigest()


def test_canonical_origin_keeps_ipv6_brackets_and_refuses_a_url_without_host() -> None:
    assert canonical_origin("http://[::1]:8080") != canonical_origin("http://[::1:8080]")
    assert canonical_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("api.impact.com", "", "https://"):
        with pytest.raises(ValueError, match="scheme and a host"):
            canonical_origin(bad)


# --- an export over any range, for one account (the record of `--chunk auto`) ----------------


def test_account_key_names_one_account_however_it_is_spelled() -> None:
    assert account_key("HTTPS://API.impact.com:443/", "mediapartners", SID) == (
        f"{ORIGIN}/Mediapartners/{SID}"
    )
    assert account_key(ORIGIN, "Mediapartners", SID) != account_key(ORIGIN, "Advertisers", SID)
    assert account_key(ORIGIN, "Mediapartners", SID) != account_key(ORIGIN, "Mediapartners", "IRx")


def test_export_key_leaves_the_dates_out_and_keeps_what_reaches_the_wire() -> None:
    february = JAN.model_copy(update={"start": date(2026, 2, 1), "end": date(2026, 2, 28)})
    wire_equal = JAN.model_copy(update={"filters": {**JAN.filters, "SUBAID": "3629"}})
    assert export_key(february) == export_key(JAN) == export_key(wire_equal)
    for change in (
        {"report_id": "mp_performance_by_day"},
        {"filters": {**JAN.filters, "SUBAID": 3630}},
        {"filters": {}},
        {"result_format": "CSV"},
    ):
        assert export_key(JAN.model_copy(update=change)) != export_key(JAN), change
    assert json.loads(export_key(JAN))["filters"][0] == ["AS_OF", "2026-02-01"]
