"""The three account types ("personas") and everything that differs between them.

The same operations exist for brands, partners and agencies, but parameter names, date formats,
list shapes, ClickExport paths and rate-limit headers differ (docs/api-facts.md §0-§5). Keeping
every difference in one frozen table means request building and response parsing never branch on
a string somewhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "PERSONAS",
    "RESERVED_EXPORT_PARAMS",
    "AccountType",
    "DateStyle",
    "Persona",
    "RateLimitHeaderNames",
    "persona_for",
]


class AccountType(StrEnum):
    """The account-type root of every path (docs/api-facts.md §0), spelt exactly as the specs do."""

    ADVERTISERS = "Advertisers"
    MEDIAPARTNERS = "Mediapartners"  # not "MediaPartners": docs/api-facts.md §0 [INFERRED]
    AGENCIES = "Agencies"

    @classmethod
    def parse(cls, value: str | AccountType) -> AccountType:
        """Accept the canonical names and common aliases, case-insensitively.

        Raises ``ValueError`` (the config layer turns it into a ``ConfigurationError``).
        """
        if isinstance(value, AccountType):
            return value
        key = str(value).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
        try:
            return _ALIASES[key]
        except KeyError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(
                f"unknown account type {value!r}; use one of {choices} "
                "(aliases: brand, advertiser, partner, mediapartner, publisher, agency)"
            ) from None


_ALIASES: Mapping[str, AccountType] = MappingProxyType(
    {
        "advertisers": AccountType.ADVERTISERS,
        "advertiser": AccountType.ADVERTISERS,
        "brand": AccountType.ADVERTISERS,
        "brands": AccountType.ADVERTISERS,
        "mediapartners": AccountType.MEDIAPARTNERS,
        "mediapartner": AccountType.MEDIAPARTNERS,
        "partner": AccountType.MEDIAPARTNERS,
        "partners": AccountType.MEDIAPARTNERS,
        "publisher": AccountType.MEDIAPARTNERS,
        "publishers": AccountType.MEDIAPARTNERS,
        "agencies": AccountType.AGENCIES,
        "agency": AccountType.AGENCIES,
    }
)


class DateStyle(StrEnum):
    """How a persona writes a date in a query parameter."""

    DATE = "date"  # YYYY-MM-DD
    DATETIME = "datetime"  # YYYY-MM-DDThh:mm:ssZ (UTC)


@dataclass(frozen=True, slots=True)
class RateLimitHeaderNames:
    """Header names to read, in order of preference (docs/api-facts.md §5 "Headers and 429")."""

    limit: tuple[str, ...]
    remaining: tuple[str, ...]
    reset: tuple[str, ...]
    retry_after: tuple[str, ...] = ("Retry-After",)


# Both spellings are read for every persona (the docs are not consistent and a proxy may
# rewrite them); the persona's documented names come first.
_BRAND_AGENCY_HEADERS = RateLimitHeaderNames(
    limit=("X-RateLimit-Limit", "X-RateLimit-Limit-hour", "RateLimit-Limit"),
    remaining=("X-RateLimit-Remaining", "X-RateLimit-Remaining-hour", "RateLimit-Remaining"),
    reset=("X-RateLimit-Reset", "RateLimit-Reset", "X-RateLimit-Reset-hour"),
)
_PARTNER_HEADERS = RateLimitHeaderNames(
    limit=("X-RateLimit-Limit-hour", "X-RateLimit-Limit", "RateLimit-Limit"),
    remaining=("X-RateLimit-Remaining-hour", "X-RateLimit-Remaining", "RateLimit-Remaining"),
    reset=("RateLimit-Reset", "X-RateLimit-Reset", "X-RateLimit-Reset-hour"),
)


@dataclass(frozen=True, slots=True)
class Persona:
    """Per-account-type facts. Obtain one with :func:`persona_for`."""

    account_type: AccountType
    #: ReportExport date parameters (docs/api-facts.md §1a brand, §1b partner, §1c agency).
    start_param: str
    end_param: str
    export_date_style: DateStyle
    #: Jobs listing ``CreatedAfter``/``CreatedBefore`` format (docs/api-facts.md §2 "List jobs").
    jobs_filter_style: DateStyle
    #: Key wrapping the Jobs listing, or None for a top-level array (agency, docs/api-facts.md §2).
    jobs_list_key: str | None
    #: Key wrapping the Reports catalog, or None for a top-level array (agency,
    #: docs/api-facts.md §1d).
    reports_list_key: str | None
    #: ClickExport path below the account root, or None when the persona has none (§3).
    click_export_path: str | None
    rate_limit_headers: RateLimitHeaderNames
    #: Whether the daily ReportExport/ClickExport quotas are documented (docs/api-facts.md §5).
    daily_quotas_documented: bool

    @property
    def has_click_export(self) -> bool:
        return self.click_export_path is not None

    def root(self, account_sid: str) -> str:
        """``/{AccountType}/{AccountSID}`` without quoting (requests.py quotes segments)."""
        return f"/{self.account_type.value}/{account_sid}"


PERSONAS: Mapping[AccountType, Persona] = MappingProxyType(
    {
        AccountType.ADVERTISERS: Persona(
            account_type=AccountType.ADVERTISERS,
            # Brand spec: StartDate/EndDate as date-times (docs/api-facts.md §1a); other sources
            # say START_DATE/END_DATE, an unsettled point (§8).
            start_param="StartDate",
            end_param="EndDate",
            export_date_style=DateStyle.DATETIME,
            jobs_filter_style=DateStyle.DATETIME,
            jobs_list_key="Jobs",
            reports_list_key="Reports",
            click_export_path="/Programs/{ProgramId}/ClickExport",
            rate_limit_headers=_BRAND_AGENCY_HEADERS,
            daily_quotas_documented=True,
        ),
        AccountType.MEDIAPARTNERS: Persona(
            account_type=AccountType.MEDIAPARTNERS,
            start_param="START_DATE",
            end_param="END_DATE",
            export_date_style=DateStyle.DATE,
            jobs_filter_style=DateStyle.DATE,
            jobs_list_key="Jobs",
            reports_list_key="Reports",
            click_export_path="/ClickExport",
            rate_limit_headers=_PARTNER_HEADERS,
            daily_quotas_documented=True,
        ),
        AccountType.AGENCIES: Persona(
            account_type=AccountType.AGENCIES,
            start_param="START_DATE",
            end_param="END_DATE",
            export_date_style=DateStyle.DATE,
            jobs_filter_style=DateStyle.DATE,
            jobs_list_key=None,
            reports_list_key=None,
            click_export_path=None,
            rate_limit_headers=_BRAND_AGENCY_HEADERS,
            daily_quotas_documented=False,
        ),
    }
)

#: Every query-parameter name any persona uses for the export date range; ExportRequest
#: refuses filters with these names so dates go through ``start``/``end`` only.
RESERVED_EXPORT_PARAMS: frozenset[str] = frozenset(
    {p.start_param.upper() for p in PERSONAS.values()}
    | {p.end_param.upper() for p in PERSONAS.values()}
    | {"RESULTFORMAT"}
)


def persona_for(account_type: AccountType | str) -> Persona:
    """The :class:`Persona` of an account type (aliases accepted, see ``AccountType.parse``)."""
    return PERSONAS[AccountType.parse(account_type)]
