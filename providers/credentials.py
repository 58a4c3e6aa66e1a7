"""Provider credentials and extra headers are encrypted at rest with Fernet (AES-128-CBC + HMAC).

Operators register providers in the admin, so the credential has to live in
the database; encrypting it means a leaked dump or backup does not leak the
upstream keys. The Fernet keys are derived from PORTICO_CREDENTIAL_KEY (which
defaults to SECRET_KEY).

PORTICO_CREDENTIAL_KEY may hold several keys, comma-separated: the first encrypts,
every one decrypts (MultiFernet). That is how the key is rotated without downtime
(docs/credential-key-rotation.md): add the new key in front, reload every process,
re-encrypt the stored secrets under it (`portico rotate-credential-key`, which uses
`credentials_rotate` below), then drop the old key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.db import models, transaction
from django.dispatch import Signal


class CredentialUnreadable(Exception):
    """The stored credential was encrypted with none of the keys in PORTICO_CREDENTIAL_KEY."""


# Sent for each row whose secrets a rotation re-encrypted, inside the row's transaction: sender is the model,
# with `instance`, `fields` (the names re-encrypted) and `using`. The audit log records it.
credential_key_rotated = Signal()

# Every column encrypted with these keys, by model label: a rotation must re-encrypt all of them, or dropping the
# old key would leave some unreadable. Alert channels (notifications, an app above this one) sign their webhooks
# with a secret encrypted here too, so they are named by label rather than imported.
ENCRYPTED_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("providers.Provider", ("credential_encrypted", "extra_headers_encrypted")),
    ("providers.ModelListSource", ("credential_encrypted",)),
    ("notifications.AlertChannel", ("secret_encrypted",)),
)


def credential_keys() -> tuple[str, ...]:
    """The configured keys, the one that encrypts first: a list, or one string of comma-separated keys."""
    value: str | Sequence[str] = settings.PORTICO_CREDENTIAL_KEY
    if isinstance(value, str):
        # The default is SECRET_KEY, which may hold commas: it has always been one key, whole.
        value = [value] if value == settings.SECRET_KEY else value.split(",")
    keys = tuple(key.strip() for key in value if key.strip())
    if not keys:
        raise ImproperlyConfigured("PORTICO_CREDENTIAL_KEY holds no key")
    return keys


@lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    """All the keys (to decrypt) and the first (to tell a token already under it); derived once per setting."""
    derived = [
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"portico-credential:" + key.encode()).digest())) for key in keys
    ]
    return MultiFernet(derived), derived[0]


def _fernet() -> MultiFernet:
    return _fernets(credential_keys())[0]


def encrypt_credential(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_credential(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialUnreadable(
            "the credential cannot be decrypted with the current PORTICO_CREDENTIAL_KEY"
        ) from None


def encrypt_headers(headers: dict[str, str]) -> str:
    """Extra headers at rest: one Fernet token of their JSON, since any value may be a key."""
    if not headers:
        return ""
    return encrypt_credential(json.dumps(headers, sort_keys=True))


def decrypt_headers(token: str) -> dict[str, str]:
    if not token:
        return {}
    headers = json.loads(decrypt_credential(token))
    return {str(name): str(value) for name, value in headers.items()}


# --- rotation ---------------------------------------------------------------------------------------------------


def is_under_first_key(token: str) -> bool:
    """Whether a stored token is already encrypted with the first key (an empty one needs no key)."""
    if not token:
        return True
    try:
        _fernets(credential_keys())[1].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """The same secret encrypted with the first key; CredentialUnreadable if no configured key opens it."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialUnreadable("the secret cannot be decrypted with any key in PORTICO_CREDENTIAL_KEY") from None


@dataclass
class RotationProgress:
    """One model's rows so far: looked at, re-encrypted, and left as they were because no key opens them."""

    label: str
    checked: int = 0
    rotated: int = 0
    unreadable: int = 0


def credentials_rotate(
    *, batch_size: int = 100, on_batch: Callable[[RotationProgress], None] | None = None
) -> list[RotationProgress]:
    """Re-encrypt every stored secret that is not under the first key yet, a batch of rows at a time.

    Each row is changed in a transaction of its own, and only if it still holds what was read
    (a row an operator saved meanwhile is read again), so servers keep running throughout: they
    decrypt with every configured key. Running it again finds nothing left to do.
    """
    done = []
    for label, fields in ENCRYPTED_FIELDS:
        try:
            model = apps.get_model(label)
        except LookupError:  # an app that is not installed
            continue
        progress = RotationProgress(label=label)
        last_pk: Any = None
        while True:
            rows = model._base_manager.order_by("pk")
            batch = list(rows.filter(pk__gt=last_pk)[:batch_size] if last_pk is not None else rows[:batch_size])
            if not batch:
                break
            for row in batch:
                _rotate_row(model, row, fields, progress)
            last_pk = batch[-1].pk
            if on_batch is not None:
                on_batch(progress)
        done.append(progress)
    return done


def _rotate_row(
    model: type[models.Model], row: models.Model, fields: tuple[str, ...], progress: RotationProgress
) -> None:
    progress.checked += 1
    for _attempt in range(3):
        stale = {name: getattr(row, name) for name in fields if not is_under_first_key(getattr(row, name))}
        if not stale:
            return
        try:
            fresh = {name: reencrypt(token) for name, token in stale.items()}
        except CredentialUnreadable:
            progress.unreadable += 1
            return
        with transaction.atomic():
            if model._base_manager.filter(pk=row.pk, **stale).update(**fresh):
                for name, token in fresh.items():
                    setattr(row, name, token)
                credential_key_rotated.send(sender=model, instance=row, fields=sorted(fresh), using=row._state.db)
                progress.rotated += 1
                return
        try:  # changed (or deleted) since it was read: look again
            row.refresh_from_db(fields=list(fields))
        except ObjectDoesNotExist:
            return
