"""Files and batches in the admin: per tenant, filtered by status with the count of each, read-only.

A batch can be cancelled from here (as its tenant would cancel it); files and
batches are otherwise the tenants' own, changed only through the OpenAI API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from batches.models import Batch, File
from batches.services.batches import batch_cancel


class _ReadOnly(admin.ModelAdmin):
    # Counts next to each filter choice: how many batches are running, failed, cancelled...
    show_facets = admin.ShowFacets.ALWAYS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(File)
class FileAdmin(_ReadOnly):
    list_display = ["id", "tenant", "purpose", "filename", "size", "status", "created_at", "expires_at"]
    list_filter = ["purpose", "status", "tenant"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "filename"]
    search_help_text = "An exact file id, or part of a file name."


@admin.register(Batch)
class BatchAdmin(_ReadOnly):
    list_display = ["id", "tenant", "endpoint", "model", "status", "total", "completed", "failed", "created_at"]
    list_filter = ["status", "endpoint", "tenant"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "=input_file__id", "model"]
    search_help_text = "An exact batch or input file id, or part of a model id."
    actions = ["cancel"]
    readonly_fields = ["runner", "runner_until", "not_before"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The cancel action needs it; every field stays read-only (get_readonly_fields).
        return super(_ReadOnly, self).has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Batch._meta.fields]

    @admin.action(description="Cancel selected batches")
    def cancel(self, request: HttpRequest, batches: QuerySet[Batch]) -> None:
        cancelled = 0
        for batch in batches:
            before = batch.status
            cancelled += batch_cancel(batch=batch).status != before
        self.message_user(request, f"{cancelled} batch(es) cancelling.", messages.SUCCESS)
