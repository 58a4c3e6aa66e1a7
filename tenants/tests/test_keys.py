"""Key format, the keyed digest, and constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from django.test import override_settings

from tenants.keys import (
    KEY_LENGTH,
    PREFIX_LENGTH,
    digest_matches,
    generate_key,
    is_well_formed,
    key_digest,
    key_prefix,
)
from tenants.models import ApiKey
from tenants.tests.factories import IssuedKey

KEY = "pk-AbCd1234" + "s" * 40


def test_a_generated_key_is_pk_then_48_letters_and_digits() -> None:
    key = generate_key()

    assert re.fullmatch(r"pk-[A-Za-z0-9]{48}", key)
    assert len(key) == KEY_LENGTH == 51
    assert is_well_formed(key)


def test_generated_keys_differ() -> None:
    keys = {generate_key() for _ in range(50)}

    assert len(keys) == 50
    assert len({key_prefix(key) for key in keys}) == 50


def test_the_prefix_is_pk_and_the_public_part() -> None:
    assert key_prefix(KEY) == "pk-AbCd1234"
    assert PREFIX_LENGTH == 11


@pytest.mark.parametrize(
    "key",
    [
        "",
        "pk-",
        KEY[:-1],
        KEY + "x",
        "sk-" + KEY[3:],
        "PK-" + KEY[3:],
        KEY[:-1] + "-",
        KEY[:-1] + "_",
        KEY[:-1] + "é",
        KEY[:-1] + " ",
        " " + KEY[:-1],
    ],
    ids=[
        "empty",
        "prefix-only",
        "one-short",
        "one-long",
        "openai-prefix",
        "upper-case-prefix",
        "dash",
        "underscore",
        "non-ascii",
        "trailing-space",
        "leading-space",
    ],
)
def test_it_recognises_a_malformed_key(key: str) -> None:
    assert not is_well_formed(key)


def test_the_digest_is_an_hmac_sha256_of_the_whole_key_keyed_with_the_hash_secret() -> None:
    with override_settings(PORTICO_KEY_HASH_SECRET="hash-secret-one"):
        digest = key_digest(KEY)

    assert digest == hmac.new(b"hash-secret-one", KEY.encode(), hashlib.sha256).hexdigest()
    assert digest != hashlib.sha256(KEY.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_the_digest_changes_with_the_hash_secret() -> None:
    with override_settings(PORTICO_KEY_HASH_SECRET="hash-secret-one"):
        first = key_digest(KEY)
        again = key_digest(KEY)
    with override_settings(PORTICO_KEY_HASH_SECRET="hash-secret-two"):
        second = key_digest(KEY)

    assert first == again
    assert first != second


def test_a_digest_made_under_another_hash_secret_does_not_match() -> None:
    with override_settings(PORTICO_KEY_HASH_SECRET="hash-secret-one"):
        digest = key_digest(KEY)
    with override_settings(PORTICO_KEY_HASH_SECRET="hash-secret-two"):
        assert not digest_matches(KEY, digest)


def test_the_digest_covers_the_secret_part() -> None:
    other = KEY[:-1] + "t"

    assert key_prefix(other) == key_prefix(KEY)
    assert key_digest(other) != key_digest(KEY)


def test_digest_matches_the_right_key_only() -> None:
    digest = key_digest(KEY)

    assert digest_matches(KEY, digest)
    assert not digest_matches(KEY[:-1] + "t", digest)


def test_it_compares_digests_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("tenants.keys.hmac.compare_digest", spy)
    digest = key_digest(KEY)

    assert digest_matches(KEY, digest)
    assert not digest_matches(KEY[:-1] + "t", digest)
    assert len(calls) == 2
    assert all(stored == digest for _, stored in calls)


@pytest.mark.django_db
def test_a_created_key_is_stored_only_as_its_prefix_and_digest(
    owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    for issued in (owner, teammate, outsider):
        stored = ApiKey.objects.get(pk=issued.api_key.pk)
        assert stored.prefix == key_prefix(issued.plaintext)
        assert digest_matches(issued.plaintext, stored.digest)
        row = [str(value) for value in ApiKey.objects.filter(pk=stored.pk).values().get().values()]
        assert not any(issued.plaintext in value for value in row)
        assert not any(issued.plaintext[PREFIX_LENGTH:] in value for value in row)
    assert len({owner.plaintext, teammate.plaintext, outsider.plaintext}) == 3
    assert owner.api_key.tenant_id == teammate.api_key.tenant_id != outsider.api_key.tenant_id
