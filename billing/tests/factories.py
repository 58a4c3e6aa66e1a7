from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from itertools import count
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from billing.models import UsageRecord
from tenants.models import ApiKey, Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import management_token_headers

_seq = count(1)


def make_usage(
    *,
    api_key: ApiKey | None = None,
    created_at: datetime | None = None,
    model: str = "gpt-4o",
    cost: Decimal | str = "0.001",
    **fields: Any,
) -> UsageRecord:
    """A ledger row as the ledger writer stores it: the key's tenant and prefix copied onto the row."""
    if api_key is not None:
        fields.setdefault("tenant_id", api_key.tenant_id)
        fields.setdefault("key_prefix", api_key.prefix)
    fields.setdefault("status", 200)
    fields.setdefault("provider", "openai")
    return UsageRecord.objects.create(
        request_id=f"req-{next(_seq)}",
        created_at=created_at or timezone.now(),
        api_key=api_key,
        model=model,
        cost=Decimal(cost),
        **fields,
    )


def make_user(*, username: str | None = None, staff: bool = False, admin_of: Iterable[Tenant] = ()) -> AbstractUser:
    user = get_user_model().objects.create_user(username=username or f"user-{next(_seq)}", is_staff=staff)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return user


def token_headers(user: AbstractUser) -> dict[str, str]:
    """Headers that authenticate as `user` to the management API."""
    return management_token_headers(user)
