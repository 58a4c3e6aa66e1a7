"""Keeping a provider's secrets out of everything a client sees.

A provider's secrets are its credential and the values of its extra headers.
Upstreams quote them back in surprising places: an error's `code`, a message
that echoes the request's `Authorization`, even an answer's content. Every
piece of an upstream answer that reaches a client passes through one
`Redactor`, built once per provider when the route snapshot is rebuilt.

Besides a secret quoted whole, a secret quoted in part is caught when the part
is long enough to identify it: its first `PREFIX` characters, and the rest of
the token that follows them. Values shorter than `MIN_LENGTH` are not searched
for: they identify nothing, and replacing them would garble ordinary answers.

The common case, an answer quoting no secret, costs one substring search per
secret and returns the payload untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
MIN_LENGTH = 8
# A quoted part this long is the secret's: the rest of the token that follows it is taken too.
PREFIX = 20
# What a credential's characters look like: the tail of a partly quoted one stops at anything else.
_TOKEN_TAIL = r"[A-Za-z0-9._~+/=\-]*"


class Redactor:
    __slots__ = ("_needles", "_pattern", "_text_needles", "_text_pattern")

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({value for value in secrets if len(value) >= MIN_LENGTH}, key=len, reverse=True)
        # A secret's prefix is a substring of the secret, so one search finds it whole or in part.
        self._text_needles = tuple(value[:PREFIX] for value in values)
        self._needles = tuple(needle.encode() for needle in self._text_needles)
        alternatives = [re.escape(value) for value in values]
        alternatives += [re.escape(value[:PREFIX]) + _TOKEN_TAIL for value in values if len(value) > PREFIX]
        source = "|".join(alternatives)
        self._text_pattern = re.compile(source) if source else None
        self._pattern = re.compile(source.encode()) if source else None

    def __bool__(self) -> bool:
        return bool(self._needles)

    def bytes(self, payload: bytes) -> bytes:
        """`payload` with every secret replaced; the same object when it quotes none."""
        for needle in self._needles:  # a plain loop: this runs for every stream event
            if needle in payload:
                assert self._pattern is not None
                return self._pattern.sub(REDACTED.encode(), payload)
        return payload

    def text(self, value: str) -> str:
        for needle in self._text_needles:
            if needle in value:
                assert self._text_pattern is not None
                return self._text_pattern.sub(REDACTED, value)
        return value

    def deep(self, value: Any) -> Any:
        """Every string in a decoded JSON value redacted (keys included): for the rare error event."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(key)): self.deep(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.deep(item) for item in value]
        return value


NO_SECRETS = Redactor(())
