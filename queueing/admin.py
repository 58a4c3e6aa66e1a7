"""Queued jobs in the admin: every job, filtered by status, tenant and model, with a per-tenant summary on top.

Jobs are the tenants' own and change only as they run: the pages are read-only.
The summary counts the jobs waiting and running now, the requests waiting in
line now (in every process: queueing.waiting), and the median wait of the calls
that waited (in line or as jobs) over the last hour, from the usage ledger.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from queueing.models import QueuedJob
from queueing.selectors import queue_summary

SUMMARY_WINDOW = timedelta(hours=1)


@admin.register(QueuedJob)
class QueuedJobAdmin(admin.ModelAdmin):
    list_display = ["id", "tenant", "model", "status", "created_at", "deadline", "attempts", "queue_ms"]
    list_filter = ["status", "tenant", "model", "operation"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "=client_request_id", "model"]
    search_help_text = "An exact job id or x-request-id, or part of a model id."
    show_facets = admin.ShowFacets.ALWAYS  # how many jobs wait, run, failed... next to each filter

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        now = timezone.now()
        context = {
            **(extra_context or {}),
            "queue_summary": queue_summary(since=now - SUMMARY_WINDOW, now=now),
            "queue_window": "hour",
        }
        return super().changelist_view(request, extra_context=context)
