"""Result files and signed URLs: each completed job's result is written once to the storage folder
(in a thread) and served from disk, either directly (`Download?Mode=Stream`) or through a 302 to a
short-lived signed URL on a second listener that plays cloud storage (docs/api-facts.md §2,
Download).

The signed origin checks the signature and the expiry, refuses a request that carries
`Authorization` ("only one auth mechanism allowed") and answers in cloud storage's XML, not the
API's envelope. The faults `drop_connection` and `truncate_body` cut a body short;
`expired_signed_url` hands out a URL that has already expired.
"""

from __future__ import annotations

import hmac
import math
import secrets
from datetime import UTC, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

import anyio
from aiohttp import web

from .data import date_range, rows_for_day, write_result

if TYPE_CHECKING:
    from datetime import date, datetime

    from .faults import Faults
    from .jobs import SandboxJob
    from .postbacks import Postbacks
    from .shared import Shared

CONTENT_TYPES = {"CSV": "text/csv", "JSON": "application/json", "XML": "application/xml"}
_FILE_CHUNK = 256 * 1024
_XML = "application/xml"


def file_name(job: SandboxJob) -> str:
    return f"{job.source}_{job.start:%Y%m%d}_{job.end:%Y%m%d}.{job.result_format.lower()}"


class Files:
    def __init__(self, shared: Shared, faults: Faults, postbacks: Postbacks) -> None:
        self._shared = shared
        self._faults = faults
        self._postbacks = postbacks
        self._signing_key = secrets.token_bytes(32)
        self._writing = 0  # result files being written
        self._written = anyio.Event()
        self.signed_base_url = ""

    # -- writing --------------------------------------------------------------------------------

    def day_counts(self, job: SandboxJob, as_of: datetime) -> list[tuple[date, int]]:
        """Rows per day of the job's range, as the data stands at `as_of`."""
        config = self._shared.config
        return [
            (
                day,
                rows_for_day(
                    day,
                    as_of,
                    rows_per_day=config.rows_per_day,
                    settle_days=config.settle_days,
                    utc_offset=config.utc_offset,
                ),
            )
            for day in date_range(job.start, job.end)
        ]

    def write_later(self, job: SandboxJob, as_of: datetime) -> None:
        """Write the job's result in the background (the job stays RUNNING until it is done)."""
        if not self._shared.running:
            return
        self._writing += 1  # counted now, so wait_idle() sees it before the task starts
        self._shared.spawn(self._materialise(job, job.generation, as_of))

    async def wait_idle(self) -> None:
        while self._writing:
            await self._written.wait()

    async def _materialise(self, job: SandboxJob, generation: int, as_of: datetime) -> None:
        """Write the result once to the storage folder; it is served from disk."""
        shared = self._shared
        assert shared.storage is not None
        extension = job.result_format.lower()
        path = shared.storage / f"{job.id}-{generation}.{extension}"
        try:
            result = await anyio.to_thread.run_sync(
                write_result,
                path,
                job.result_format,
                job.key,
                job.columns,
                self.day_counts(job, as_of),
            )
        except OSError as exc:
            # The sandbox's own disk failed: the job fails, as a real storage failure would, and
            # the server keeps serving.
            path.with_name(path.name + ".part").unlink(missing_ok=True)
            shared.state.faults["storage_error"] += 1
            if job.generation == generation:
                job.storage_error = f"Result could not be stored: {exc.strerror or exc}"
                self._postbacks.unpark(job)
            return
        finally:
            self._writing -= 1
            self._written.set()
            self._written = anyio.Event()
        if shared.state.jobs.get(job.id) is not job or job.generation != generation:
            result.path.unlink(missing_ok=True)  # replayed or reset meanwhile
            return
        job.file = result
        self._postbacks.unpark(job)

    @staticmethod
    def discard(job: SandboxJob) -> None:
        if job.file is not None:
            job.file.path.unlink(missing_ok=True)
            job.file = None

    # -- the Download of a completed job ---------------------------------------------------------

    async def answer_download(self, request: web.Request, job: SandboxJob) -> web.StreamResponse:
        """The bytes (`Mode=Stream`), or a 302 to a signed URL on the storage origin."""
        if request.query.get("Mode") == "Stream":
            return await self.serve_file(request, job, "application/octet-stream")
        now = self._shared.clock.now()
        lifetime = self._shared.config.signed_url_ttl
        if self._faults.draw("expired_signed_url"):
            lifetime = -60.0
        expires = math.floor((now + timedelta(seconds=lifetime)).timestamp())
        path = f"/signed/{job.id}/{job.generation}/{file_name(job)}"
        signature = self._sign(path, expires)
        location = f"{self.signed_base_url}{path}?Expires={expires}&Signature={signature}"
        return web.Response(status=302, headers={"Location": location})

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{path}\n{expires}".encode(), "sha256").hexdigest()

    async def serve_file(
        self, request: web.Request, job: SandboxJob, content_type: str
    ) -> web.StreamResponse:
        result = job.file
        assert result is not None
        headers = {
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{file_name(job)}"',
        }
        drop = self._faults.draw("drop_connection")
        truncate = not drop and self._faults.draw("truncate_body")
        if not (drop or truncate) or result.size == 0:
            return web.FileResponse(result.path, chunk_size=_FILE_CHUNK, headers=headers)
        # Send part of the body under the full Content-Length, then cut the connection: an abort
        # (RST) for a dropped connection, an orderly close for a truncated body.
        response = web.StreamResponse(headers=headers)
        response.content_length = result.size
        await response.prepare(request)
        cut = int(result.size * self._shared.rng.uniform(0.1, 0.9))
        sent = 0
        with open(result.path, "rb") as handle:  # noqa: ASYNC230 - small, bounded reads
            while sent < cut:
                chunk = handle.read(min(_FILE_CHUNK, cut - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
        transport = request.transport
        if transport is not None:
            if drop:
                transport.abort()
            else:
                transport.close()
        return response

    # -- the signed-URL origin -------------------------------------------------------------------

    def signed_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/signed/{job_id}/{generation}/{name}", self._signed_download)
        app.on_response_prepare.append(self._date_header)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """`Date` on the sandbox's own clock, as the API's answers carry it."""
        response.headers["Date"] = format_datetime(
            self._shared.clock.now().astimezone(UTC), usegmt=True
        )

    async def _signed_download(self, request: web.Request) -> web.StreamResponse:
        """Plays cloud storage: checks the signature and expiry, refuses other credentials."""
        state = self._shared.state
        state.calls["SignedDownload"] += 1
        state.seen_from(request)
        await self._faults.maybe_slow()
        if "Authorization" in request.headers:
            # Signed URLs reject a request that carries extra credentials (§2, Download).
            state.signed_with_authorization += 1
            state.status_codes["400"] += 1
            return web.Response(
                status=400,
                content_type=_XML,
                text="<Error><Code>InvalidArgument</Code>"
                "<Message>Only one auth mechanism allowed</Message></Error>",
            )
        expires_text = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        if not expires_text.lstrip("-").isdigit() or not hmac.compare_digest(
            signature, self._sign(request.path, int(expires_text))
        ):
            state.status_codes["403"] += 1
            return web.Response(
                status=403,
                content_type=_XML,
                text="<Error><Code>SignatureDoesNotMatch</Code></Error>",
            )
        if self._shared.clock.now().timestamp() > int(expires_text):
            state.signed_expired += 1
            state.status_codes["403"] += 1
            return web.Response(
                status=403,
                content_type=_XML,
                text="<Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>",
            )
        job = state.jobs.get(request.match_info["job_id"])
        if (
            job is None
            or job.file is None
            or str(job.generation) != request.match_info["generation"]
        ):
            state.status_codes["404"] += 1
            return web.Response(
                status=404, content_type=_XML, text="<Error><Code>NoSuchKey</Code></Error>"
            )
        state.status_codes["200"] += 1
        return await self.serve_file(request, job, CONTENT_TYPES[job.result_format])
