"""Changes to the audited models, caught by their save and delete signals while an audit scope is open.

The audited models are named by label: audit sits above tenants, providers, billing and
notifications and reads none of their modules. Before a save, the row as stored is read once (only
inside a scope: the request path and background jobs never pay for it); after it, the entry is
written in the same transaction as the change, so a change that rolls back leaves no entry.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from audit.context import current_scope
from audit.kinds import AuditAction
from audit.services import audit_entry_record
from audit.values import REDACTED, Values, audited_fields, changes, object_values, stored_values
from providers.credentials import credential_key_rotated

AUDITED = (
    "tenants.Tenant",
    "tenants.ApiKey",
    "tenants.TenantMembership",
    "tenants.ManagementToken",
    "providers.Provider",
    "providers.PublicModel",
    "providers.ModelRoute",
    "providers.ModelListSource",
    "billing.Price",
    "billing.DeploymentPrice",
    "billing.RateLimit",
    "billing.Budget",
    "notifications.AlertChannel",
)
# The row as stored before a save, kept on the instance until its post_save.
_BEFORE = "_audit_before"


def connect() -> None:
    for label in AUDITED:
        pre_save.connect(_remember_stored, sender=label, dispatch_uid=f"audit-pre-save-{label}")
        post_save.connect(_record_save, sender=label, dispatch_uid=f"audit-post-save-{label}")
        post_delete.connect(_record_delete, sender=label, dispatch_uid=f"audit-post-delete-{label}")
    credential_key_rotated.connect(_record_rotation, dispatch_uid="audit-credential-key-rotated")


def _update_names(update_fields: Any) -> frozenset[str] | None:
    return None if update_fields is None else frozenset(update_fields)


def _remember_stored(
    sender: type[models.Model], instance: models.Model, using: str, update_fields: Any = None, **_: Any
) -> None:
    if current_scope() is None or instance._state.adding:
        return
    fields = audited_fields(sender, _update_names(update_fields))
    instance.__dict__[_BEFORE] = stored_values(instance, fields, using)


def _record_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    using: str,
    update_fields: Any = None,
    **_: Any,
) -> None:
    scope = current_scope()
    stored: Values | None = instance.__dict__.pop(_BEFORE, None)
    if scope is None:
        return
    fields = audited_fields(sender, _update_names(update_fields))
    now = object_values(instance, fields)
    action: str = AuditAction.CREATE
    if created or stored is None:
        before, after = None, now
    else:
        before, after = changes(stored, now)
        if not after:
            return  # saved as it was: nothing to tell
        action = _named_action(sender, before, after)
    audit_entry_record(scope=scope, action=action, instance=instance, before=before, after=after, using=using)


def _record_delete(sender: type[models.Model], instance: models.Model, using: str, **_: Any) -> None:
    scope = current_scope()
    if scope is None:
        return
    before = object_values(instance, audited_fields(sender))
    audit_entry_record(
        scope=scope, action=AuditAction.DELETE, instance=instance, before=before, after=None, using=using
    )


def _named_action(model: type[models.Model], before: Values, after: Values) -> str:
    """An update that is better known by its own name: a key's revocation."""
    if model._meta.label == "tenants.ApiKey" and before.get("revoked_at") is None and after.get("revoked_at"):
        return AuditAction.REVOKE
    return AuditAction.UPDATE


def _record_rotation(
    sender: type[models.Model], instance: models.Model, fields: list[str], using: str, **_: Any
) -> None:
    """A secret re-encrypted under the first credential key: same value, new ciphertext (both redacted)."""
    scope = current_scope()
    if scope is None:
        return
    values = dict.fromkeys(fields, REDACTED)
    audit_entry_record(
        scope=scope, action=AuditAction.ROTATE_KEY, instance=instance, before=values, after=values, using=using
    )
