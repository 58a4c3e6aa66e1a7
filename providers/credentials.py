"""Provider credentials are encrypted at rest with Fernet (AES-128-CBC + HMAC).

Operators register providers in the admin, so the credential has to live in
the database; encrypting it means a leaked dump or backup does not leak the
upstream keys. The Fernet key is derived from PORTICO_CREDENTIAL_KEY (which
defaults to SECRET_KEY).
"""

from __future__ import annotations

import base64
import hashlib

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
