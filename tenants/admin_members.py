"""The console's list of a tenant's people and their roles, shown on the tenant's page.

Operators assign a tenant's first admin here; from then on the tenant's admins
can invite and remove members themselves in the portal (docs/portal.md).
"""

from __future__ import annotations

from django.contrib import admin

from tenants.models import TenantMembership


class TenantMembershipInline(admin.TabularInline):
    model = TenantMembership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    # A deployment may have thousands of users: a search box, not a select holding every one of them.
    autocomplete_fields = ("user",)
    extra = 0
    verbose_name = "member"
    verbose_name_plural = "members and their roles"
