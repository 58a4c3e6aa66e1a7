"""Running a batch's lines through the same pipeline as live requests, at most once each.

A line becomes a request as the fast path would build it (gateway.intake's
`json_call`: validation, the model and what it must do, the extensions), with
the key that created the batch, and is served by gateway.routing's `serve`:
the tenant's limits and budget apply, and the call is one usage ledger row
whose request id is the line's own and which names the batch.

A chunk (one Celery task, gateway.tasks) holds the batch's lease and runs
pending lines, PORTICO_BATCH_CONCURRENCY at a time, for PORTICO_BATCH_CHUNK_SECONDS:

    claim (committed: the line is running) -> serve -> record (answer, done/failed, count: one transaction)

A line fills at most PORTICO_BATCH_LIMIT_SHARE of each of its key's and
tenant's rate limits (billing.metering), which leaves the tenant's interactive
requests the rest. A line the tenant's limits refuse (that share of them
included), or that finds every deployment of its model at its caps, is released
(pending again; nothing was sent and no ledger row written) and the batch
waits: the Retry-After it was given, doubled while refusals go on, up to
PORTICO_BATCH_RETRY_MAX_SECONDS. Batch lines never wait in a model's line as
interactive calls do: a slot that frees goes to those first, which is what
keeps a batch below live traffic.

Exactly once, and where it stops. A line is sent only after its claim is
committed, and a claimed line is never sent again. A runner that dies (SIGKILL,
a lost machine) leaves its lines in flight `running`; the next runner (once the
lease has run out) settles them before anything else:

    the dead runner's answer reached ...        the line
    nothing (died before or during the call)    failed, batch_line_interrupted; a ledger row is written for it
                                                with the line's request id (status 500, no tokens)
    the ledger spool, not the line's record     failed, batch_line_interrupted (the answer is lost; the ledger
    (died in the milliseconds between them)     row the dead runner spooled stands, with its usage)

So no line is sent upstream twice, and every line that reached the pipeline is
exactly one ledger row. Before looking, the runner drains the ledger spool
directory, which holds the dead runner's rows when it shared the directory (one
host, or a shared volume); a dead runner's rows that only reach the database
later are dropped by the ledger's unique request id, and the line keeps the
row without tokens. An answer lost that way was paid for upstream; Portico
reports it as failed rather than risk running the request twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connections

from batches.facade import Answer, BatchRun, LineWork, Wait
from batches.selectors import batch_lines_in_flight, batch_lines_pending, batch_run_get, usage_recorded
from batches.services.finalize import FINAL, batch_finalize
from batches.services.runs import (
    batch_lease_acquire,
    batch_lease_release,
    batch_lease_renew,
    batch_line_claim,
    batch_line_record,
    batch_line_release,
    batch_lines_expire,
    batch_lines_interrupt,
    new_token,
)
from batches.services.validation import batch_validate
from batches.threads import in_thread
from billing.metering import MeterAsk, MeterResult
from gateway import invalidation, refresh
from gateway.accounting import BATCH_WAITS, accounts
from gateway.breakers import breakers_for_settings
from gateway.errors import AuthenticationFailed, InternalError, InvalidRequest, PorticoError, UpstreamTimeout
from gateway.intake import json_call
from gateway.routing import serve
from gateway.snapshot import Snapshot, store
from gateway.validation import (
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
    validate_moderation_request,
)
from providers.adapters.base import Operation
from tenants.facade import KeyGrant

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The endpoints a batch may name: the operation each line is served as, and how its body is checked.
ENDPOINTS: dict[str, tuple[Operation, Callable[[dict[str, Any]], None]]] = {
    "/v1/chat/completions": ("chat", validate_chat_request),
    "/v1/completions": ("completions", validate_completion_request),
    "/v1/embeddings": ("embeddings", validate_embedding_request),
    "/v1/moderations": ("moderations", validate_moderation_request),
}
_PAGE = 100  # pending lines read at a time
_INTERRUPTED = "batch_line_interrupted"


# --- one line -----------------------------------------------------------------------------------------------


def _request(batch: BatchRun, grant: KeyGrant, line: LineWork) -> ASGIRequest:
    """The line as the fast path would hand it to a view (gateway.fastpath._request)."""
    scope = {"type": "http", "method": "POST", "path": batch.endpoint, "query_string": b"", "headers": []}
    request = ASGIRequest(scope, io.BytesIO(line.body))
    request.META["CONTENT_TYPE"] = "application/json"
    request.auth = grant  # type: ignore[attr-defined]
    request.portico_request_id = line.request_id  # type: ignore[attr-defined]
    request.client_request_id = line.custom_id[:200]  # type: ignore[attr-defined]
    return request


def _grant(snapshot: Snapshot, batch: BatchRun) -> KeyGrant | None:
    """The key that created the batch, if it may still call: not revoked, not expired, its tenant active."""
    grant = snapshot.keys.get(batch.key_prefix)
    if grant is None or grant.key_id != batch.api_key_id:
        return None
    if grant.expires_at is not None and grant.expires_at <= time.time():
        return None
    return grant


def _error(error: PorticoError) -> Answer:
    return Answer(error.status, error.to_json())


async def answer_line(batch: BatchRun, grant: KeyGrant | None, line: LineWork) -> Answer | Wait:
    """Serve one line as a live request is served: its whole answer, or a wait if its limits or its model's
    deployments had no room for it."""
    if grant is None:
        return _error(AuthenticationFailed("The API key that created this batch is no longer valid."))
    operation, validate = ENDPOINTS[batch.endpoint]
    try:
        call, snapshot, ext = await json_call(_request(batch, grant, line), operation, validate)
        if call.streamed:
            raise InvalidRequest("Streaming is not supported in a batch request.", param="stream")
        call.batch_id = batch.id
        async with asyncio.timeout(settings.PORTICO_BATCH_LINE_TIMEOUT):
            response = await serve(call, snapshot, ext)
    except BATCH_WAITS as refused:
        return Wait(float(refused.headers.get("retry-after", 1)))
    except PorticoError as exc:
        return _error(exc)
    except TimeoutError:
        limit = settings.PORTICO_BATCH_LINE_TIMEOUT
        return _error(UpstreamTimeout(f"The request did not finish within the {limit:g} s a batch line may take."))
    except Exception:  # noqa: BLE001 - as gateway.api's last resort: logged with its traceback, the line told nothing
        logger.exception("batch %s line %d failed unexpectedly", batch.id, line.number)
        return _error(InternalError("The server had an error while processing your request."))
    return Answer(response.status_code, response.content)


# --- lines found in flight after their runner died -------------------------------------------------------------


def _drain_ledger() -> None:
    """Insert what the ledger spool directory holds, a dead runner's rows included (its files are unlocked)."""
    writer = accounts.writer
    try:
        if writer is not None:
            writer.flush()
    finally:
        connections.close_all()


