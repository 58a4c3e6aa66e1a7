"""Reads of the alerts app."""

from __future__ import annotations

from django.db.models import Q

from notifications.models import AlertChannel


def alert_channels_for(*, event: str, tenant_id: int | None) -> list[AlertChannel]:
    """The active channels that receive `event` about this tenant: its own and the operators' (tenant_id None: the
    operators' only)."""
    owners = Q(tenant__isnull=True) if tenant_id is None else Q(tenant__isnull=True) | Q(tenant_id=tenant_id)
    # A tenant has a handful of channels: filtered by event here, as SQLite has no JSON containment lookup.
    return [channel for channel in AlertChannel.objects.filter(owners, active=True) if event in channel.events]
