"""Django's own 400, 403, 404 and 500 answers, in the shape each URL space speaks.

/v1 answers as OpenAI does (`gateway.errors`), /api/ as DRF does
(`{"detail": ...}`); only the admin and the rest keep Django's HTML pages.
They are what a client sees of an unknown URL, or of an error that escaped a
view's own handling: the fast path answers /v1/'s unknown URLs itself, alike.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from gateway.errors import InternalError, InvalidRequest, NotFound, PorticoError, error_response

OPENAI_ROOT = "/v1"
MANAGEMENT_ROOT = "/api/"


def _is_openai(path: str) -> bool:
    return path == OPENAI_ROOT or path.startswith(OPENAI_ROOT + "/")


def invalid_url(request: HttpRequest) -> HttpResponse:
    return error_response(NotFound(f"Invalid URL ({request.method} {request.path})"))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_openai(request.path):
        return invalid_url(request)
    if request.path.startswith(MANAGEMENT_ROOT):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A request Django refused before any view (a body it cannot read, a disallowed host)."""
    if _is_openai(request.path):
        return error_response(InvalidRequest("The request could not be read."))
    if request.path.startswith(MANAGEMENT_ROOT):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_openai(request.path):
        return error_response(PorticoError("Forbidden.", status=403, type="invalid_request_error"))
    if request.path.startswith(MANAGEMENT_ROOT):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    # The traceback was logged by Django's request logger; the client learns nothing of it.
    if _is_openai(request.path):
        return error_response(InternalError("The server had an error while processing your request."))
    if request.path.startswith(MANAGEMENT_ROOT):
        return JsonResponse({"detail": "A server error occurred."}, status=500)
    return defaults.server_error(request)