def _interrupted_row(batch: BatchRun, line: LineWork, snapshot: Snapshot) -> None:
    """The ledger row of a line whose call never finished: the line's request id, status 500, no tokens."""
    if batch.api_key_id is None:
        return  # the key is gone with its ledger identity; nothing to bill it to
    try:
        model = str(orjson.loads(line.body).get("model") or "")
    except orjson.JSONDecodeError:
        model = ""
    ask = MeterAsk(
        request_id=line.request_id,
        client_request_id=line.custom_id[:200],
        tenant_id=batch.tenant_id,
        key_id=batch.api_key_id,
        key_prefix=batch.key_prefix,
        model=model,
        upstream_model="",
        provider="",
        operation=ENDPOINTS[batch.endpoint][0],
        body={},
        streamed=False,
        started_at=line.claimed_at or time.time(),
        batch_id=batch.id,
    )
    accounts.finish(MeterResult(ask=ask, admission=None, status=500, error_type=_INTERRUPTED), snapshot.billing)


async def settle_in_flight(batch: BatchRun, token: str) -> int:
    """Fail the lines a dead runner left running (never sending them again); how many there were."""
    lines = await in_thread(batch_lines_in_flight, batch_id=batch.id, except_claim=token)
    if not lines:
        return 0
    await asyncio.to_thread(_drain_ledger)
    recorded = await in_thread(usage_recorded, request_ids=[line.request_id for line in lines])
    snapshot = await store.get()
    for line in lines:
        if line.request_id not in recorded:
            _interrupted_row(batch, line, snapshot)
    served = [line.id for line in lines if line.request_id in recorded]
    unsent = [line.id for line in lines if line.request_id not in recorded]
    for ids, message in (
        (served, "The request was served, but its runner stopped before storing the answer; it was not sent again."),
        (unsent, "The request's runner stopped while it was in flight; it was not sent again, to run at most once."),
    ):
        if ids:
            answer = Answer(None, error_code=_INTERRUPTED, error_message=message)
            await in_thread(batch_lines_interrupt, batch_id=batch.id, line_ids=ids, answer=answer)
    logger.warning("batch %s: %d line(s) found in flight after their runner stopped, failed", batch.id, len(lines))
    return len(lines)


