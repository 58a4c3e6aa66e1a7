"""The console's model-list sources: their settings (the credential write-only), their refreshes, "Refresh now"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from providers.admin.providers import listed_ids
from providers.model_lists.services import REREAD_FIELDS, model_list_source_refresh, model_list_source_set_credential
from providers.models import ModelListRefresh, ModelListSource

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

DIFF_LABELS = {"added": "added", "changed": "changed", "disabled": "disabled", "reenabled": "re-enabled"}


class ModelListSourceForm(forms.ModelForm):
    # Declared to choose the scheme a bare host gets (Django 6 makes https the default; say so now).
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text=ModelListSource._meta.get_field("url").help_text
    )
    base_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=ModelListSource._meta.get_field("base_url").help_text,
    )
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent to the list and to every provider the source makes. Leave blank to keep the current "
        "credential. Stored encrypted.",
    )
    clear_credential = forms.BooleanField(required=False, help_text="Remove the stored credential.")

    class Meta:
        model = ModelListSource
        fields = ["name", "url", "base_url", "refresh_interval", "enabled", "handle_kinds"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("credential") and cleaned.get("clear_credential"):
            raise forms.ValidationError("Enter a new credential or clear the current one, not both.")
        return cleaned


def refresh_summary(refresh: ModelListRefresh) -> str:
    """A refresh in one line: the changes by kind, the error or how many entries were not applied."""
    if refresh.error:
        return f"failed: {refresh.error}"
    diff = refresh.diff
    parts = [f"{label} {listed_ids(diff[key])}" for key, label in DIFF_LABELS.items() if diff.get(key)]
    if refresh.entry_errors:
        parts.append(f"{len(refresh.entry_errors)} entries not applied")
    return "; ".join(parts) or "no change"


class ModelListRefreshInline(admin.TabularInline):
    model = ModelListRefresh
    fields = ["started_at", "finished_at", "status", "changes", "problems"]
    readonly_fields = fields
    ordering = ["-started_at", "-id"]
    extra = 0
    can_delete = False
    verbose_name_plural = "refreshes (newest first)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes")
    def changes(self, refresh: ModelListRefresh) -> SafeString:
        if refresh.error:
            return format_html("{}", "none: the list could not be read")
        rows = [(label, ", ".join(refresh.diff.get(key, [])) or "—") for key, label in DIFF_LABELS.items()]
        return format_html_join(mark_safe("<br>"), "<strong>{}</strong>: {}", rows)  # noqa: S308 - a constant

    @admin.display(description="errors")
    def problems(self, refresh: ModelListRefresh) -> SafeString:
        if refresh.error:
            return format_html("{}", refresh.error)
        rows = [(error.get("entry"), error.get("model") or "?", error.get("error")) for error in refresh.entry_errors]
        return format_html_join(mark_safe("<br>"), "#{} {}: {}", rows) or format_html("{}", "—")  # noqa: S308


@admin.register(ModelListSource)
class ModelListSourceAdmin(admin.ModelAdmin):
    form = ModelListSourceForm
    inlines = [ModelListRefreshInline]
    list_display = ["name", "url", "enabled", "last_status", "last_refreshed_at", "model_count", "has_credential"]
    list_filter = ["enabled", "last_status"]
    search_fields = ["name", "url", "base_url"]
    readonly_fields = ["last_refreshed_at", "last_status", "last_error", "created_at", "updated_at"]
    actions = ["refresh_now"]

    def get_fieldsets(self, request: HttpRequest, obj: ModelListSource | None = None) -> _FieldsetSpec:
        credential = ["credential", "clear_credential"] if obj is not None and obj.has_credential else ["credential"]
        return (
            (None, {"fields": ["name", "url", "base_url", *credential, "refresh_interval", "enabled"]}),
            ("Handles", {"fields": ["handle_kinds"]}),
            ("Last refresh", {"fields": ["last_refreshed_at", "last_status", "last_error"]}),
            ("History", {"fields": ["created_at", "updated_at"]}),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelListSource]:
        return super().get_queryset(request).annotate(entry_total=Count("entries"))

    @admin.display(description="models", ordering="entry_total")
    def model_count(self, source: ModelListSource) -> int:
        return source.entry_total  # type: ignore[attr-defined]

    @admin.display(boolean=True, description="credential")
    def has_credential(self, source: ModelListSource) -> bool:
        return source.has_credential

    def save_model(self, request: HttpRequest, obj: ModelListSource, form: forms.ModelForm, change: bool) -> None:
        if form.cleaned_data.get("clear_credential"):
            model_list_source_set_credential(source=obj, credential="")
        elif form.cleaned_data.get("credential"):
            model_list_source_set_credential(source=obj, credential=form.cleaned_data["credential"])
        if change and REREAD_FIELDS & set(form.changed_data):
            obj.last_refreshed_at = None  # due at the next check
        super().save_model(request, obj, form, change)

    @admin.action(description="Refresh now (reads the list and applies it)", permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[ModelListSource]) -> None:
        for source in queryset:
            refresh = model_list_source_refresh(source=source)
            assert refresh is not None  # only a refresh asked for when due may be skipped
            level = {"ok": messages.SUCCESS, "partial": messages.WARNING}.get(refresh.status, messages.ERROR)
            messages.add_message(request, level, f"{source.name}: {refresh_summary(refresh)}")
