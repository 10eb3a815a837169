"""Routing and authentication: the API application, its routes, and the pipeline every API call
goes through (authentication, the strict dialect's contract, faults, the hourly bucket, the
handler, the rate-limit headers).

Also the pieces every room answers with: the API's error envelope (docs/api-facts.md §5:
`Status`, `Message`, optional `Errors`) and `InvalidInput`, which a handler raises for a bad
parameter.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from email.utils import format_datetime
from typing import TYPE_CHECKING, cast

from aiohttp import web

from .catalog import PERSONA_SPECS, PERSONAS, Persona, PersonaSpec
from .dialect import NO_4XX, Refusal, accepts, check_accept, check_query

if TYPE_CHECKING:
    from .faults import Faults
    from .limits import Limits
    from .shared import Shared

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENDPOINTS = (
    "ReportExport",
    "ClickExport",
    "GetJob",
    "ListJobs",
    "Download",
    "SignedDownload",
    "Replay",
    "Reports",
    "MetaData",
)
_PERSONA_PATTERN = "{persona:" + "|".join(PERSONAS) + "}"
ROOT = f"/{_PERSONA_PATTERN}/{{sid}}"


class InvalidInput(Exception):
    """A parameter the API would refuse; `field_name` goes into the envelope's `Errors`."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_name = field_name


def error(
    status: int,
    message: str,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The API's error envelope (§5): Status, Message and optional Errors."""
    body: dict[str, object] = {"Status": "ERROR", "Message": message}
    if errors:
        body["Errors"] = errors
    return web.json_response(body, status=status, headers=headers)


def validation_failed(problem: InvalidInput) -> web.Response:
    """400 `Validation Failed`, naming the field when there is one."""
    if problem.field_name is None:
        return error(400, "Validation Failed")
    return error(
        400, "Validation Failed", [{"Field": problem.field_name, "Message": problem.message}]
    )


def persona_spec(request: web.Request) -> PersonaSpec:
    return PERSONA_SPECS[cast(Persona, request.match_info["persona"])]


class Router:
    """Builds the API application from the rooms' handlers and runs every call's pipeline."""

    def __init__(self, shared: Shared, limits: Limits, faults: Faults) -> None:
        self._shared = shared
        self._limits = limits
        self._faults = faults

    def app(self, routes: list[tuple[str, str, Handler, str]]) -> web.Application:
        """`routes`: (method, path below the server, handler, name). A name starting with
        `_sandbox` is a control endpoint: no authentication, no limits, not counted."""
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        for method, path, handler, name in routes:
            app.router.add_route(method, path, handler, name=name)
        app.on_response_prepare.append(self._date_header)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """`Date` on the sandbox's own clock (RFC 9110 §6.6.1: the origin's clock), also for a
        streamed answer: a sandbox moved a day ahead is a new day for a client that reads it."""
        response.headers["Date"] = format_datetime(
            self._shared.clock.now().astimezone(UTC), usegmt=True
        )

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        sid, _, token = decoded.partition(":")
        # Any account the sandbox serves, each with its own token; the path names the same one.
        account = self._shared.config.account(request.match_info.get("sid", ""))
        if account is None:
            return False
        return hmac.compare_digest(sid.encode(), account.account_sid.encode()) and (
            hmac.compare_digest(token.encode(), account.auth_token.encode())
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        if name is None or name.startswith("_sandbox"):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400 and request.path.lstrip("/").split("/")[0] in PERSONAS:
                    # Inside an account root, unknown paths answer in the API's envelope.
                    return error(exc.status, exc.reason)
                raise
        shared = self._shared
        if shared.failure is not None:
            return error(500, f"sandbox internal failure: {shared.failure!r}")
        endpoint = name.split(":")[0]
        state = shared.state
        state.calls[endpoint] += 1
        state.seen_from(request)
        sid = request.match_info.get("sid", "")
        if shared.config.account(sid) is not None:  # a signed download names no account
            state.of(sid).calls[endpoint] += 1
        response = await self._call(request, handler, endpoint)
        state.status_codes[str(response.status)] += 1
        return response

    async def _call(
        self, request: web.Request, handler: Handler, endpoint: str
    ) -> web.StreamResponse:
        shared = self._shared
        spec = persona_spec(request)
        sid = request.match_info.get("sid", "")
        if not self.authorized(request):
            shared.state.unauthorized += 1
            if shared.config.account(sid) is not None:
                shared.state.of(sid).unauthorized += 1
            return error(
                401,
                "Unauthorized: check the Account SID and Auth Token",
                headers={"WWW-Authenticate": 'Basic realm="impact.com API"'},
            )
        strict = shared.config.dialect == "strict"
        if strict:
            try:
                await self._check_contract(request, spec.root, endpoint)
            except Refusal as refusal:
                return self._refuse(spec.root, endpoint, refusal)
        await self._faults.maybe_slow()
        now = shared.clock.now()
        refused = self._limits.admit(spec, endpoint, now, sid)
        if refused is not None:
            return refused
        rate_headers = self._limits.hourly_headers(spec, now, sid)
        response: web.StreamResponse | None = self._faults.instead_of_answer(endpoint)
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = error(exc.status, exc.reason)
            response = self._faults.spoil(response)
            if strict and response.status < 300 and "Content-Type" in response.headers:
                body_type = response.content_type
                if not accepts(request.headers.get("Accept"), body_type):
                    # Download: a file for a client that accepts only the 202's JSON.
                    late = Refusal(406, f"Not Acceptable: the answer is {body_type}")
                    response = self._refuse(spec.root, endpoint, late)
        for key, value in rate_headers.items():
            response.headers.setdefault(key, value)
        return response

    @staticmethod
    async def _check_contract(request: web.Request, persona: Persona, endpoint: str) -> None:
        """The strict dialect: only what the persona's documents describe (see `dialect`)."""
        check_accept(persona, endpoint, request.headers.get("Accept"))
        check_query(persona, endpoint, request.query, request.match_info)
        if request.can_read_body and await request.read():
            raise Refusal(400, "this operation takes no request body")

    def _refuse(self, persona: Persona, endpoint: str, refusal: Refusal) -> web.Response:
        state = self._shared.state
        state.refused[str(refusal.status)] += 1
        if refusal.status == 406:
            return error(406, refusal.message)
        if endpoint in NO_4XX[persona]:
            # Agency Reports and ReportExport never answer 4xx: HTTP 200, Status ERROR (§1c).
            return error(200, refusal.message)
        return validation_failed(InvalidInput(refusal.message, refusal.field))
