"""The audit log in the admin: a list to read, filter, search and export, and nothing to change."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.export import csv_response
from audit.models import AuditEntry


def _pretty(value: object) -> SafeString | str:
    if value is None:
        return "-"
    return format_html("<pre>{}</pre>", json.dumps(value, cls=DjangoJSONEncoder, indent=2, sort_keys=True))


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: entries are only ever added, by the changes they describe."""

    list_display = ["created_at", "actor", "origin", "source", "action", "model_label", "object_repr"]
    list_filter = ["actor", "model_label", "action", "origin", "created_at"]
    search_fields = ["actor", "object_repr", "object_id", "model_label"]
    search_help_text = "Part of an actor, an object's name or id, or a model label (e.g. providers.provider)."
    date_hierarchy = "created_at"
    list_per_page = 100
    # Counting the whole log on each page view costs more than the number is worth.
    show_full_result_count = False
    actions = ["export_csv"]
    fields = (
        "created_at",
        "actor",
        "actor_kind",
        "actor_user_id",
        "origin",
        "source",
        "action",
        "model_label",
        "object_id",
        "object_repr",
        "before_values",
        "after_values",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="from")
    def source(self, entry: AuditEntry) -> str:
        return entry.source

    @admin.display(description="before")
    def before_values(self, entry: AuditEntry) -> SafeString | str:
        return _pretty(entry.before)

    @admin.display(description="after")
    def after_values(self, entry: AuditEntry) -> SafeString | str:
        return _pretty(entry.after)

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> HttpResponse:
        return csv_response(queryset.order_by("created_at", "id").iterator(chunk_size=2000))

    def get_urls(self) -> list[URLPattern]:
        export = path("export/", self.admin_site.admin_view(self.export_view), name="audit_auditentry_export")
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Every entry the list's current filters and search select, on all pages."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            queryset = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter.")
        return csv_response(queryset.order_by("created_at", "id").iterator(chunk_size=2000))
