"""The tenant's members: listed for every role; invited and removed by admins.

An invitation of someone with no user yet makes one with no usable password
and shows, once, a link for them to set it (Django's password-reset token), to
hand over by whatever means the admin trusts; Portico sends no email.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.tokens import default_token_generator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.http import require_POST

from portal import once
from portal.access import MEMBER_MANAGERS, tenant_page
from portal.forms import InviteForm
from portal.pages import render_page
from portal.selectors import members_of
from tenants.models import TenantMembership
from tenants.services import AlreadyMember, LastAdmin, membership_invite, membership_remove

INVITATION = "invitation"


def _set_password_link(request: HttpRequest, membership: TenantMembership) -> str:
    user = membership.user
    path = reverse(
        "portal:set-password",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return request.build_absolute_uri(path)


@tenant_page(writers=MEMBER_MANAGERS)
def member_list(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    tenant = membership.tenant
    form = InviteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        email, role = form.cleaned_data["email"], form.cleaned_data["role"]
        try:
            invitation = membership_invite(tenant=tenant, email=email, role=role)
        except AlreadyMember:
            form.add_error("email", f"{email} is a member of {tenant.name} already.")
        else:
            if not invitation.new_user:
                messages.success(request, f"{email} is now in {tenant.name}, as {role}.")
                return redirect("portal:members", tenant.slug)
            link = _set_password_link(request, invitation.membership)
            once.hold(request, INVITATION, tenant, {"email": email, "role": role, "link": link})
            return redirect("portal:member-invited", tenant.slug)
    members = members_of(tenant=tenant)
    return render_page(request, membership, "portal/members.html", section="Members", members=members, form=form)


@tenant_page()
def member_invited(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    tenant = membership.tenant
    invitation = once.take(request, INVITATION, tenant)
    if invitation is None:
        return redirect("portal:members", tenant.slug)
    response = render_page(request, membership, "portal/member_invited.html", section="Members", **invitation)
    add_never_cache_headers(response)
    return response


@require_POST
@tenant_page(writers=MEMBER_MANAGERS)
def member_remove(request: HttpRequest, membership: TenantMembership, membership_id: int) -> HttpResponse:
    tenant = membership.tenant
    removed = get_object_or_404(members_of(tenant=tenant), pk=membership_id)
    leaving = removed.pk == membership.pk
    try:
        membership_remove(membership=removed)
    except LastAdmin:
        messages.error(request, f"{removed.user} is the last admin of {tenant.name}: make another admin first.")
        return redirect("portal:members", tenant.slug)
    if leaving:  # this tenant is no longer theirs to see
        return redirect("portal:home")
    messages.success(request, f"{removed.user} is no longer a member of {tenant.name}.")
    return redirect("portal:members", tenant.slug)
