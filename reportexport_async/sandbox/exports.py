"""ReportExport and ClickExport: the GETs that queue a job (docs/api-facts.md §1, §3).

Each checks its parameters in the persona's dialect (date names and formats, result formats,
report filters, ClickExport's repeatable ids), charges the daily quota, and returns the existing
job for identical parameters (the guide's rule 1 (docs/guide.md)), or a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiMapping

from .catalog import CATALOGS, CLICK_EXPORT_COLUMNS, PersonaSpec, Report
from .data import DataKey
from .routing import InvalidInput, error, persona_spec, validation_failed

if TYPE_CHECKING:
    from .jobs import Jobs, SandboxJob
    from .limits import Limits
    from .shared import Shared

RESULT_FORMATS = ("CSV", "JSON", "XML")
_NOT_FILTERS = frozenset({"ResultFormat", "IrVersion"})
_CLICK_EXPORT_FIRST_DAY = date(2024, 4, 10)  # "Only dates after April 9, 2024" (§3)


def parse_day(text: str, name: str, datetimes: bool) -> date:
    try:
        if datetimes and "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment.date()
        return date.fromisoformat(text)
    except ValueError:
        expected = "YYYY-MM-DDThh:mm:ssZ" if datetimes else "YYYY-MM-DD"
        raise InvalidInput(f"Invalid date '{text}' for {name}; expected {expected}", name) from None


def result_format(query: Mapping[str, str]) -> str:
    fmt = query.get("ResultFormat", "CSV").upper()
    if fmt not in RESULT_FORMATS:
        raise InvalidInput("Invalid result format. Must be one of CSV, JSON or XML", "ResultFormat")
    return fmt


def _check_filter_types(report: Report, filters: Mapping[str, str]) -> None:
    for item in report.extra_filters:
        value = filters.get(item.name)
        if value is None:
            continue
        try:
            if item.data_type == "Integer":
                int(value)
            elif item.data_type == "Decimal":
                float(value)
            elif item.data_type == "Boolean" and value.lower() not in ("true", "false"):
                raise ValueError(value)
        except ValueError:
            raise InvalidInput(
                f"Invalid value '{value}' for {item.name}: expected {item.data_type}", item.name
            ) from None


def _repeated(query: MultiMapping[str], name: str) -> list[str]:
    """A repeatable ClickExport parameter: `AdId=1&AdId=2` as the documents write it, or
    `AdId[]=1` as docs/api-facts.md §3 does (the strict dialect refuses the second)."""
    return [*query.getall(name, []), *query.getall(f"{name}[]", [])]


def _invalid(spec: PersonaSpec, problem: InvalidInput) -> web.Response:
    if spec.unknown_report_status == 200:
        # §1c: "The Reports and ReportExport endpoints do not use 4xx status codes".
        return error(200, problem.message)
    return validation_failed(problem)


def _ticket(spec: PersonaSpec, job: SandboxJob) -> dict[str, object]:
    body: dict[str, object] = {
        "Status": "QUEUED",
        "QueuedUri": job.queued_uri,
        "ResultUri": job.result_uri,
    }
    if spec.export_has_replay_uri:
        body["ReplayUri"] = job.replay_uri
    return body


class Exports:
    def __init__(self, shared: Shared, limits: Limits, jobs: Jobs) -> None:
        self._shared = shared
        self._limits = limits
        self._jobs = jobs

    def _export_dates(
        self, spec: PersonaSpec, query: Mapping[str, str], now: datetime
    ) -> tuple[date, date, date | None, set[str]]:
        """(start, end, default-range day or None, the parameter names used for dates)."""
        names = [(spec.start_param, spec.end_param)]
        if spec.alternate_date_params:
            names.append(spec.alternate_date_params)
        for start_name, end_name in names:
            start_text, end_text = query.get(start_name), query.get(end_name)
            if start_text is None and end_text is None:
                continue
            if start_text is None or end_text is None:
                missing = start_name if start_text is None else end_name
                raise InvalidInput(f"{missing} is required when the other date is given", missing)
            start = parse_day(start_text, start_name, spec.dates_are_datetimes)
            end = parse_day(end_text, end_name, spec.dates_are_datetimes)
            if start > end:
                raise InvalidInput(f"{start_name} must not be after {end_name}", start_name)
            return start, end, None, {start_name, end_name}
        # the guide's rule 5 (docs/guide.md): no dates means the default range; it becomes a new
        # job only when a new
        # calendar day has started. (The partner spec marks the dates required; the guide wins.)
        today = self._limits.day(now)
        start = today - timedelta(days=self._shared.config.default_range_days - 1)
        return start, today, today, set()

    async def report_export(self, request: web.Request) -> web.Response:
        spec = persona_spec(request)
        persona = spec.root
        now = self._shared.clock.now()
        refused = self._limits.charge_quota(spec, "ReportExport", now, request.match_info["sid"])
        if refused is not None:
            return refused
        report_id = request.match_info["report_id"]
        report = CATALOGS[persona].get(report_id)
        if report is None or not report.api_accessible:
            if spec.unknown_report_status == 404:
                return error(
                    404,
                    "No report exists with the supplied Id, or the report is not API accessible.",
                )
            return error(200, f"Not permitted to run report {report_id}")
        query = request.query
        try:
            fmt = result_format(query)
            start, end, default_day, date_names = self._export_dates(spec, query, now)
            filters = {
                key: value
                for key, value in query.items()
                if key not in _NOT_FILTERS and key not in date_names
            }
            _check_filter_types(report, filters)
        except InvalidInput as problem:
            return _invalid(spec, problem)
        sid = request.match_info["sid"]
        key = DataKey(sid, persona, report_id, tuple(sorted(filters.items())))
        dedup = ("ApiReport", persona, key, start, end, fmt, default_day)
        job = self._jobs.find_or_create(
            dedup,
            persona=persona,
            job_type="ApiReport",
            program_id=filters.get("SUBAID", ""),
            key=key,
            columns=report.columns,
            start=start,
            end=end,
            fmt=fmt,
            now=now,
        )
        return web.json_response(_ticket(spec, job))

    async def click_export(self, request: web.Request) -> web.Response:
        spec = persona_spec(request)
        persona = spec.root
        now = self._shared.clock.now()
        refused = self._limits.charge_quota(spec, "ClickExport", now, request.match_info["sid"])
        if refused is not None:
            return refused
        query = request.query
        try:
            fmt = result_format(query)
            day = self._click_date(query, now)
            filters: list[tuple[str, str]] = []
            if persona == "Advertisers":
                program_id = request.match_info["program_id"]
                filters.append(("ProgramId", program_id))
                list_params: tuple[str, ...] = ("AdId", "MediaId")
                unique_values = ("true", "false")
                for name in list_params:
                    for value in _repeated(query, name):
                        if not value.isdigit():
                            raise InvalidInput(f"Invalid value '{value}' for {name}", name)
            else:
                ids = _repeated(query, "ProgramId")
                program_id = ids[0] if ids else ""
                list_params = ("ProgramId", "AdId", "SubId")
                unique_values = ("TRUE", "FALSE")
            for name in list_params:
                # Keyed as `AdId[]` whichever spelling came: the same job, the same rows.
                filters.extend((f"{name}[]", value) for value in sorted(_repeated(query, name)))
            unique = query.get("UniqueClick")
            if unique is not None:
                if unique not in unique_values:
                    expected = " or ".join(unique_values)
                    raise InvalidInput(f"UniqueClick must be {expected}", "UniqueClick")
                filters.append(("UniqueClick", unique.lower()))
        except InvalidInput as problem:
            return _invalid(spec, problem)
        sid = request.match_info["sid"]
        key = DataKey(sid, persona, "ClickExport", tuple(sorted(filters)))
        dedup = ("ClickExport", persona, key, day, fmt)
        job = self._jobs.find_or_create(
            dedup,
            persona=persona,
            job_type="ClickExport",
            program_id=program_id,
            key=key,
            columns=CLICK_EXPORT_COLUMNS,
            start=day,
            end=day,
            fmt=fmt,
            now=now,
        )
        body = _ticket(spec, job)
        body["ReplayUri"] = job.replay_uri  # both ClickExport specs return it (§3)
        return web.json_response(body)

    def _click_date(self, query: Mapping[str, str], now: datetime) -> date:
        text = query.get("Date")
        today = self._limits.day(now)
        if text is None:
            return today
        day = parse_day(text, "Date", False)
        if day < _CLICK_EXPORT_FIRST_DAY:
            raise InvalidInput("Only dates after April 9, 2024 are supported", "Date")
        if day > today:
            raise InvalidInput("Date must not be in the future", "Date")
        return day