# --- a chunk: lines run under the batch's lease ----------------------------------------------------------------


class _Chunk:
    """Pending lines, run by PORTICO_BATCH_CONCURRENCY workers until the time is up, the lease lost or a wait."""

    def __init__(self, batch: BatchRun, token: str, grant: KeyGrant | None, lost: asyncio.Event) -> None:
        self.batch, self.token, self.grant, self.lost = batch, token, grant, lost
        self.deadline = time.monotonic() + settings.PORTICO_BATCH_CHUNK_SECONDS
        self.page: collections.deque[LineWork] = collections.deque()
        self.page_lock = asyncio.Lock()
        self.exhausted = False
        self.refusals = 0
        self.resume_at = 0.0  # epoch seconds before which no line is claimed (a wait)

    async def run(self) -> float | None:
        """Run lines; when the batch must wait (epoch seconds), or None. A worker that fails stops the others."""
        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(settings.PORTICO_BATCH_CONCURRENCY):
                    workers.create_task(self._work())
        except ExceptionGroup as failed:
            # The database, most likely: the task's retry policy knows the plain exception, not the group.
            raise failed.exceptions[0] from failed
        return self.resume_at if self.resume_at > time.time() else None

    def _stopping(self) -> bool:
        return (
            self.lost.is_set()
            or time.monotonic() >= self.deadline
            or time.time() >= self.batch.expires_at
            or self.resume_at - time.time() > self.deadline - time.monotonic()
        )

    async def _next(self) -> LineWork | None:
        async with self.page_lock:
            if (pause := self.resume_at - time.time()) > 0 and not self._stopping():
                await asyncio.sleep(pause)  # the whole chunk waits out the limits, while the lease is kept
            if self._stopping():
                return None
            if not self.page and not self.exhausted:
                self.page.extend(await in_thread(batch_lines_pending, batch_id=self.batch.id, limit=_PAGE))
                self.exhausted = not self.page
            return self.page.popleft() if self.page else None

    def _wait(self, seconds: float) -> None:
        if self.resume_at > time.time():
            return  # already waiting: concurrent refusals are one
        self.refusals += 1
        most = settings.PORTICO_BATCH_RETRY_MAX_SECONDS
        self.resume_at = time.time() + min(most, max(seconds, 2.0 ** (self.refusals - 1)))

    async def _work(self) -> None:
        batch, token = self.batch, self.token
        while (line := await self._next()) is not None:
            if not await in_thread(batch_line_claim, line_id=line.id, token=token):
                continue  # no longer pending (cancelled, or already taken from an earlier page)
            outcome = await answer_line(batch, self.grant, line)
            if isinstance(outcome, Wait):
                await in_thread(batch_line_release, line_id=line.id, token=token)
                self.page.appendleft(line)
                self._wait(outcome.seconds)
                continue
            self.refusals = 0
            if not await in_thread(batch_line_record, batch_id=batch.id, line_id=line.id, token=token, answer=outcome):
                logger.warning("batch %s: the lease was lost; line %d's answer was dropped", batch.id, line.number)
                self.lost.set()


