"""Provider credentials and extra headers are encrypted at rest with Fernet (AES-128-CBC + HMAC).

Operators register providers in the admin, so the credential has to live in
the database; encrypting it means a leaked dump or backup does not leak the
upstream keys. The Fernet key is derived from PORTICO_CREDENTIAL_KEY (which
defaults to SECRET_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialUnreadable(Exception):
    """The stored credential was encrypted with another PORTICO_CREDENTIAL_KEY."""


def _fernet() -> Fernet:
    material = hashlib.sha256(b"portico-credential:" + settings.PORTICO_CREDENTIAL_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(material))


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
