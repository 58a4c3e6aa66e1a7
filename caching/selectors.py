"""Reading cache policies for the console."""

from __future__ import annotations

from django.db.models import QuerySet

from caching.models import CachePolicy


def cache_policy_list() -> QuerySet[CachePolicy]:
    return CachePolicy.objects.select_related("model", "tenant").order_by("tenant__slug", "model__public_id")
