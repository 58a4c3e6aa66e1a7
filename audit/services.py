"""Writes to the audit log: entries are only ever added."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.db import models

from audit.context import AuditScope
from audit.models import AuditEntry
from audit.values import Values, redacted


def audit_entry_record(
    *,
    scope: AuditScope,
    action: str,
    instance: models.Model,
    before: Values | None,
    after: Values | None,
    using: str = "default",
) -> AuditEntry:
    """Add one entry for a change of `instance`, made by the scope's actor; secrets in the values are redacted."""
    actor = scope.actor
    return AuditEntry.objects.using(using).create(
        actor=actor.label[:200],
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        origin=scope.origin,
        remote_addr=scope.remote_addr,
        action=action,
        model_label=instance._meta.label_lower,
        object_id=str(instance.pk),
        object_repr=_describe(instance),
        before=None if before is None else redacted(before),
        after=None if after is None else redacted(after),
    )


def _describe(instance: models.Model) -> str:
    try:
        text = str(instance)
    except ObjectDoesNotExist:  # a description through a relation already deleted in the same cascade
        text = f"{instance._meta.verbose_name} {instance.pk}"
    return text[:200]
