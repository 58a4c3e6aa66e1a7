"""The queue policy of a tenant or a key, as the management API reads and changes it (docs/queueing.md)."""

from __future__ import annotations

from rest_framework import serializers

from tenants.models import ApiKey, Tenant
from tenants.services import QUEUE_POLICY_FIELDS


class TenantQueuePolicySerializer(serializers.ModelSerializer):
    """What a request refused for capacity may do: `off`, `wait` in line, `async` jobs when asked, or `both`."""

    class Meta:
        model = Tenant
        fields = list(QUEUE_POLICY_FIELDS)


class ApiKeyQueuePolicySerializer(serializers.ModelSerializer):
    """A key's own queue policy; an empty `queue_mode` and null numbers take the tenant's."""

    class Meta:
        model = ApiKey
        fields = list(QUEUE_POLICY_FIELDS)
        extra_kwargs = {"queue_mode": {"allow_blank": True}}