async def _keep_lease(batch_id: str, token: str, lost: asyncio.Event) -> None:
    seconds = settings.PORTICO_BATCH_LEASE_SECONDS
    while True:
        await asyncio.sleep(seconds / 3)
        if not await in_thread(batch_lease_renew, batch_id=batch_id, token=token, seconds=seconds):
            lost.set()
            return


async def run_chunk(batch_id: str) -> float | None:
    """Advance the batch for one chunk; seconds until the next chunk is due, or None if none is needed.

    None also when another runner holds the batch: that runner hands over itself.
    """
    token, lost = new_token(), asyncio.Event()
    if not await in_thread(
        batch_lease_acquire, batch_id=batch_id, token=token, seconds=settings.PORTICO_BATCH_LEASE_SECONDS
    ):
        return None
    keeper = asyncio.create_task(_keep_lease(batch_id, token, lost))
    resume_at: float | None = None
    try:
        batch = await in_thread(batch_run_get, batch_id=batch_id)
        if batch is not None and batch.status == "validating":
            await in_thread(batch_validate, batch_id=batch_id)
            batch = await in_thread(batch_run_get, batch_id=batch_id)
        if batch is None or batch.status in FINAL:
            return None
        await settle_in_flight(batch, token)
        if time.time() >= batch.expires_at:
            await in_thread(batch_lines_expire, batch_id=batch_id)
        elif batch.status == "in_progress":
            # A key or model made just before the batch must be known here, in a worker as in a server.
            snapshot = await store.reload()
            resume_at = await _Chunk(batch, token, _grant(snapshot, batch), lost).run()
        if lost.is_set():
            return None
        finished = await in_thread(batch_finalize, batch_id=batch_id)
        if finished.status in FINAL:
            return None
        return max(0.0, resume_at - time.time()) if resume_at is not None else 0.0
    finally:
        keeper.cancel()
        not_before = datetime.fromtimestamp(resume_at, UTC) if resume_at is not None else None
        await in_thread(batch_lease_release, batch_id=batch_id, token=token, not_before=not_before)


# --- where the coroutines run ----------------------------------------------------------------------------------


class Runtime:
    """The event loop batch lines run on: the server's, in a server process (the embedded default runs jobs
    on its threads), else one of this process's own (a worker), started once with what serving needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        served = invalidation.serving_loop()
        if served is not None:
            return served
        with self._lock:
            if self._loop is None:
                self._loop = self._start()
        return self._loop

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="portico-batches", daemon=True).start()
        asyncio.run_coroutine_threadsafe(_serving(), loop).result(timeout=60)
        return loop

    def run(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run `work()` on the loop and wait for it; if the wait ends early (a time limit), it is cancelled.

        Only from a thread other than the loop's (a job's): waiting on the loop from its own thread never ends.
        """
        loop = self.loop()
        with contextlib.suppress(RuntimeError):  # raised where no loop runs: the usual case
            if asyncio.get_running_loop() is loop:
                raise ValueError("batch lines cannot be run from the event loop's own thread")
        future = asyncio.run_coroutine_threadsafe(work(), loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise


_background: list[asyncio.Task[None]] = []


async def _serving() -> None:
    """What a server's lifespan starts (gateway.asgi), for a worker: snapshot refresh, limiter, ledger, breakers."""
    _background.extend(refresh.start(store))
    accounts.start()
    await breakers_for_settings().start()
    await store.reload()


runtime = Runtime()


def chunk_seconds() -> float:
    """The most one chunk may take: its own time, the lines still in flight at its end, and some margin."""
    return settings.PORTICO_BATCH_CHUNK_SECONDS + settings.PORTICO_BATCH_LINE_TIMEOUT + 15


def run(batch_id: str) -> float | None:
    """Advance the batch for one chunk, from a task's thread; see `run_chunk`."""
    return runtime.run(lambda: run_chunk(batch_id), timeout=chunk_seconds())
