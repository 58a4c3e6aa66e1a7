"""Refusing a NUL in the path or the query string of a page (the admin console, the portal, the management API).

Postgres keeps no NUL in any text, so such a value can name no row. Django's admin would still pass it
to a query, in a list filter or an object's id, and answer the database's refusal as a 500. It is
refused here, before any view, as the bad request it is. /v1/ never passes through here: it runs on the
fast path, which looks its ids up with that in mind.
"""

from __future__ import annotations

from django.core.exceptions import BadRequest
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin


class NullCharacterMiddleware(MiddlewareMixin):
    """MiddlewareMixin keeps it usable both ways, so the ASGI handler runs the chain without a thread hop."""

    def process_request(self, request: HttpRequest) -> None:
        if "\x00" in request.path or _in_query(request):
            raise BadRequest("The address holds a NUL character.")


def _in_query(request: HttpRequest) -> bool:
    # The query string has it percent-encoded (%00): its decoded names and values tell.
    return any("\x00" in name or any("\x00" in value for value in values) for name, values in request.GET.lists())
