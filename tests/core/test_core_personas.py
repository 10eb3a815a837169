"""Per-account-type facts (docs/api-facts.md §0-§5)."""

from __future__ import annotations

import pytest

from reportexport_async.core.personas import (
    PERSONAS,
    RESERVED_EXPORT_PARAMS,
    AccountType,
    DateStyle,
    persona_for,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Advertisers", AccountType.ADVERTISERS),
        ("brand", AccountType.ADVERTISERS),
        ("ADVERTISER", AccountType.ADVERTISERS),
        ("Mediapartners", AccountType.MEDIAPARTNERS),
        ("MediaPartners", AccountType.MEDIAPARTNERS),
        ("media-partner", AccountType.MEDIAPARTNERS),
        ("partner", AccountType.MEDIAPARTNERS),
        (" Agency ", AccountType.AGENCIES),
        ("agencies", AccountType.AGENCIES),
        (AccountType.AGENCIES, AccountType.AGENCIES),
    ],
)
def test_parse_aliases(raw: str, expected: AccountType) -> None:
    assert AccountType.parse(raw) is expected


@pytest.mark.parametrize("raw", ["", "brandx", "admin", "Advertisers/"])
def test_parse_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="unknown account type"):
        AccountType.parse(raw)


def test_path_spelling_is_exactly_the_specs() -> None:
    # docs/api-facts.md §0: "Mediapartners", not "MediaPartners".
    assert [t.value for t in AccountType] == ["Advertisers", "Mediapartners", "Agencies"]
    assert persona_for("partner").root("IR1") == "/Mediapartners/IR1"


@pytest.mark.parametrize(
    ("account_type", "start", "style", "jobs_key", "reports_key", "click", "reset_header"),
    [
        (
            "Advertisers",
            "StartDate",
            DateStyle.DATETIME,
            "Jobs",
            "Reports",
            "/Programs/{ProgramId}/ClickExport",
            "X-RateLimit-Reset",
        ),
        (
            "Mediapartners",
            "START_DATE",
            DateStyle.DATE,
            "Jobs",
            "Reports",
            "/ClickExport",
            "RateLimit-Reset",
        ),
        ("Agencies", "START_DATE", DateStyle.DATE, None, None, None, "X-RateLimit-Reset"),
    ],
)
def test_persona_table(
    account_type: str,
    start: str,
    style: DateStyle,
    jobs_key: str | None,
    reports_key: str | None,
    click: str | None,
    reset_header: str,
) -> None:
    p = persona_for(account_type)
    assert p.start_param == start
    assert p.export_date_style is style
    assert p.jobs_filter_style is style
    assert p.jobs_list_key == jobs_key
    assert p.reports_list_key == reports_key
    assert p.click_export_path == click
    assert p.has_click_export is (click is not None)
    assert p.rate_limit_headers.reset[0] == reset_header


def test_partner_reads_hour_headers_first() -> None:
    names = persona_for("partner").rate_limit_headers
    assert names.limit[0] == "X-RateLimit-Limit-hour"
    assert names.remaining[0] == "X-RateLimit-Remaining-hour"
    assert names.retry_after == ("Retry-After",)


def test_reserved_params_cover_every_persona() -> None:
    for persona in PERSONAS.values():
        assert persona.start_param.upper() in RESERVED_EXPORT_PARAMS
        assert persona.end_param.upper() in RESERVED_EXPORT_PARAMS
    assert "RESULTFORMAT" in RESERVED_EXPORT_PARAMS
