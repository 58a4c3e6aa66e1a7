"""Management API token format.

A token reads `pt-` + 8 public characters + 40 secret characters. Like an API
key it is stored as its first 11 characters in clear (the prefix it is found
by) and an HMAC-SHA256 of the whole token (see `tenants.keys.key_digest`), so a
database dump alone cannot be used to call the management API.

Tokens issued before Portico hashed them are 40 hex characters; they were
hashed in place by a migration and are found the same way, by their first 11
characters.
"""

from __future__ import annotations

import secrets
import string

TOKEN_PREFIX = "pt-"
PUBLIC_LENGTH = 8
SECRET_LENGTH = 40
PREFIX_LENGTH = len(TOKEN_PREFIX) + PUBLIC_LENGTH
# The longest token worth hashing: a new token is 51 characters, an older one 40.
MAX_TOKEN_LENGTH = PREFIX_LENGTH + SECRET_LENGTH
_ALPHABET = string.ascii_letters + string.digits


def generate_token() -> str:
    return TOKEN_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(PUBLIC_LENGTH + SECRET_LENGTH))


def token_prefix(token: str) -> str:
    return token[:PREFIX_LENGTH]
