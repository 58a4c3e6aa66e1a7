"""What an entry keeps of an object's values: secrets, by their field names, never."""

from __future__ import annotations

import pytest

from audit.values import REDACTED, changes, is_secret, redacted


@pytest.mark.parametrize(
    "name", ["credential_encrypted", "extra_headers_encrypted", "secret_encrypted", "digest", "password"]
)
def test_secret_fields_are_known_by_their_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", ["credential_header", "prefix", "name", "base_url", "revoked_at"])
def test_other_fields_are_kept(name: str) -> None:
    assert not is_secret(name)


def test_a_secret_is_replaced_and_an_empty_one_stays_empty() -> None:
    assert redacted({"digest": "ab12", "credential_encrypted": "", "name": "ci"}) == {
        "digest": REDACTED,
        "credential_encrypted": "",
        "name": "ci",
    }


def test_changes_keep_only_the_fields_that_differ() -> None:
    before, after = changes({"a": 1, "b": 2, "c": None}, {"a": 1, "b": 3, "c": "x"})

    assert (before, after) == ({"b": 2, "c": None}, {"b": 3, "c": "x"})
