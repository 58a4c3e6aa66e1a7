"""The management API's pagination: limit and offset, with the page size bounded.

DRF's `LimitOffsetPagination` hands any `limit` the client sends to the database, which fails past
its integer range (a 500 for `?limit=2**63`). A page is capped at `MAX_PAGE_SIZE` rows. An offset
needs no cap: DRF answers an offset past the row count with an empty page, without a query.
"""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_SIZE = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_PAGE_SIZE
