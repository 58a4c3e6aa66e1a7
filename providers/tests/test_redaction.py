"""The one function that keeps a provider's secrets out of what a client sees."""

from __future__ import annotations

import pytest

from providers.redaction import NO_SECRETS, Redactor

CREDENTIAL = "sk-proj-UPSTREAMsecret1234567890abcdef"
HEADER_VALUE = "acct-0123456789abcdef"
REDACTOR = Redactor([CREDENTIAL, HEADER_VALUE, "short"])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(f"key {CREDENTIAL}.", "key [redacted].", id="whole"),
        pytest.param(f"Bearer {CREDENTIAL}", "Bearer [redacted]", id="as a bearer token"),
        pytest.param(f'"{CREDENTIAL[:24]}"', '"[redacted]"', id="its first characters"),
        pytest.param(f"{CREDENTIAL[:22]}XYZ, then", "[redacted], then", id="a prefix and a changed tail"),
        pytest.param(f"{HEADER_VALUE} and {HEADER_VALUE}", "[redacted] and [redacted]", id="a header value, twice"),
        pytest.param("a short value stays", "a short value stays", id="too short to be a secret"),
        pytest.param(f"{CREDENTIAL[:12]} is not enough", f"{CREDENTIAL[:12]} is not enough", id="a short part"),
    ],
)
def test_it_redacts_every_secret_whole_or_in_identifying_part(payload: str, expected: str) -> None:
    assert REDACTOR.text(payload) == expected
    assert REDACTOR.bytes(payload.encode()) == expected.encode()


def test_a_payload_quoting_no_secret_is_returned_as_it_is() -> None:
    payload = b'{"choices": [{"message": {"content": "nothing to see"}}]}'

    assert REDACTOR.bytes(payload) is payload


def test_a_redacted_json_string_stays_json() -> None:
    payload = f'{{"code": "{CREDENTIAL[:25]}", "next": 1}}'

    assert REDACTOR.text(payload) == '{"code": "[redacted]", "next": 1}'


def test_deep_redacts_every_string_of_a_decoded_value() -> None:
    value = {"error": {"message": f"m {CREDENTIAL}", "code": HEADER_VALUE, "param": None, "list": [CREDENTIAL, 3]}}

    assert REDACTOR.deep(value) == {
        "error": {"message": "m [redacted]", "code": "[redacted]", "param": None, "list": ["[redacted]", 3]}
    }


def test_no_secrets_redacts_nothing() -> None:
    assert not NO_SECRETS
    assert NO_SECRETS.bytes(CREDENTIAL.encode()) == CREDENTIAL.encode()
