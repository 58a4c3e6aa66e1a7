"""The management API's answer when the database cannot be reached: a JSON 503, not a 500 page.

A refused or dropped connection, or a connection pool that stayed empty for
PORTICO_DB_POOL_TIMEOUT seconds, says nothing about the request: the client
may try again shortly. Other database errors (an integrity error, a bad query)
are bugs and stay 500s. Everything else goes to DRF's own handler.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponseBase
from rest_framework.views import exception_handler as drf_exception_handler

from gateway.errors import PorticoError, error_response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


def database_unavailable() -> PorticoError:
    return PorticoError(
        "The database is unavailable right now; try again shortly.",
        status=503,
        type="api_error",
        code="database_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("management API request refused, the database is unavailable: %s", exc)
        return error_response(database_unavailable())
    return drf_exception_handler(exc, context)
