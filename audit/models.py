"""One row per change of a setting: append-only (the admin cannot change one, nor can SQL on PostgreSQL).

The row names what it describes by label and id rather than by foreign key, so it
outlives the object, the user and the token it names: deleting them must neither
cascade into the log nor rewrite it.
"""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from audit.kinds import ActorKind, AuditAction, AuditOrigin


class AuditEntry(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200, db_index=True, help_text="Who: a user, a token, or cli:<os user>.")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    # The user's id when there was one; not a foreign key, so the entry outlives the user.
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    origin = models.CharField(max_length=10, choices=AuditOrigin.choices)
    remote_addr = models.GenericIPAddressField(
        "address", null=True, blank=True, help_text="The client's address; empty for the command line."
    )
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    model_label = models.CharField("model", max_length=100, db_index=True, help_text="e.g. providers.provider")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField("object", max_length=200)
    # Field values as JSON; secrets are "[redacted]". An update keeps only the fields it changed.
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["model_label", "object_id"], name="audit_entry_object")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.model_label} {self.object_repr}"

    @property
    def source(self) -> str:
        """Where the change came from: the client's address, or "cli"."""
        if self.origin == AuditOrigin.CLI:
            return "cli"
        return self.remote_addr or ""
