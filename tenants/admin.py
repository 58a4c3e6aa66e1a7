"""The operator's console for tenants and their API keys.

A key's plaintext exists only while the request that creates it is handled:
`save_model` generates it, `response_add` shows it once on its own page, and
nothing keeps it (not the session, not the messages framework, not the
database, which stores the prefix and a keyed hash). Revoking is the
advertised way to retire a key, so it stays listed with its history.

Management API tokens are shown once the same way. A user has one token, so
the form refuses a second: sending the creating form again (a reload) cannot
issue another.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.services import (
    api_key_issue_secret,
    api_key_revoke,
    api_key_set_models,
    management_token_issue_secret,
    tenant_models_outside,
    tenant_set_models,
)
from tenants.signin import ThrottledAdminAuthenticationForm

_KEY_TIMES = ("created_at", "last_used_at", "revoked_at")
# What a request refused for capacity may do (docs/queueing.md); a key's empty fields take its tenant's.
_QUEUE = ("queue_mode", "queue_max_wait", "queue_max_depth")

# The admin is Portico's console; tenants owns its branding as the first of Portico's apps to load.
admin.site.site_header = "Portico"
admin.site.site_title = "Portico"
admin.site.index_title = "Console"
admin.site.login_form = ThrottledAdminAuthenticationForm


class ApiKeyInline(admin.TabularInline):
    """The tenant's keys, read-only: keys are created and revoked from the key admin."""

    model = ApiKey
    fields = ("name", "prefix", "active", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "active", "queue_mode", "key_count", "created_at"]
    list_filter = ["active", "queue_mode"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["allowed_models"]
    readonly_fields = ["keys", "created_at"]
    inlines = [ApiKeyInline]

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        queue = [*_QUEUE] if obj is not None else []  # a new tenant starts with the defaults: queue off
        return ["name", "slug", "active", "allowed_models", *queue, "keys", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).annotate(key_count=Count("api_keys"))

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        tenant_set_models(tenant=form.instance, model_ids=[m.pk for m in form.cleaned_data["allowed_models"]])

    @admin.display(description="keys", ordering="key_count")
    def key_count(self, tenant: Tenant) -> int:
        return tenant.key_count  # type: ignore[attr-defined]

    @admin.display(description="API keys")
    def keys(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "Save the tenant first, then add keys."
        listed = reverse("admin:tenants_apikey_changelist") + f"?tenant__id__exact={tenant.pk}"
        add = reverse("admin:tenants_apikey_add") + f"?tenant={tenant.pk}"
        return format_html('<a href="{}">See this tenant\'s keys</a> · <a href="{}">Add a key</a>', listed, add)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "active", "expires_at", "allowed_models", *_QUEUE]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant") or getattr(self.instance, "tenant", None)
        chosen = cleaned.get("allowed_models")
        if tenant is not None and chosen:
            outside = tenant_models_outside(tenant=tenant, public_ids=[route.public_id for route in chosen])
            if outside:
                self.add_error("allowed_models", f"The tenant may not use these models: {', '.join(outside)}.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "tenant", "prefix", "active", "expires_at", *_KEY_TIMES]
    list_filter = ["active", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "prefix", "tenant__name", "tenant__slug"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke_keys"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Hands a new key's plaintext from save_model to response_add within one request.
        self._issued: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("tenant", "name", "expires_at", "allowed_models")  # its queue policy: once it exists
        return ("name", "tenant", "prefix", "active", "expires_at", "allowed_models", *_QUEUE, *_KEY_TIMES)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # A revoked key stays revoked: re-enabling it would resurrect a secret someone chose to retire.
        return ("tenant", "prefix", *_KEY_TIMES, *(("active",) if obj.revoked_at else ()))

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if not change:
            self._issued[request] = api_key_issue_secret(api_key=obj)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if "allowed_models" in form.cleaned_data:
            api_key_set_models(api_key=form.instance, model_ids=[m.pk for m in form.cleaned_data["allowed_models"]])

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = self._issued.pop(request, None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "api_key": obj,
            "plaintext": plaintext,
        }
        response = TemplateResponse(request, "admin/tenants/apikey/key_created.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        skipped = queryset.count() - revoked
        note = f" ({skipped} already revoked)" if skipped else ""
        self.message_user(request, f"Revoked {revoked} key(s){note}.", messages.SUCCESS)


@admin.register(ManagementToken)
class ManagementTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "prefix", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "prefix"]
    autocomplete_fields = ["user"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._issued: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()  # as in ApiKeyAdmin

    def get_fields(self, request: HttpRequest, obj: ManagementToken | None = None) -> tuple[str, ...]:
        return ("user",) if obj is None else ("user", "prefix", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ManagementToken | None = None) -> tuple[str, ...]:
        # A token is never edited: delete it and add another to replace it.
        return () if obj is None else ("user", "prefix", "created_at")

    def save_model(self, request: HttpRequest, obj: ManagementToken, form: forms.ModelForm, change: bool) -> None:
        if not change:
            self._issued[request] = management_token_issue_secret(token=obj)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ManagementToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = self._issued.pop(request, None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Management API token created",
            "token": obj,
            "plaintext": plaintext,
        }
        response = TemplateResponse(request, "admin/tenants/managementtoken/token_created.html", context)
        add_never_cache_headers(response)
        return response
