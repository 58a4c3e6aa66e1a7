from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Tenant(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    active = models.BooleanField(default=True, help_text="An inactive tenant's keys are all refused.")
    allowed_models = models.ManyToManyField(
        "providers.PublicModel",
        blank=True,
        related_name="+",
        help_text="Models this tenant may call. Leave empty to allow every active model.",
    )
    # Whether allowed_models limits the tenant. Kept apart from the list itself so that deleting the
    # last allowed model leaves a tenant with no models, never with all of them.
    models_restricted = models.BooleanField(default=False, editable=False)
    admins = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="administered_tenants",
        help_text="Users who manage this tenant's keys, limits and budgets, and see its usage, in the management API.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, help_text="What this key is for, e.g. 'checkout service, prod'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="The public start of the key.")
    digest = models.CharField(max_length=64, editable=False)
    active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Leave empty for a key that does not expire.")
    allowed_models = models.ManyToManyField(
        "providers.PublicModel",
        blank=True,
        related_name="+",
        help_text="Narrows the tenant's models for this key. Leave empty to allow all of the tenant's models.",
    )
    models_restricted = models.BooleanField(default=False, editable=False)  # as on Tenant
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ManagementToken(models.Model):
    """A user's token for the management API (/api/): its prefix in clear, the whole token only as a keyed hash."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="management_token")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="The public start of the token.")
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "management API token"

    def __str__(self) -> str:
        return f"{self.user} ({self.prefix}…)"
