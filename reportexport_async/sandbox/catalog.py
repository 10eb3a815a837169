"""What the sandbox knows about each account type (persona) and its report catalog.

Written from impact.com's published OpenAPI documents and the facts in docs/api-facts.md (the
sources are named there), independently of the client side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Persona = Literal["Advertisers", "Mediapartners", "Agencies"]
PERSONAS: tuple[Persona, ...] = ("Advertisers", "Mediapartners", "Agencies")


@dataclass(frozen=True)
class PersonaSpec:
    root: Persona
    start_param: str
    end_param: str
    # Brand export dates are ISO date-times (docs/api-facts.md §1a); partner and agency use
    # yyyy-MM-dd.
    dates_are_datetimes: bool
    # docs/api-facts.md §1a: the brand spec names StartDate/EndDate, but MetaData and the other
    # personas say START_DATE/END_DATE; which one the brand API accepts is unsettled (§8), so the
    # brand sandbox accepts both.
    alternate_date_params: tuple[str, str] | None
    export_has_replay_uri: bool  # the brand ReportExport answer has no ReplayUri (§1a)
    unknown_report_status: int  # partner answers 404 (§1b); brand and agency 200 + ERROR (§1c)
    list_wrapped: bool  # brand/partner {"Jobs": [...]}, agency a top-level array (§2)
    # Brand spec: nullable dates; the partner spec types them as plain strings and the agency
    # examples show "" (§2 Job schema): only the brand sends null.
    null_dates: bool
    partner_headers: bool  # X-RateLimit-*-hour, RateLimit-Reset, Retry-After (§5)
    partner_page_spelling: bool  # @firstpageruri etc. (§2 pagination)
    replay_new_id: bool  # agency: replay creates a new job; brand/partner re-queue it (§2)
    replayable_states: frozenset[str]
    has_click_export: bool


_REPLAYABLE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

PERSONA_SPECS: dict[Persona, PersonaSpec] = {
    "Advertisers": PersonaSpec(
        root="Advertisers",
        start_param="StartDate",
        end_param="EndDate",
        dates_are_datetimes=True,
        alternate_date_params=("START_DATE", "END_DATE"),
        export_has_replay_uri=False,
        unknown_report_status=200,
        list_wrapped=True,
        null_dates=True,
        partner_headers=False,
        partner_page_spelling=False,
        replay_new_id=False,
        replayable_states=_REPLAYABLE,
        has_click_export=True,
    ),
    "Mediapartners": PersonaSpec(
        root="Mediapartners",
        start_param="START_DATE",
        end_param="END_DATE",
        dates_are_datetimes=False,
        alternate_date_params=None,
        export_has_replay_uri=True,
        unknown_report_status=404,
        list_wrapped=True,
        null_dates=False,
        partner_headers=True,
        partner_page_spelling=True,
        replay_new_id=False,
        replayable_states=_REPLAYABLE,
        has_click_export=True,
    ),
    "Agencies": PersonaSpec(
        root="Agencies",
        start_param="START_DATE",
        end_param="END_DATE",
        dates_are_datetimes=False,
        alternate_date_params=None,
        export_has_replay_uri=True,
        unknown_report_status=200,
        list_wrapped=False,
        null_dates=False,
        partner_headers=False,
        partner_page_spelling=False,
        replay_new_id=True,
        # The agency spec adds ERROR to the replayable states (docs/api-facts.md §2, Replay).
        replayable_states=_REPLAYABLE | {"ERROR"},
        has_click_export=False,
    ),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # date, rowid, program, status, amount, count, currency, country, choice:...
    data_type: str  # as MetaData's Attributes show it: Boolean, Date (...), Decimal, ...
    description: str


@dataclass(frozen=True)
class ReportFilter:
    name: str
    data_type: str  # Boolean, Date (...), Decimal, Integer, String (docs/api-facts.md §1d)
    format: str = ""


@dataclass(frozen=True)
class Report:
    id: str
    name: str
    category: str
    description: str
    api_accessible: bool
    columns: tuple[Column, ...]
    extra_filters: tuple[ReportFilter, ...] = ()


# MetaData DataType values, as the agency spec enumerates them (docs/api-facts.md §1d).
_DATE = "Date (yyyy-MM-dd'T'HH:mm:ssZZ)"

_ACTION_COLUMNS = (
    Column("Date", "date", _DATE, "Day the action was recorded."),
    Column("ActionId", "rowid", "String", "Unique action id."),
    Column("ProgramId", "program", "Integer", "Program (campaign) id."),
    Column("ActionTracker", "choice:Online Sale|Lead|Install|Subscription", "String", "Tracker."),
    Column("State", "choice:PENDING|APPROVED|REVERSED", "String", "Action state."),
    Column("Amount", "amount", "Decimal", "Sale amount."),
    Column("Payout", "amount", "Decimal", "Payout to the partner."),
    Column("Currency", "currency", "String", "Currency of the amounts."),
)
_PERFORMANCE_COLUMNS = (
    Column("Date", "date", _DATE, "Day."),
    Column("ProgramId", "program", "Integer", "Program (campaign) id."),
    Column("Clicks", "count", "Integer", "Clicks."),
    Column("Actions", "count", "Integer", "Actions."),
    Column("Revenue", "amount", "Decimal", "Revenue."),
    Column("Cost", "amount", "Decimal", "Cost."),
    Column("Currency", "currency", "String", "Currency of the amounts."),
)
_CLICK_COLUMNS = (
    Column("Date", "date", _DATE, "Day of the click."),
    Column("ClickId", "rowid", "String", "Unique click id."),
    Column("ProgramId", "program", "Integer", "Program id."),
    Column("AdId", "count", "Integer", "Ad id."),
    Column("MediaId", "count", "Integer", "Partner (media) id."),
    Column("Country", "country", "String", "Country of the click."),
    Column("UniqueClick", "choice:true|false", "Boolean", "Whether the click was unique."),
)
CLICK_EXPORT_COLUMNS = (
    *_CLICK_COLUMNS[:3],
    Column("ProgramName", "choice:Spring Sale|Evergreen|Loyalty", "String", "Program name."),
    *_CLICK_COLUMNS[3:],
)
_NOTES_COLUMNS = (Column("Date", "date", _DATE, "Day."), Column("Note", "rowid", "String", "."))

_CURRENCY = ReportFilter("CONV_CURRENCY", "String")
_SUBAID = ReportFilter("SUBAID", "Integer")


def _reports(*reports: Report) -> dict[str, Report]:
    return {report.id: report for report in reports}


CATALOGS: dict[Persona, dict[str, Report]] = {
    "Advertisers": _reports(
        Report(
            "adv_action_listing_pm",
            "Action Listing",
            "Performance",
            "Lists all actions for a date range.",
            True,
            _ACTION_COLUMNS,
            (_SUBAID, _CURRENCY, ReportFilter("MIN_AMOUNT", "Decimal")),
        ),
        Report(
            "adv_click_data_pm_only",
            "Click Data",
            "Clicks",
            "Clicks per day.",
            True,
            _CLICK_COLUMNS,
            (_SUBAID, ReportFilter("UNIQUE_ONLY", "Boolean")),
        ),
        Report(
            "4222",
            "Performance by Day",
            "Performance",
            "Daily performance totals.",
            True,
            _PERFORMANCE_COLUMNS,
            (_SUBAID, _CURRENCY),
        ),
        Report(
            "adv_internal_audit",
            "Internal Audit",
            "Admin",
            "Not available through the API.",
            False,
            _NOTES_COLUMNS,
        ),
    ),
    "Mediapartners": _reports(
        Report(
            "mp_action_listing_fast",
            "Action Listing",
            "Performance",
            "Lists all actions for a date range.",
            True,
            _ACTION_COLUMNS,
            (ReportFilter("SUBAID", "String"), _CURRENCY),
        ),
        Report(
            "mp_performance_by_day",
            "Performance by Day",
            "Performance",
            "Daily performance totals.",
            True,
            _PERFORMANCE_COLUMNS,
            (ReportFilter("SUBAID", "String"),),
        ),
        Report(
            "mp_clicks_by_day",
            "Clicks by Day",
            "Performance",  # the partner spec's Category enum has no "Clicks"
            "Clicks per day.",
            True,
            _CLICK_COLUMNS,
            (ReportFilter("SUBAID", "String"),),
        ),
        Report(
            "mp_legacy_invoice",
            "Legacy Invoice",
            "Finance",
            "Not available through the API.",
            False,
            _NOTES_COLUMNS,
        ),
    ),
    "Agencies": _reports(
        Report(
            "agency_action_listing",
            "Action Listing",
            "Performance",
            "Lists all actions for a date range.",
            True,
            _ACTION_COLUMNS,
            (ReportFilter("SUBAID", "String"), ReportFilter("Advertiser", "String")),
        ),
        Report(
            "agency_performance_by_brand",
            "Performance by Brand",
            "Performance",
            "Daily performance totals per brand.",
            True,
            _PERFORMANCE_COLUMNS,
            (ReportFilter("Advertiser", "String"),),
        ),
        Report(
            "agency_private_notes",
            "Private Notes",
            "Admin",
            "Not available through the API.",
            False,
            _NOTES_COLUMNS,
        ),
    ),
}


def date_filters(persona: Persona) -> tuple[ReportFilter, ReportFilter]:
    spec = PERSONA_SPECS[persona]
    if spec.dates_are_datetimes:
        kind = "Date (yyyy-MM-dd'T'HH:mm:ssZZ)"
        return ReportFilter(spec.start_param, kind), ReportFilter(spec.end_param, kind)
    kind = "Date (yyyy-MM-dd'T'HH:mm:ssZZ)"
    return (
        ReportFilter(spec.start_param, kind, "yyyy-MM-dd"),
        ReportFilter(spec.end_param, kind, "yyyy-MM-dd"),
    )


def report_filters(persona: Persona, report: Report) -> tuple[ReportFilter, ...]:
    return (*date_filters(persona), *report.extra_filters)
