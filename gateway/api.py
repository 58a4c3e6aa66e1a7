"""The OpenAI-compatible surface: a Ninja API mounted at /v1/, every view async and ORM-free."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from gateway.auth import api_key_auth
from gateway.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    InternalError,
    InvalidRequest,
    PorticoError,
    error_response,
)
from gateway.queueing.deferral import Deferred
from gateway.routers.audio import router as audio_router
from gateway.routers.batches import router as batches_router
from gateway.routers.embeddings import router as embeddings_router
from gateway.routers.files import router as files_router
from gateway.routers.generation import router as generation_router
from gateway.routers.messages import router as messages_router
from gateway.routers.models import router as models_router
from gateway.routers.queue import router as queue_router
from gateway.routers.removed import router as removed_router
from gateway.routers.responses import router as responses_router

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def _docs_access(view: View) -> View:
    """/v1/docs and /v1/openapi.json describe only what OpenAI documents publicly, so anyone may read them;
    PORTICO_PUBLIC_OPENAI_DOCS=false keeps them to staff signed in to the admin. Read per request."""
    for_staff: View = staff_member_required(view)

    @functools.wraps(view)
    def docs(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.PORTICO_PUBLIC_OPENAI_DOCS:
            return view(request, *args, **kwargs)
        return for_staff(request, *args, **kwargs)

    return docs


api = NinjaAPI(
    title="Portico OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    auth=api_key_auth,
    docs_url="/docs",
    docs_decorator=_docs_access,
)


@api.exception_handler(PorticoError)
def _portico_error(request: HttpRequest, exc: PorticoError) -> HttpResponse:
    return error_response(exc)


@api.exception_handler(Deferred)
def _deferred(request: HttpRequest, exc: Deferred) -> HttpResponse:
    return exc.response()  # not an error: 202 Accepted, the request kept as a job (gateway.queueing.deferral)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(PorticoError(str(exc), status=exc.status_code, type="invalid_request_error"))


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return error_response(InvalidRequest(str(first.get("msg", "Invalid request.")), param=param))


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(AuthenticationFailed("Authentication failed."))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # Only reachable through Django's own handler (PORTICO_FAST_PATH=false); the fast path answers 413 itself.
    return error_response(BodyTooLarge.over(settings.PORTICO_MAX_BODY_BYTES))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The last resort: whatever escaped is logged with its traceback, and the client gets no detail.
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(InternalError("The server had an error while processing your request."))


api.add_router("", models_router)
api.add_router("", generation_router)
api.add_router("", messages_router)
api.add_router("", responses_router)
api.add_router("", embeddings_router)
api.add_router("", audio_router)
api.add_router("", files_router)
api.add_router("", batches_router)
api.add_router("", queue_router)
api.add_router("", removed_router)
