"""Reports and MetaData: the catalog a client reads before it exports (docs/api-facts.md §1d),
served
from `catalog.CATALOGS`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .catalog import CATALOGS, PersonaSpec, Report, report_filters
from .routing import error, persona_spec

if TYPE_CHECKING:
    from .shared import Shared


def _report_json(spec: PersonaSpec, sid: str, report: Report) -> dict[str, object]:
    root = f"/{spec.root}/{sid}"
    return {
        "Name": report.name,
        "Id": report.id,
        "Category": report.category,
        "Description": report.description,
        "ApiAccessible": report.api_accessible,
        "ApiRunUri": f"{root}/Reports/{report.id}",
        "DeferredApiRunUri": f"{root}/ReportExport/{report.id}",
        # The brand spec's example says /ReportsMetadata/<id> but its path is
        # /Reports/{Id}/MetaData (§1d); the sandbox points at the path that works.
        "MetaDataUri": f"{root}/Reports/{report.id}/MetaData",
        "RunUri": f"https://app.impact.com/secure/reports/run/{report.id}",
    }


class Reports:
    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    async def reports(self, request: web.Request) -> web.Response:
        spec = persona_spec(request)
        sid = request.match_info["sid"]
        reports = [_report_json(spec, sid, report) for report in CATALOGS[spec.root].values()]
        # Brand and partner wrap the catalog; the agency spec shows a top-level array (§1d).
        return web.json_response({"Reports": reports} if spec.list_wrapped else reports)

    async def metadata(self, request: web.Request) -> web.Response:
        spec = persona_spec(request)
        report = CATALOGS[spec.root].get(request.match_info["report_id"])
        if report is None:
            return error(404, "No report exists with the supplied Id")
        root = f"/{spec.root}/{request.match_info['sid']}"
        body = {
            "Name": report.name,
            "Id": report.id,
            "Description": report.description,
            "Filters": [
                {"Name": item.name, "DataType": item.data_type, "Format": item.format}
                for item in report_filters(spec.root, report)
            ],
            "Attributes": [
                {"Name": c.name, "DataType": c.data_type, "Description": c.description}
                for c in report.columns
            ],
            "RunUri": f"{root}/Reports/{report.id}",
            "Uri": f"{root}/Reports/{report.id}/MetaData",
        }
        return web.json_response(body)
