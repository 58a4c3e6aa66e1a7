"""Cache policies: whether a public model's answers, a tenant's, or one tenant's on one model are served again.

A policy names a public model, a tenant, or both; the most specific one that
matches a request decides (see caching.facade). Without any, nothing is cached.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# Thirty days: an exact answer kept longer than that is more likely stale than useful.
MAX_TTL_SECONDS = 30 * 86_400


class CachePolicy(models.Model):
    class Charge(models.TextChoices):
        FULL = "full", "the full price"
        FREE = "free", "nothing"
        PERCENT = "percent", "a percent of the price"

    model = models.ForeignKey(
        "providers.PublicModel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="cache_policies",
        help_text="Empty: every model of the tenant.",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="cache_policies",
        help_text="Empty: every tenant calling the model.",
    )
    enabled = models.BooleanField(
        default=True, help_text="Off: this scope is not cached, whatever a broader policy says."
    )
    ttl_seconds = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_TTL_SECONDS)],
        help_text="How long a stored answer is served again.",
    )
    charge = models.CharField(
        max_length=10, choices=Charge.choices, default=Charge.FULL, help_text="What the tenant pays for a hit."
    )
    charge_percent = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(100)],
        help_text="With 'a percent of the price': the share of the price a hit costs, 0 to 100.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "cache policy"
        verbose_name_plural = "cache policies"
        ordering = ["tenant_id", "model_id"]
        constraints = [
            # Their messages are what a form (the admin's, or full_clean in caching.services) shows.
            models.CheckConstraint(
                condition=Q(model__isnull=False) | Q(tenant__isnull=False),
                name="cache_policy_has_a_scope",
                violation_error_message="A policy applies to a public model, a tenant, or both: choose at least one.",
            ),
            models.CheckConstraint(
                condition=~Q(charge="percent") | Q(charge_percent__isnull=False, charge_percent__lte=100),
                name="cache_policy_percent_is_given",
                violation_error_message="Give the percent of the price a hit costs.",
            ),
            models.UniqueConstraint(
                fields=["model", "tenant"],
                condition=Q(model__isnull=False, tenant__isnull=False),
                name="cache_policy_one_per_pair",
            ),
            models.UniqueConstraint(
                fields=["model"], condition=Q(tenant__isnull=True), name="cache_policy_one_per_model"
            ),
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(model__isnull=True), name="cache_policy_one_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        model = self.model.public_id if self.model_id else "every model"  # type: ignore[union-attr]
        tenant = self.tenant.slug if self.tenant_id else "every tenant"  # type: ignore[union-attr]
        return f"{model} for {tenant}: {'on' if self.enabled else 'off'}"
