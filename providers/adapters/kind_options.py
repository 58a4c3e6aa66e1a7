"""A kind's own settings, kept in `Provider.options` (one JSON object) and validated by the kind.

Each adapter declares its options as `OptionField`s; `clean_options` is the single validator the
admin, the management API and setup as code all reach through `Provider.clean()`. An option the
kind does not know is refused, so a misspelt key is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["NO_OPTIONS", "InvalidOptions", "OptionField", "clean_options", "with_defaults"]


class InvalidOptions(ValueError):
    """The options do not suit the kind; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class OptionField:
    type: type[bool] | type[str] | type[int]
    default: bool | str | int
    help: str


# The options of a kind that has none.
NO_OPTIONS: Mapping[str, OptionField] = MappingProxyType({})


def clean_options(fields: Mapping[str, OptionField], options: Any, *, label: str) -> dict[str, Any]:
    """The options as stored: only known keys, each of its declared type; defaults are not written."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidOptions("Options must be a JSON object.")
    unknown = sorted(str(key) for key in options if key not in fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise InvalidOptions(f"Unknown option(s) for {label}: {', '.join(unknown)}. Known: {known}.")
    for key, value in options.items():
        expected = fields[key].type
        # bool is an int in Python; an integer option must not accept true/false, nor a flag 0/1.
        if type(value) is not expected:
            raise InvalidOptions(f"Option {key!r} must be {_type_name(expected)}, not {_type_name(type(value))}.")
    return dict(options)


def with_defaults(fields: Mapping[str, OptionField], options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option the kind declares, the stored value or its default: what the hot path reads."""
    return {key: options.get(key, spec.default) for key, spec in fields.items()}


def _type_name(kind: type) -> str:
    return {bool: "true or false", str: "a string", int: "an integer"}.get(kind, kind.__name__)
