"""API key format, hashing and comparison.

A key reads `pk-` + 8 public characters + 40 secret characters. The first 11
characters (`pk-` and the public part) are stored in clear as the prefix, so a
key can be found by its prefix and recognised in a config file; the whole key
is stored only as an HMAC-SHA256 keyed with PORTICO_KEY_HASH_SECRET, so a
database dump alone cannot be used to call Portico.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from django.conf import settings

KEY_PREFIX = "pk-"
PUBLIC_LENGTH = 8
SECRET_LENGTH = 40
PREFIX_LENGTH = len(KEY_PREFIX) + PUBLIC_LENGTH
KEY_LENGTH = PREFIX_LENGTH + SECRET_LENGTH
_ALPHABET = string.ascii_letters + string.digits
_ALPHABET_SET = frozenset(_ALPHABET)


def generate_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(PUBLIC_LENGTH + SECRET_LENGTH))
    return KEY_PREFIX + body


def is_well_formed(key: str) -> bool:
    return len(key) == KEY_LENGTH and key.startswith(KEY_PREFIX) and _ALPHABET_SET.issuperset(key[len(KEY_PREFIX) :])


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def key_digest(key: str) -> str:
    secret = settings.PORTICO_KEY_HASH_SECRET.encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def digest_matches(key: str, digest: str) -> bool:
    return hmac.compare_digest(key_digest(key), digest)
