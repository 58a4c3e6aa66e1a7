"""The tenant's API keys: listed for every role; created, narrowed and revoked by members and admins.

Keys are made and revoked by the same services the management API and the
console use. A new key's plaintext is shown once (`portal.once`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from portal import once
from portal.access import KEY_MANAGERS, tenant_page
from portal.forms import KeyCreateForm, KeyModelsForm
from portal.pages import render_page
from portal.selectors import keys_of
from tenants.models import TenantMembership
from tenants.services import api_key_create, api_key_revoke, api_key_set_models

NEW_KEY = "key"


@tenant_page(writers=KEY_MANAGERS)
def key_list(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    tenant = membership.tenant
    form = KeyCreateForm(request.POST if request.method == "POST" else None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        api_key, plaintext = api_key_create(
            tenant=tenant,
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
            allowed_model_ids=form.cleaned_data["models"],
        )
        once.hold(request, NEW_KEY, tenant, {"id": api_key.pk, "plaintext": plaintext})
        return redirect("portal:key-created", tenant.slug)
    return render_page(request, membership, "portal/keys.html", section="Keys", keys=keys_of(tenant=tenant), form=form)


@tenant_page()
def key_created(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    tenant = membership.tenant
    issued = once.take(request, NEW_KEY, tenant)
    if issued is None:  # shown already: a reload lands back on the list
        return redirect("portal:keys", tenant.slug)
    api_key = get_object_or_404(keys_of(tenant=tenant), pk=issued["id"])
    response = render_page(
        request, membership, "portal/key_created.html", section="Keys", key=api_key, plaintext=issued["plaintext"]
    )
    add_never_cache_headers(response)
    return response


@tenant_page(writers=KEY_MANAGERS)
def key_detail(request: HttpRequest, membership: TenantMembership, key_id: int) -> HttpResponse:
    tenant = membership.tenant
    api_key = get_object_or_404(keys_of(tenant=tenant), pk=key_id)
    current = [model.public_id for model in api_key.allowed_models.all()] if api_key.models_restricted else []
    form = KeyModelsForm(request.POST if request.method == "POST" else None, tenant=tenant, initial={"models": current})
    if request.method == "POST" and form.is_valid():
        api_key_set_models(api_key=api_key, model_ids=form.cleaned_data["models"])
        return redirect("portal:key", tenant.slug, api_key.pk)
    return render_page(request, membership, "portal/key.html", section="Keys", key=api_key, form=form)


@require_POST
@tenant_page(writers=KEY_MANAGERS)
def key_revoke(request: HttpRequest, membership: TenantMembership, key_id: int) -> HttpResponse:
    api_key = get_object_or_404(keys_of(tenant=membership.tenant), pk=key_id)
    # Revoking twice keeps the first revocation's time: that is when the key stopped working.
    if api_key.revoked_at is None:
        api_key_revoke(api_key=api_key)
    return redirect("portal:keys", membership.tenant.slug)
