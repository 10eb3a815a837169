"""The sandbox's JSON answers, for each account type, validated against the response schemas of
the published OpenAPI documents in `shared/api-spec/` (impact.com's documents as harvested in the
public repository api-evangelist/impact; the sources are named in docs/api-facts.md).

The documents sit beside the checkout in CI (`../shared/api-spec/`, or wherever
`REPORTEXPORT_API_SPEC_DIR` points); on a user's machine they are missing and the tests skip.

How the documents are read:

- every schema is looked up by the request's path, method and HTTP status in the persona's
  documents (never hard-coded), and `$ref`s resolve inside the whole document through a
  `referencing` registry;
- the documents say `openapi: 3.1.0` but the brand Jobs document marks dates with the OpenAPI 3.0
  keyword `nullable: true`, which JSON Schema 2020-12 ignores; it is turned into
  `type: [T, "null"]`;
- `format` is asserted (`date-time` as RFC 3339, `uuid`, `uri-reference`), not just annotated;
- stricter than the documents: an object schema with `properties` admits no other keys, so the
  sandbox cannot invent fields. The one allowance is the pagination convention's string-valued
  `@`-keys (`@page`, `@nextpageuri`, ...; docs/api-facts.md §2, Pagination), which no Jobs schema
  lists.

Every test runs against both dialects of the sandbox (`reportexport_async.sandbox.dialect`):

- `examples` is checked as above, with the allowances the documentation examples need: `""` for
  an unset date-time and the brand's `nullable` read as JSON Schema's `null`;
- `strict` is checked against each document as it is, under OpenAPI 3.1's JSON Schema (no
  `nullable` conversion, `""` is no date-time) and with closed objects that admit no `@`-key
  either. The table of documented parameters and media types that the strict dialect enforces on
  requests is checked against the documents too.

Where the documents and the guide (docs/guide.md) or docs/api-facts.md disagree, the
examples dialect follows the guide; each such place is marked "Spec vs guide" below.

The answers come over real loopback HTTP from a plain aiohttp client, never the project's client.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reportexport_async.sandbox import ManualClock
from reportexport_async.sandbox.dialect import DIALECTS, OPERATIONS, Operation, Param
from reportexport_async.sandbox.pytest_plugin import SandboxThread

SPEC_DIR_ENV = "REPORTEXPORT_API_SPEC_DIR"
SKIP_REASON = (
    "shared/api-spec not found beside the checkout (set REPORTEXPORT_API_SPEC_DIR): "
    "the published OpenAPI documents are needed to validate against"
)

# The documents of each account type (persona).
PERSONA_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "Advertisers": (
        "impact-brand-jobs-v14-openapi.yml",
        "impact-brand-reports-v14-openapi.yml",
        "impact-brand-clicks-v14-openapi.yml",
    ),
    "Mediapartners": (
        "impact-partner-jobs-v16-openapi.yml",
        "impact-partner-reports-v16-openapi.yml",
        "impact-partner-clicks-v16-openapi.yml",
    ),
    "Agencies": (
        "impact-agency-jobs-v3-openapi.yml",
        "impact-agency-reports-v3-openapi.yml",
    ),
}
PERSONAS = tuple(PERSONA_DOCUMENTS)
# Query parameters that carry an export's dates (docs/api-facts.md §1a-§1c).
DATE_PARAMS = {
    "Advertisers": {"StartDate": "2026-06-01T00:00:00Z", "EndDate": "2026-06-03T00:00:00Z"},
    "Mediapartners": {"START_DATE": "2026-06-01", "END_DATE": "2026-06-03"},
    "Agencies": {"START_DATE": "2026-06-01", "END_DATE": "2026-06-03"},
}
SANDBOX_START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
JOB_SECONDS = 10.0  # one attempt; the first fifth of it is spent QUEUED


# -- reading the documents ---------------------------------------------------------------------


def spec_dir() -> Path:
    configured = os.environ.get(SPEC_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "api-spec"


def _nullable_to_type_list(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (used by the brand Jobs document although it says 3.1.0)
    as JSON Schema 2020-12: `type: [T, "null"]` (and `null` added to an `enum`)."""
    if isinstance(node, list):
        return [_nullable_to_type_list(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable_to_type_list(value) for key, value in node.items()}
    if out.pop("nullable", False) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _closed_objects(node: Any, meta_keys: bool = True) -> Any:
    """Stricter than the documents: objects with `properties` admit no undocumented key, except
    (`meta_keys`) the pagination convention's string-valued `@`-keys (docs/api-facts.md §2,
    Pagination)."""
    if isinstance(node, list):
        return [_closed_objects(item, meta_keys) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed_objects(value, meta_keys) for key, value in node.items()}
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        if meta_keys:
            out.setdefault("patternProperties", {"^@": {"type": "string"}})
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class Document:
    name: str
    uri: str
    contents: dict[str, Any]


@functools.cache
def raw_document(name: str) -> dict[str, Any]:
    with (spec_dir() / name).open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


@functools.cache
def load_document(name: str, strict: bool = False) -> Document:
    """The document as the examples dialect is checked (`nullable` as JSON Schema, `@`-keys
    allowed), or as it is (`strict`)."""
    raw = raw_document(name)
    if strict:
        contents = _closed_objects(copy.deepcopy(raw), meta_keys=False)
    else:
        contents = _closed_objects(_nullable_to_type_list(raw))
    prefix = "urn:impact-api-spec-strict" if strict else "urn:impact-api-spec"
    return Document(name, f"{prefix}:{name}", contents)


@functools.cache
def registry(strict: bool = False) -> Registry[Any]:
    resources: list[tuple[str, Resource[Any]]] = []
    for names in PERSONA_DOCUMENTS.values():
        for name in names:
            document = load_document(name, strict)
            resources.append((document.uri, DRAFT202012.create_resource(document.contents)))
    return Registry().with_resources(resources)


def _pointer_escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


@dataclass(frozen=True)
class ResponseSchema:
    """Where a response's schema lives: a JSON pointer into one document."""

    document: str
    template: str
    pointer: str

    def validator(self, strict: bool = False) -> Draft202012Validator:
        ref = {"$ref": f"{load_document(self.document, strict).uri}#{self.pointer}"}
        return Draft202012Validator(
            ref, registry=registry(strict), format_checker=_format_checker(strict)
        )


def find_operation(persona: str, path: str, method: str) -> tuple[str, str, dict[str, Any]]:
    """(document, path template, operation) that the persona's documents give for `method path`."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for name in PERSONA_DOCUMENTS[persona]:
        for template, operations in raw_document(name).get("paths", {}).items():
            operation = operations.get(method.lower())
            if operation is not None and _template_regex(template).fullmatch(path):
                found.append((name, template, operation))
    assert len(found) == 1, f"{method} {path}: expected one documented operation, found {found}"
    return found[0]


def response_schema(persona: str, path: str, method: str, status: int) -> ResponseSchema:
    """The JSON response schema that the persona's documents give for `method path -> status`."""
    found: list[ResponseSchema] = []
    for name in PERSONA_DOCUMENTS[persona]:
        paths = load_document(name).contents.get("paths", {})
        for template, operations in paths.items():
            if not _template_regex(template).fullmatch(path):
                continue
            responses = operations.get(method.lower(), {}).get("responses", {})
            answer = responses.get(str(status))
            assert answer is not None, (
                f"{name}: {method} {template} documents no {status} answer "
                f"(documented: {sorted(responses)})"
            )
            assert "application/json" in answer.get("content", {}), (
                f"{name}: {method} {template} -> {status} has no application/json body"
            )
            pointer = "/" + "/".join(
                _pointer_escape(token)
                for token in (
                    "paths",
                    template,
                    method.lower(),
                    "responses",
                    str(status),
                    "content",
                    "application/json",
                    "schema",
                )
            )
            found.append(ResponseSchema(name, template, pointer))
    assert len(found) == 1, f"{method} {path}: expected one documented path, found {found}"
    return found[0]


# -- formats -----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _is_date_time(value: object, *, empty: bool = True) -> bool:
    if not isinstance(value, str):
        return True
    if value == "":
        # Agency: the spec's own examples (AbandonedDate, CancelledDate, FailedDate: `""`) show
        # the empty string for an unset date (docs/api-facts.md §2, Job schema), so the examples
        # dialect
        # may send "". The brand document types unset dates as null instead, checked by `type`.
        return empty
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if re.search(r"[\s<>\"{}|\\^`]", value):
        return False
    try:
        urlsplit(value)
    except ValueError:
        return False
    return True


@functools.cache
def _format_checker(strict: bool = False) -> FormatChecker:
    checker = FormatChecker(["uuid"])
    checker.checks("date-time")(functools.partial(_is_date_time, empty=not strict))
    checker.checks("uri-reference")(_is_uri_reference)
    return checker


def errors_of(schema: ResponseSchema, body: Any, *, strict: bool = False) -> list[str]:
    errors = schema.validator(strict).iter_errors(body)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in sorted(errors, key=lambda e: list(e.path))
    ]


