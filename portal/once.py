"""What is shown once: a new key's plaintext, a new user's set-password link.

The view that makes the secret holds it in the session and redirects; the page
it redirects to takes it out as it shows it. Reloading that page finds nothing
(and goes back to the list), and reloading the form's POST is not possible
after the redirect, so neither a second key nor a second sight of the secret
can come of it. The secret is in the session store only between those two
requests, and it is held per tenant, so another tenant's page never shows it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.models import Tenant


def _slot(what: str, tenant: Tenant) -> str:
    return f"portal:once:{what}:{tenant.pk}"


def hold(request: HttpRequest, what: str, tenant: Tenant, value: dict[str, Any]) -> None:
    request.session[_slot(what, tenant)] = value


def take(request: HttpRequest, what: str, tenant: Tenant) -> dict[str, Any] | None:
    return request.session.pop(_slot(what, tenant), None)
