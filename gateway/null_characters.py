"""Refusing a NUL in the path or the query string of a page (the admin console, the portal, the management API).

Postgres keeps no NUL in any text, so such a value can name no row. Django's admin would still pass it
to a query, in a list filter or an object's id, and answer the database's refusal as a 500. It is
refused here, before any view, as the bad request it is. /v1/ is left alone, on Django's handler too
(PORTICO_FAST_PATH=false): its views look their ids up with that in mind, and answer in OpenAI's words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from gateway.error_views import bad_request

OPENAI_ROOT = "/v1/"

Response = HttpResponseBase


class NullCharacterMiddleware:
    """Usable both ways, like Portico's other middleware, so the ASGI handler keeps the chain without a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Response | Awaitable[Response]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Response | Awaitable[Response]:
        if _holds_nul(request):
            # handler400's answer, in each URL space's shape; answered, not raised, since Django logs a raised
            # BadRequest with its traceback, and a client's bad address is no server error.
            refused = bad_request(request)
            return _at_once(refused) if self.is_async else refused
        return self.get_response(request)


async def _at_once(response: Response) -> Response:
    return response


def _holds_nul(request: HttpRequest) -> bool:
    if request.path.startswith(OPENAI_ROOT):
        return False
    # The query string has it percent-encoded (%00): its decoded names and values tell.
    return "\x00" in request.path or any(
        "\x00" in name or any("\x00" in value for value in values) for name, values in request.GET.lists()
    )
