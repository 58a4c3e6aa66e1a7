from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tenants.cors import validate_cors_origins

# The longest an operator may let a request wait for capacity (a day): an asynchronous job's deadline at most.
QUEUE_MAX_WAIT_CEILING = 86_400


class QueueMode(models.TextChoices):
    """What happens to a request that the limits or a deployment's capacity would refuse (docs/queueing.md)."""

    OFF = "off", "off: refused at once (429)"
    WAIT = "wait", "wait: waits in line for capacity, up to the queue's longest wait"
    ASYNC = "async", "async: a request asking for it becomes a job (202 Accepted)"
    BOTH = "both", "both: a job when asked, else waits in line"


def _max_wait_validators() -> list[MinValueValidator | MaxValueValidator]:
    return [MinValueValidator(1), MaxValueValidator(QUEUE_MAX_WAIT_CEILING)]


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
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    describe_models = models.BooleanField(
        "describe models",
        default=True,
        help_text="GET /v1/models adds what Portico knows of each model (providers, capabilities, context window, "
        "prices, family) to OpenAI's four fields. Untick to answer with OpenAI's fields only.",
    )
    queue_mode = models.CharField(
        "queue",
        max_length=5,
        choices=QueueMode.choices,
        default=QueueMode.OFF,
        help_text="What a request over the limits or a deployment's capacity gets: a 429 at once, a wait in line, "
        "or (when it asks) an asynchronous job.",
    )
    queue_max_wait = models.PositiveIntegerField(
        "longest wait (s)",
        default=30,
        validators=_max_wait_validators(),
        help_text="Seconds a request may wait in line, and an asynchronous job may wait for its turn.",
    )
    queue_max_depth = models.PositiveIntegerField(
        "longest queue",
        default=100,
        validators=[MinValueValidator(1)],
        help_text="Requests that may wait at once: in line (per server process) and as jobs not yet finished.",
    )
    cors_origins = models.JSONField(
        "CORS origins",
        default=list,
        blank=True,
        validators=[validate_cors_origins],
        help_text="Web pages that may call /v1/ with this tenant's keys from a browser: exact origins such as "
        '"https://app.example.com", one per line. Empty: no browser access.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantRole(models.TextChoices):
    """What a tenant's people may do, in the portal and (admins only) in the management API (docs/portal.md)."""

    ADMIN = "admin", "admin: keys, members, and the management API"
    MEMBER = "member", "member: keys"
    VIEWER = "viewer", "viewer: reads usage and keys"


class TenantMembership(models.Model):
    """A user's role in one tenant; a user may belong to several tenants, once each."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships")
    role = models.CharField(max_length=6, choices=TenantRole.choices, default=TenantRole.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


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
    # The tenant's queue policy, unless the key sets its own (empty: the tenant's).
    queue_mode = models.CharField(
        "queue", max_length=5, choices=QueueMode.choices, blank=True, help_text="Leave empty for the tenant's."
    )
    queue_max_wait = models.PositiveIntegerField(
        "longest wait (s)",
        null=True,
        blank=True,
        validators=_max_wait_validators(),
        help_text="Leave empty for the tenant's.",
    )
    queue_max_depth = models.PositiveIntegerField(
        "longest queue",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Leave empty for the tenant's.",
    )

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
