"""The values an audit entry's action, actor kind and origin take.

Apart from the model so that the command line can open its scope (audit.context) before Django
has loaded its apps.
"""

from __future__ import annotations

from django.db import models


class AuditAction(models.TextChoices):
    CREATE = "create", "create"
    UPDATE = "update", "update"
    DELETE = "delete", "delete"
    REVOKE = "revoke", "revoke"
    ROTATE_KEY = "rotate_key", "credential key rotation"


class ActorKind(models.TextChoices):
    USER = "user", "user"
    TOKEN = "token", "management API token"
    CLI = "cli", "command line"
    ANONYMOUS = "anonymous", "anonymous"


class AuditOrigin(models.TextChoices):
    ADMIN = "admin", "admin"
    API = "api", "management API"
    PORTAL = "portal", "tenant portal"
    CLI = "cli", "command line"
