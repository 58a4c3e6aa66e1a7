"""The management API's answer when the database cannot be reached: a JSON 503, not a 500 page.

A refused or dropped connection, or a connection pool that stayed empty for
PORTICO_DB_POOL_TIMEOUT seconds, says nothing about the request: the client
may try again shortly. Other database errors (an integrity error, a bad query)
are bugs and stay 500s. Everything else goes to DRF's own handler.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpResponseBase
from rest_framework.views import exception_handler as drf_exception_handler

from gateway.errors import UNREACHABLE, DatabaseUnavailable, error_response

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    if isinstance(exc, UNREACHABLE):
        logger.warning("management API request refused, the database is unavailable: %s", exc)
        return error_response(DatabaseUnavailable())
    return drf_exception_handler(exc, context)