# -- talking to the sandbox --------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any
    path: str
    method: str
    dialect: str = "examples"

    @property
    def strict(self) -> bool:
        return self.dialect == "strict"


class Client:
    """A few lines of plain aiohttp around one sandbox account."""

    def __init__(self, sandbox: SandboxThread, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session
        self.headers = {
            "Authorization": aiohttp.encode_basic_auth(sandbox.account_sid, sandbox.auth_token)
        }

    async def call(
        self, path: str, params: dict[str, str] | None = None, *, method: str = "GET"
    ) -> Answer:
        """`path` relative to the server, as the API's URIs are (docs/api-facts.md §0)."""
        async with self.session.request(
            method,
            self.sandbox.base_url + path,
            params=params,
            headers=self.headers,
            allow_redirects=False,
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return Answer(response.status, response.content_type, body, path, method, self.dialect)

    @property
    def dialect(self) -> str:
        return str(self.sandbox.sandbox.config.dialect)

    def root(self, persona: str) -> str:
        return f"/{persona}/{self.sandbox.account_sid}"

    async def export(self, persona: str, day: int = 0, **extra: str) -> Answer:
        """A ReportExport of the first API-accessible report; `day` shifts the end date, so
        that each value makes a job of its own."""
        catalog = await self.catalog(persona)
        report = next(item for item in catalog if item["ApiAccessible"])
        start, end = DATE_PARAMS[persona].items()
        later = end[1].replace("06-03", f"06-{3 + day:02d}")
        params = {start[0]: start[1], end[0]: later, **extra}
        return await self.call(f"{self.root(persona)}/ReportExport/{report['Id']}", params)

    async def catalog(self, persona: str) -> list[dict[str, Any]]:
        answer = await self.call(f"{self.root(persona)}/Reports")
        assert answer.status == 200
        body = answer.body
        return list(body["Reports"] if isinstance(body, dict) else body)

    async def job_path(self, persona: str, day: int = 0, **extra: str) -> str:
        answer = await self.export(persona, day, **extra)
        assert answer.status == 200, answer.body
        assert answer.body["Status"] == "QUEUED", answer.body
        return str(answer.body["QueuedUri"])

    async def job(self, path: str) -> Answer:
        answer = await self.call(path)
        assert answer.status == 200, answer.body
        return answer

    async def job_when(self, path: str, status: str) -> Answer:
        """GET the job once every result file being written is on disk (a job whose time has
        come is COMPLETED only then), and check that it shows `status`."""
        await asyncio.to_thread(self.sandbox.wait_idle)
        answer = await self.job(path)
        assert answer.body["Status"] == status, answer.body
        return answer


def unexpected_errors(
    persona: str, schema: ResponseSchema, body: Any, *, strict: bool = False
) -> list[str]:
    """Validation errors of `body` (the sandbox has no known deviation left; `persona` keeps
    the call sites ready for one)."""
    del persona
    return errors_of(schema, body, strict=strict)


def assert_valid(persona: str, answer: Answer) -> None:
    """`answer` validates against its schema, checked as its dialect promises."""
    assert answer.content_type == "application/json", answer
    schema = response_schema(persona, answer.path, answer.method, answer.status)
    problems = unexpected_errors(persona, schema, answer.body, strict=answer.strict)
    assert not problems, (
        f"{persona} {answer.method} {answer.path} -> {answer.status} does not match "
        f"{schema.document} {schema.template}:\n  " + "\n  ".join(problems)
    )


@pytest.fixture(scope="module", autouse=True)
def _documents_present() -> Iterator[None]:
    if not all(
        (spec_dir() / name).is_file() for names in PERSONA_DOCUMENTS.values() for name in names
    ):
        pytest.skip(SKIP_REASON)
    yield
    raw_document.cache_clear()
    load_document.cache_clear()
    registry.cache_clear()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox(impact_sandbox_factory: Callable[..., SandboxThread], dialect: str) -> SandboxThread:
    # The plugin's thread-based sandbox: `Sandbox` itself enters an anyio task group in
    # `__aenter__`, which pytest-asyncio's async-generator fixtures cannot exit (teardown runs in
    # another task).
    return impact_sandbox_factory(
        dialect=dialect,
        clock=ManualClock(SANDBOX_START),
        job_duration=(JOB_SECONDS, JOB_SECONDS),
        rows_per_day=5,
        hourly_limit=0,
        daily_export_limit=0,
        daily_click_limit=0,
    )


@pytest.fixture
async def client(sandbox: SandboxThread) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(sandbox, session)


persona_param = pytest.mark.parametrize("persona", PERSONAS)
examples_only = pytest.mark.parametrize("dialect", ["examples"])
strict_only = pytest.mark.parametrize("dialect", ["strict"])


# -- the answers -------------------------------------------------------------------------------


@persona_param
async def test_report_export_ticket(client: Client, persona: str) -> None:
    answer = await client.export(persona)
    assert answer.status == 200
    assert answer.body["Status"] == "QUEUED"
    # Brand: the spec lists no ReplayUri (docs/api-facts.md §1a); with closed objects, one would
    # fail.
    assert ("ReplayUri" in answer.body) == (persona != "Advertisers")
    assert_valid(persona, answer)


async def test_agency_invalid_export_is_http_200_error(client: Client) -> None:
    """Agency: invalid input answers HTTP 200 with Status ERROR (docs/api-facts.md §1c); the
    ReportExportResponse schema of status 200 covers that envelope too."""
    answer = await client.export("Agencies", ResultFormat="PDF")
    assert answer.status == 200
    assert answer.body["Status"] == "ERROR"
    assert_valid("Agencies", answer)


@persona_param
async def test_reports_catalog(client: Client, persona: str) -> None:
    answer = await client.call(f"{client.root(persona)}/Reports")
    assert answer.status == 200
    catalog = answer.body["Reports"] if isinstance(answer.body, dict) else answer.body
    assert any(item["ApiAccessible"] for item in catalog)
    assert any(not item["ApiAccessible"] for item in catalog)
    assert_valid(persona, answer)


@persona_param
async def test_report_metadata(client: Client, persona: str) -> None:
    for report in await client.catalog(persona):
        answer = await client.call(f"{client.root(persona)}/Reports/{report['Id']}/MetaData")
        assert answer.status == 200
        assert answer.body["Filters"]
        assert answer.body["Attributes"]
        assert_valid(persona, answer)


@pytest.mark.parametrize(
    ("persona", "path"),
    [
        ("Advertisers", "Programs/3629/ClickExport"),
        ("Mediapartners", "ClickExport"),
    ],
)
async def test_click_export_ticket(client: Client, persona: str, path: str) -> None:
    answer = await client.call(f"{client.root(persona)}/{path}", {"Date": "2026-06-10"})
    assert answer.status == 200
    assert answer.body["Status"] == "QUEUED"
    assert "ReplayUri" in answer.body  # both ClickExport specs return one (docs/api-facts.md §3)
    assert_valid(persona, answer)


def listed(persona: str, answer: Answer) -> list[dict[str, Any]]:
    # Brand and partner wrap the list, the agency answers a top-level array (docs/api-facts.md §2).
    assert answer.status == 200, answer.body
    return list(answer.body if persona == "Agencies" else answer.body["Jobs"])


@persona_param
async def test_jobs_list(client: Client, persona: str) -> None:
    await client.job_path(persona)
    await client.job_path(persona, ResultFormat="JSON")
    if client.dialect == "strict":
        # No Jobs document pages: the strict dialect answers every job, without `@`-keys.
        answer = await client.call(f"{client.root(persona)}/Jobs")
        assert len(listed(persona, answer)) == 2
        assert persona == "Agencies" or set(answer.body) == {"Jobs"}
    else:
        answer = await client.call(f"{client.root(persona)}/Jobs", {"PageSize": "1"})
        assert len(listed(persona, answer)) == 1
        if persona != "Agencies":
            # Spec vs guide: no Jobs document lists Page/PageSize or the `@`-keys; the examples
            # dialect follows the pagination convention of the docs (docs/api-facts.md §2,
            # Pagination),
            # and the closed-object check admits those keys as strings only.
            assert answer.body["@nextpageuri"]
    assert_valid(persona, answer)


ALL_STATUSES = {"QUEUED", "RUNNING", "COMPLETED", "ERROR", "FAILED", "CANCELLED"}


@persona_param
async def test_listing_holds_every_status(
    client: Client, sandbox: SandboxThread, persona: str
) -> None:
    """One listing with a job in each of the six states, each valid in it and on its own."""
    completed = await client.job_path(persona, 0)
    cancelled = await client.job_path(persona, 1)
    sandbox.configure(faults={"job_fail": 1.0})
    await client.job_path(persona, 2)
    sandbox.configure(faults={"job_error": 1.0})
    await client.job_path(persona, 3)  # ERROR for 15 minutes after its first try
    sandbox.configure(faults={})
    sandbox.cancel_job(cancelled.rsplit("/", 1)[1])
    sandbox.advance(JOB_SECONDS * 3)
    await client.job_path(persona, 4)
    sandbox.advance(JOB_SECONDS / 2)  # RUNNING
    await client.job_path(persona, 5)  # QUEUED
    await client.job_when(completed, "COMPLETED")
    answer = await client.call(f"{client.root(persona)}/Jobs")
    jobs = listed(persona, answer)
    assert {job["Status"] for job in jobs} == ALL_STATUSES
    assert len(jobs) == 6
    assert_valid(persona, answer)
    for job in jobs:
        alone = await client.job(f"{client.root(persona)}/Jobs/{job['Id']}")
        assert alone.body == job
        assert_valid(persona, alone)


@persona_param
async def test_get_job_queued_running_completed(
    client: Client, sandbox: SandboxThread, persona: str
) -> None:
    path = await client.job_path(persona)
    queued = await client.job(path)
    assert queued.body["Status"] == "QUEUED"
    assert_valid(persona, queued)

    sandbox.advance(JOB_SECONDS / 2)
    running = await client.job(path)
    assert running.body["Status"] == "RUNNING"
    assert_valid(persona, running)

    sandbox.advance(JOB_SECONDS)
    completed = await client.job_when(path, "COMPLETED")
    assert completed.body["PercentageComplete"] == 100
    assert_valid(persona, completed)


@persona_param
async def test_get_job_error_then_failed(
    client: Client, sandbox: SandboxThread, persona: str
) -> None:
    sandbox.configure(faults={"job_error": 1.0})
    path = await client.job_path(persona)
    sandbox.advance(JOB_SECONDS + 1)
    error = await client.job(path)
    # Spec vs guide: the agency document calls ERROR terminal; the docs (docs/api-facts.md §2, Job
    # statuses) say it re-runs every 15 minutes, at most 5 tries, then FAILED. The sandbox follows
    # the docs; the schema accepts both states.
    assert error.body["Status"] == "ERROR"
    assert_valid(persona, error)
    sandbox.advance(24 * 3600)  # five tries, 15 minutes apart, are long over
    failed = await client.job(path)
    assert failed.body["Status"] == "FAILED"
    assert_valid(persona, failed)


@persona_param
async def test_get_job_failed_and_cancelled(
    client: Client, sandbox: SandboxThread, persona: str
) -> None:
    sandbox.configure(faults={"job_fail": 1.0})
    path = await client.job_path(persona)
    sandbox.advance(JOB_SECONDS + 1)
    failed = await client.job(path)
    assert failed.body["Status"] == "FAILED"
    assert_valid(persona, failed)

    sandbox.configure(faults={})
    other = await client.job_path(persona, ResultFormat="XML")
    sandbox.cancel_job(other.rsplit("/", 1)[1])
    cancelled = await client.job(other)
    assert cancelled.body["Status"] == "CANCELLED"
    assert_valid(persona, cancelled)


@persona_param
async def test_download_202_is_the_job(client: Client, persona: str) -> None:
    path = await client.job_path(persona)
    answer = await client.call(f"{path}/Download")
    assert answer.status == 202
    assert answer.body["Status"] == "QUEUED"
    assert_valid(persona, answer)


@persona_param
async def test_replay_200_is_the_job(client: Client, sandbox: SandboxThread, persona: str) -> None:
    path = await client.job_path(persona)
    sandbox.advance(JOB_SECONDS + 1)
    await client.job_when(path, "COMPLETED")
    answer = await client.call(f"{path}/Replay", method="PUT")
    assert answer.status == 200
    # The specs disagree: brand/partner re-queue the job, the agency makes a new one
    # (docs/api-facts.md §2, Replay); the sandbox follows each persona's document.
    assert answer.body["Status"] == "QUEUED"
    assert (answer.body["Id"] == path.rsplit("/", 1)[1]) == (persona != "Agencies")
    assert_valid(persona, answer)


# -- the validation is not vacuous -------------------------------------------------------------

BROKEN_JOBS: list[tuple[str, Any]] = [
    ("Status", "DONE"),  # not in the enum
    ("PercentageComplete", "100"),  # a string, as the doc examples show; the spec says integer
    ("Replayable", "true"),
    ("RecordsProcessed", 2.5),
    ("CreatedDate", "15/06/2026 12:00"),  # not RFC 3339
    ("Type", "Export"),
    ("Surprise", 1),  # an undocumented key
]


@pytest.mark.parametrize(("field", "value"), BROKEN_JOBS)
@persona_param
async def test_broken_job_is_rejected(client: Client, persona: str, field: str, value: Any) -> None:
    answer = await client.job(await client.job_path(persona))
    schema = response_schema(persona, answer.path, "GET", 200)
    strict = answer.strict
    assert unexpected_errors(persona, schema, answer.body, strict=strict) == []
    broken = copy.deepcopy(answer.body)
    broken[field] = value
    assert unexpected_errors(persona, schema, broken, strict=strict), (
        f"{persona}: {field}={value!r} accepted"
    )


@strict_only
@pytest.mark.parametrize("unset", ["", None])
@persona_param
async def test_strict_checks_refuse_what_the_examples_send_for_unset_dates(
    client: Client, persona: str, unset: str | None
) -> None:
    """A QUEUED job in the strict dialect leaves its unset dates out; `""` (the examples'
    partner and agency) or `null` (the brand's, valid only under OpenAPI 3.0's `nullable`) in
    their place fail the document read as OpenAPI 3.1."""
    answer = await client.job(await client.job_path(persona))
    assert "StartedDate" not in answer.body
    assert_valid(persona, answer)
    schema = response_schema(persona, answer.path, "GET", 200)
    assert errors_of(schema, {**answer.body, "StartedDate": unset}, strict=True)


@persona_param
async def test_broken_bodies_are_rejected(client: Client, persona: str) -> None:
    ticket = await client.export(persona)
    schema = response_schema(persona, ticket.path, "GET", 200)
    assert errors_of(schema, {**ticket.body, "QueuedUri": 17})
    assert errors_of(schema, "QUEUED")
    listing = await client.call(f"{client.root(persona)}/Jobs")
    schema = response_schema(persona, listing.path, "GET", 200)
    assert errors_of(schema, {"Jobs": "none"} if persona != "Agencies" else {"Jobs": []})
    if persona != "Agencies":
        assert errors_of(schema, {**listing.body, "@page": 1})  # meta keys are strings


@examples_only
async def test_brand_null_dates_need_the_nullable_conversion(client: Client) -> None:
    """The brand QUEUED job has null dates: valid only because `nullable: true` became
    `type: [string, "null"]`; the raw document (3.0 keyword under 3.1) would reject it."""
    answer = await client.job(await client.job_path("Advertisers"))
    assert answer.body["StartedDate"] is None
    schema = response_schema("Advertisers", answer.path, "GET", 200)
    raw = yaml.safe_load((spec_dir() / schema.document).read_text(encoding="utf-8"))
    job_schema = raw["components"]["schemas"]["Job"]
    assert job_schema["properties"]["StartedDate"].get("nullable") is True
    assert list(Draft202012Validator(job_schema).iter_errors(answer.body))
    assert errors_of(schema, answer.body) == []


@examples_only
async def test_string_values_dialect_is_the_docs_not_the_spec(client: Client) -> None:
    """`string_values=True` sends numbers and booleans as strings, as the doc examples do
    (docs/api-facts.md §2 Job schema); the specs type them, so this dialect is deliberately
    off-spec."""
    client.sandbox.configure(string_values=True)
    answer = await client.job(await client.job_path("Mediapartners"))
    assert answer.body["Replayable"] in ("true", "false")
    schema = response_schema("Mediapartners", answer.path, "GET", 200)
    assert errors_of(schema, answer.body)


# -- the strict dialect's request contract is the documents' ----------------------------------

# A concrete path and the method of each endpoint the sandbox routes, to find its operation.
ENDPOINT_PATHS: dict[str, tuple[str, str]] = {
    "ReportExport": ("GET", "ReportExport/some_report"),
    "Reports": ("GET", "Reports"),
    "MetaData": ("GET", "Reports/some_report/MetaData"),
    "ListJobs": ("GET", "Jobs"),
    "GetJob": ("GET", "Jobs/81258bc5-54cf-4a09-9fbc-eb837637d02f"),
    "Download": ("GET", "Jobs/81258bc5-54cf-4a09-9fbc-eb837637d02f/Download"),
    "Replay": ("PUT", "Jobs/81258bc5-54cf-4a09-9fbc-eb837637d02f/Replay"),
}
CLICK_EXPORT_PATHS = {"Advertisers": "Programs/3629/ClickExport", "Mediapartners": "ClickExport"}


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "string")
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return str(schema["format"])
    return str(kind)


def documented_operation(document: str, template: str, operation: dict[str, Any]) -> Operation:
    """An `Operation` of the strict dialect, read from the document (report filters aside)."""
    components = raw_document(document).get("components", {}).get("parameters", {})
    query: list[Param] = []
    integers: list[tuple[str, str]] = []
    for item in operation.get("parameters", []):
        if "$ref" in item:
            item = components[item["$ref"].rsplit("/", 1)[1]]
        schema = item.get("schema", {})
        if item["in"] == "path":
            if schema.get("type") == "integer":
                integers.append(("program_id", item["name"]))
            continue
        array = schema.get("type") == "array"
        kind = _kind(schema["items"] if array else schema)
        query.append(
            Param(
                item["name"],
                kind,  # type: ignore[arg-type]
                required=bool(item.get("required", False)),
                enum=tuple(schema.get("enum", ())),
                array=array,
            )
        )
    media = {
        media_type
        for answer in operation.get("responses", {}).values()
        for media_type in (answer.get("content") or {})
    }
    return Operation(
        tuple(query),
        media_types=tuple(sorted(media)),
        # The documents send the reader to a report's MetaData for the filters it accepts.
        report_filters="/ReportExport/" in template,
        integer_path=tuple(integers),
    )


@persona_param
def test_strict_contract_is_the_documents(persona: str) -> None:
    """Every parameter (name, type or format, required, enum, array), path integer and media
    type the strict dialect enforces is the persona's documents', and no more."""
    paths = dict(ENDPOINT_PATHS)
    if persona in CLICK_EXPORT_PATHS:
        paths["ClickExport"] = ("GET", CLICK_EXPORT_PATHS[persona])
    assert set(OPERATIONS[persona]) == set(paths)
    for endpoint, (method, path) in paths.items():
        document, template, operation = find_operation(persona, f"/{persona}/IRsid/{path}", method)
        ours = OPERATIONS[persona][endpoint]
        theirs = documented_operation(document, template, operation)
        where = f"{persona} {endpoint} ({document} {method} {template})"
        assert set(ours.query) == set(theirs.query), where
        assert sorted(ours.media_types) == sorted(theirs.media_types), where
        assert ours.integer_path == theirs.integer_path, where
        assert ours.report_filters == theirs.report_filters, where
