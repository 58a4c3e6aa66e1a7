"""The operator's console for tenants and their API keys.

A new key's plaintext is shown once, after a redirect (POST, redirect, GET):
`save_model` generates it and holds it in the session, `response_add`
redirects to the key's "created" page, and that page takes it out of the
session as it shows it. Reloading that page shows no secret and creates
nothing; the form's POST cannot be sent again from it. The plaintext stays in
the session store (of the user who made the key, no other) only until that page
shows it, and the database keeps only the prefix and a keyed hash. Revoking is
the advertised way to retire a key, so it stays listed with its history.

Management API tokens are shown once the same way.

What billing knows of a tenant or key (its ledger, usage, limits and budgets)
is added to these pages by billing's admin, which sits above tenants.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from tenants.admin_cors import TenantForm
from tenants.admin_members import TenantMembershipInline
from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.selectors import tenant_admins
from tenants.services import (
    api_key_issue_secret,
    api_key_revoke,
    api_key_set_models,
    management_token_issue_secret,
    tenant_models_outside,
)
from tenants.tenant_services import TENANT_FIELDS, tenant_add, tenant_update

_KEY_TIMES = ("created_at", "last_used_at", "revoked_at")
# What a request refused for capacity may do (docs/queueing.md); a key's empty fields take its tenant's.
_QUEUE = ("queue_mode", "queue_max_wait", "queue_max_depth")


def _user_links(users: QuerySet[Any]) -> str:
    links = format_html_join(
        ", ", '<a href="{}">{}</a>', ((reverse("admin:auth_user_change", args=[u.pk]), u.get_username()) for u in users)
    )
    return links or "none"


class ShownOnceAdmin(admin.ModelAdmin):
    """Adds objects whose secret is shown once, on a "created" page the add form redirects to."""

    created_template: str
    created_title: str

    def issue_secret(self, obj: Any) -> str:
        """Give the new, unsaved `obj` its secret, keeping only what may be stored; return the plaintext."""
        raise NotImplementedError

    def _slot(self, obj: Model) -> str:
        return f"portico:shown-once:{self.opts.label_lower}:{obj.pk}"

    def _created_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_created"

    def get_urls(self) -> list[URLPattern]:
        created = path(
            "<path:object_id>/created/",
            self.admin_site.admin_view(self.created_view),
            name=self._created_url_name(),
        )
        return [created, *super().get_urls()]

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        plaintext = None if change else self.issue_secret(obj)
        super().save_model(request, obj, form, change)
        if plaintext is not None:
            request.session[self._slot(obj)] = plaintext

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        if self._slot(obj) not in request.session:
            return super().response_add(request, obj, post_url_continue)
        return HttpResponseRedirect(reverse(f"admin:{self._created_url_name()}", args=[obj.pk]))

    def created_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": self.created_title,
            "original": obj,
            # Taken out as it is shown: a reload of this page finds nothing.
            "plaintext": request.session.pop(self._slot(obj), None),
        }
        response = TemplateResponse(request, self.created_template, context)
        add_never_cache_headers(response)
        return response


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
    form = TenantForm
    list_display = ["name", "slug", "active", "queue_mode", "key_count", "created_at"]
    list_filter = ["active", "queue_mode"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["allowed_models"]
    readonly_fields = ["keys", "admin_users", "usage_report", "created_at"]
    inlines = [ApiKeyInline, TenantMembershipInline]

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        # A new tenant starts with the defaults (queue off), has no admins yet and no usage.
        existing = [*_QUEUE, "admin_users"] if obj is not None else []
        report = ["usage_report"] if obj is not None else []
        fields = ["name", "slug", "active", "model_access", "allowed_models", "describe_models", "cors_origins"]
        fields += [*existing, "keys"]
        return [*fields, *report, "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).annotate(key_count=Count("api_keys"))

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool) -> None:
        # The same writes as the management API's: one service for both (tenants/tenant_services.py).
        shown = set(form.cleaned_data) & set(TENANT_FIELDS)
        fields: dict[str, Any] = {name: form.cleaned_data[name] for name in shown - {"name", "slug"}}
        fields["allowed_models"] = cast("TenantForm", form).allowed_models()
        if change:
            tenant_update(
                tenant=obj, fields={**fields, "name": form.cleaned_data["name"], "slug": form.cleaned_data["slug"]}
            )
            return
        added = tenant_add(name=form.cleaned_data["name"], slug=form.cleaned_data["slug"], fields=fields)
        # The form's instance becomes the tenant added, for its inlines and the redirect that follows.
        obj.pk = added.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        # Not form.save_m2m(): the model list was saved by the service, with its "none" state.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

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

    @admin.display(description="usage")
    def usage_report(self, tenant: Tenant) -> str:
        # The console's report page (gateway/console.py): spend and tokens per day, model and key.
        return format_html('<a href="{}">Usage report</a>', reverse("admin:tenant_report", args=[tenant.pk]))

    @admin.display(description="admins")
    def admin_users(self, tenant: Tenant) -> str:
        return _user_links(tenant_admins(tenant=tenant))


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
class ApiKeyAdmin(ShownOnceAdmin):
    form = ApiKeyForm
    list_display = ["name", "tenant", "prefix", "active", "expires_at", *_KEY_TIMES]
    list_filter = ["active", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "prefix", "tenant__name", "tenant__slug"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke_keys"]
    created_template = "admin/tenants/apikey/key_created.html"
    created_title = "API key created"

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("tenant", "name", "expires_at", "allowed_models")  # its queue policy: once it exists
        return (
            *("name", "tenant", "tenant_admin_users", "prefix", "active", "expires_at", "allowed_models"),
            *_QUEUE,
            *_KEY_TIMES,
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # A revoked key stays revoked: re-enabling it would resurrect a secret someone chose to retire.
        return ("tenant", "tenant_admin_users", "prefix", *_KEY_TIMES, *(("active",) if obj.revoked_at else ()))

    def issue_secret(self, obj: ApiKey) -> str:
        return api_key_issue_secret(api_key=obj)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if "allowed_models" in form.cleaned_data:
            api_key_set_models(api_key=form.instance, model_ids=[m.pk for m in form.cleaned_data["allowed_models"]])

    @admin.display(description="tenant admins")
    def tenant_admin_users(self, api_key: ApiKey) -> str:
        return _user_links(tenant_admins(tenant=api_key.tenant))

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
class ManagementTokenAdmin(ShownOnceAdmin):
    list_display = ["user", "prefix", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "prefix"]
    autocomplete_fields = ["user"]
    created_template = "admin/tenants/managementtoken/token_created.html"
    created_title = "Management API token created"

    def get_fields(self, request: HttpRequest, obj: ManagementToken | None = None) -> tuple[str, ...]:
        return ("user",) if obj is None else ("user", "prefix", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ManagementToken | None = None) -> tuple[str, ...]:
        # A token is never edited: delete it and add another to replace it.
        return () if obj is None else ("user", "prefix", "created_at")

    def issue_secret(self, obj: ManagementToken) -> str:
        return management_token_issue_secret(token=obj)
