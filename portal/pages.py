"""Rendering one of a tenant's pages: its navigation and what the user's role lets them do."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.access import may_manage_keys, may_manage_members
from tenants.models import TenantMembership

# (label, URL name) of each of a tenant's sections. "Usage" is the usage report the console shows operators.
NAVIGATION = (
    ("Overview", "portal:overview"),
    ("Usage", "portal:usage"),
    ("Requests", "portal:requests"),
    ("Keys", "portal:keys"),
    ("Members", "portal:members"),
)


def render_page(
    request: HttpRequest, membership: TenantMembership, template: str, *, section: str, **context: Any
) -> HttpResponse:
    return render(
        request,
        template,
        {
            "membership": membership,
            "tenant": membership.tenant,
            "navigation": NAVIGATION,
            "section": section,
            "can_manage_keys": may_manage_keys(membership),
            "can_manage_members": may_manage_members(membership),
            **context,
        },
    )
