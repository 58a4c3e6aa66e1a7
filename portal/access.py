"""Who may open which of a tenant's pages, and do what there.

A tenant the user has no membership of does not exist for them: its pages, and
any key or ledger row of it named in a URL, answer 404 exactly as an unknown
slug or id does. Within their own tenant a user knows what exists, so an action
their role does not allow is refused with 403 (viewers: any change; members:
changes to the member list).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from portal.selectors import membership_of
from tenants.models import TenantMembership, TenantRole

P = ParamSpec("P")
TenantView = Callable[Concatenate[HttpRequest, TenantMembership, P], HttpResponseBase]

KEY_MANAGERS = frozenset({TenantRole.ADMIN, TenantRole.MEMBER})
MEMBER_MANAGERS = frozenset({TenantRole.ADMIN})
LOGIN_URL = "portal:login"


def may_manage_keys(membership: TenantMembership) -> bool:
    return membership.role in KEY_MANAGERS


def may_manage_members(membership: TenantMembership) -> bool:
    return membership.role in MEMBER_MANAGERS


def tenant_page(
    *, writers: frozenset[str] = frozenset()
) -> Callable[[TenantView[P]], Callable[Concatenate[HttpRequest, str, P], HttpResponseBase]]:
    """A page of the tenant in the URL's `slug`, handed the user's membership of it.

    Every role may read the page; a POST needs one of the roles in `writers`.
    """

    def decorate(view: TenantView[P]) -> Callable[Concatenate[HttpRequest, str, P], HttpResponseBase]:
        @login_required(login_url=LOGIN_URL)
        @wraps(view)
        def page(request: HttpRequest, slug: str, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            membership = membership_of(user=request.user, slug=slug)
            if membership is None:
                raise Http404("No such tenant.")
            if request.method == "POST" and membership.role not in writers:
                raise PermissionDenied("Your role in this tenant does not allow this.")
            return view(request, membership, *args, **kwargs)

        return page

    return decorate
