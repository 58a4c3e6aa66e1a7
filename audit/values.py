"""What an entry keeps of an object: its field values, with every secret replaced by "[redacted]".

A field is a secret by its name, so a secret field added later is redacted without a change here:
encrypted values (`*_encrypted`: provider credentials and headers, webhook secrets), keyed hashes
of keys and tokens (`digest`), passwords and tokens.
"""

from __future__ import annotations

from typing import Any

from django.db import models

REDACTED = "[redacted]"
_SECRET_SUFFIXES = ("_encrypted", "digest", "password", "secret", "token")

Values = dict[str, Any]


def is_secret(field_name: str) -> bool:
    return field_name.endswith(_SECRET_SUFFIXES)


def audited_fields(model: type[models.Model], names: frozenset[str] | None = None) -> list[models.Field[Any, Any]]:
    """The concrete fields an entry compares and keeps (`names`, if given, narrows them to a save's update_fields)."""
    # An auto_now timestamp changes on every save; the entry's own time says when.
    fields = [f for f in model._meta.concrete_fields if not f.primary_key and not getattr(f, "auto_now", False)]
    if names is not None:
        fields = [field for field in fields if field.name in names or field.attname in names]
    return fields


def object_values(instance: models.Model, fields: list[models.Field[Any, Any]]) -> Values:
    """The instance's values as it is in memory; a foreign key as the id it points to."""
    return {field.name: field.value_from_object(instance) for field in fields}


def stored_values(instance: models.Model, fields: list[models.Field[Any, Any]], using: str) -> Values | None:
    """The instance's row as the database holds it before a save, or None if there is none yet."""
    manager = type(instance)._base_manager.using(using)
    row = manager.filter(pk=instance.pk).values(*(field.attname for field in fields)).first()
    if row is None:
        return None
    return {field.name: row[field.attname] for field in fields}


def redacted(values: Values) -> Values:
    """Secrets replaced; an empty one is kept empty, so an entry still tells that a secret was cleared."""
    return {name: REDACTED if is_secret(name) and value not in ("", None) else value for name, value in values.items()}


def changes(before: Values, after: Values) -> tuple[Values, Values]:
    """The fields whose values differ, before and after."""
    changed = [name for name, value in after.items() if before.get(name) != value]
    return {name: before.get(name) for name in changed}, {name: after[name] for name in changed}
