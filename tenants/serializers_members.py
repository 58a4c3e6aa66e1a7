"""What the management API reads and writes for a tenant's people: a user and their role in the tenant."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from tenants.models import TenantMembership, TenantRole


class MembershipSerializer(serializers.ModelSerializer):
    """A user's role in one tenant: `admin` manages the tenant (portal and API), `member` its keys, `viewer` reads."""

    user = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.all(),
        help_text="The user's username; the user must exist (the portal's invitations make new ones).",
    )
    email = serializers.EmailField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=TenantRole.choices)

    class Meta:
        model = TenantMembership
        fields = ["id", "user", "email", "role", "created_at"]
        read_only_fields = ["created_at"]
        validators: list[Any] = []  # one membership per user and tenant: checked by the view, in its own words
