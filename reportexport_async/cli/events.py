"""`--json`: one JSON object per line, and the run's events (`ProgressEvent`) in plain words,
the same words on a terminal and in the JSON stream."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime, tzinfo
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.planning import Plan
from ..jobs.orchestrator import ProgressEvent
from .output import moment_text
from .pipes import echo
from .wording import cli_language

__all__ = ["echo_json", "event_json", "plan_text", "quota_spent_text"]


def echo_json(payload: Mapping[str, Any]) -> None:
    echo(json.dumps(payload, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (Path, PurePosixPath)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def plan_text(plan: Plan) -> str:
    cost = plan.cost
    quota = "no daily limit" if cost.quota_left_today is None else f"{cost.quota_left_today} left"
    text = (
        f"{cost.chunks} chunks: {cost.done} done already, {cost.reattach} to re-attach, "
        f"{cost.submits} to submit (ReportExport quota today: {quota}), "
        f"{cost.downloads} downloads, ~{cost.status_calls_estimate} status calls"
    )
    if cost.submits and cost.quota_left_today is not None:
        days = "1 day" if cost.quota_days == 1 else f"{cost.quota_days} days"
        text += f"; the submits need {days} of ReportExport quota"
    return text


def quota_spent_text(until: datetime | None, zone: tzinfo | None, offset: float = 0.0) -> str:
    """The spent daily quota, said once per account however many submitters meet it (`offset`:
    seconds the server's clock is ahead of this machine's, see `output.moment_text`)."""
    return (
        "the daily ReportExport quota is spent; the chunks left wait for its reset at "
        f"{moment_text(until, zone, offset)}"
    )


def event_json(event: ProgressEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": event.kind}
    for name in ("status", "report_id", "chunk", "job_id", "message"):
        value = getattr(event, name)
        if value is not None:
            payload["report" if name == "report_id" else name] = value
    if event.plan is not None:  # plain words, not the library's object
        payload["message"] = plan_text(event.plan)
    elif event.message is not None:
        payload["message"] = cli_language(event.message)
    if event.until is not None:
        payload["until"] = event.until.isoformat()
    if event.kind == "chunk":
        payload["bytes"] = event.bytes
    if event.kind == "loaded":  # what was loaded where
        payload.update(rows=event.rows, target=event.target, table=event.table)
    payload["calls"] = dict(event.calls)
    payload["quota_left"] = event.quota_left
    if event.plan is not None:
        payload["plan"] = {
            "cost": dataclasses.asdict(event.plan.cost),
            "chunks": [
                {
                    "report": planned.report_id,
                    "chunk": str(planned.chunk),
                    "state": planned.state,
                    "fingerprint": planned.fingerprint,
                    "job_id": planned.job_id,
                }
                for planned in event.plan.chunks
            ],
        }
    return payload
