"""Cache policies in the console: one row per scope, edited in place."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from caching.models import CachePolicy
from caching.selectors import cache_policy_list


@admin.register(CachePolicy)
class CachePolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "model", "tenant", "enabled", "ttl_seconds", "charge", "charge_percent", "updated_at"]
    list_filter = ["enabled", "charge"]
    list_editable = ["enabled", "ttl_seconds"]
    list_display_links = ["__str__"]
    autocomplete_fields = ["model", "tenant"]
    search_fields = ["model__public_id", "tenant__slug", "tenant__name"]
    fields = ["model", "tenant", "enabled", "ttl_seconds", "charge", "charge_percent"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CachePolicy]:
        return cache_policy_list()
