"""Portico's request extensions: routing wishes a client adds to an OpenAI request, read and checked once.

Each comes as a body field or as an `x-portico-*` header (the body wins when both
are sent). The body fields are removed before the request is forwarded, so no
upstream ever sees them.

    field                 header                          value
    provider              x-portico-provider              a provider name (pin), or {"order", "only", "ignore",
                                                          "allow_fallbacks"} (the header takes the name or JSON)
    model_family          x-portico-model-family          with `model: "auto"`: a family to choose a model from
    capabilities          x-portico-capabilities          with `model: "auto"`: what the model must do (comma list)
    max_cost_per_token    x-portico-max-cost-per-token    USD; deployments that cost more are left out
    request_id            x-request-id                    echoed as `x-request-id`, kept in the ledger
    models                x-portico-models                public ids tried in order once `model` has failed
    -                     x-portico-timeout               seconds for the whole call, every attempt included

A value Portico cannot read is a 400 in OpenAI's words, naming the parameter.
Most requests carry none of these: `read_extensions` then costs a few dict
lookups and returns the shared `NONE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from providers.facade import CAPABILITIES

FIELDS = ("provider", "model_family", "capabilities", "max_cost_per_token", "request_id", "models")
AUTO = "auto"
MAX_MODELS = 10
MAX_REQUEST_ID = 200
_PROVIDER_KEYS = ("order", "only", "ignore", "allow_fallbacks")


@dataclass(frozen=True, slots=True)
class ProviderWish:
    """OpenRouter's provider object: providers tried first (`order`), the only ones allowed, those never used."""

    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True  # False: only the providers named in `order`

    def admits(self, provider: str) -> bool:
        if provider in self.ignore or (self.only is not None and provider not in self.only):
            return False
        return self.allow_fallbacks or provider in self.order


@dataclass(frozen=True, slots=True)
class Extensions:
    provider: ProviderWish | None = None
    model_family: str = ""
    capabilities: frozenset[str] = frozenset()
    max_cost_per_token: float | None = None
    request_id: str = ""
    models: tuple[str, ...] | None = None  # None: the model's own fallbacks
    timeout: float | None = None


NONE = Extensions()
_HEADERS = {
    "provider": "HTTP_X_PORTICO_PROVIDER",
    "model_family": "HTTP_X_PORTICO_MODEL_FAMILY",
    "capabilities": "HTTP_X_PORTICO_CAPABILITIES",
    "max_cost_per_token": "HTTP_X_PORTICO_MAX_COST_PER_TOKEN",
    "models": "HTTP_X_PORTICO_MODELS",
}
_TIMEOUT_HEADER = "HTTP_X_PORTICO_TIMEOUT"


def read_extensions(body: dict[str, Any], meta: Mapping[str, Any], *, max_timeout: float) -> Extensions:
    """The request's extensions, taken out of `body`; 400 for a value Portico cannot read."""
    raw: dict[str, Any] = {name: body.pop(name) for name in FIELDS if name in body}
    for name, header in _HEADERS.items():
        if name not in raw and header in meta:
            raw[name] = _from_header(name, meta[header])
    timeout = meta.get(_TIMEOUT_HEADER)
    if not raw and timeout is None:
        return NONE
    return Extensions(
        provider=_provider(raw.get("provider")),
        model_family=_string(raw, "model_family", 200),
        capabilities=_capabilities(raw.get("capabilities")),
        max_cost_per_token=_cost(raw.get("max_cost_per_token")),
        request_id=_request_id(_string(raw, "request_id", MAX_REQUEST_ID)),
        models=_models(raw.get("models")),
        timeout=None if timeout is None else _timeout(timeout, max_timeout),
    )


def _request_id(value: str) -> str:
    # Echoed as a response header: printable ASCII only, so no client can add a header line of its own.
    if value.isascii() and value.isprintable():
        return value
    raise InvalidRequest(
        "Invalid 'request_id': expected printable ASCII characters only.", param="request_id", code="invalid_value"
    )


def _from_header(name: str, value: str) -> Any:
    value = value.strip()
    if name == "provider":
        return _json(value, "provider") if value.startswith("{") else value
    if name in ("capabilities", "models"):
        return [item.strip() for item in value.split(",") if item.strip()]
    if name == "max_cost_per_token":
        try:
            return float(value)
        except ValueError:
            raise _invalid(name, "a number") from None
    return value


def _json(value: str, param: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"Invalid '{param}': the header's value is not valid JSON.", param=param, code="invalid_value"
        ) from None


def _invalid(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


def _names(value: Any, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _invalid(param, "an array of strings")
    return tuple(value)


def _provider(value: Any) -> ProviderWish | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return ProviderWish(only=frozenset({value}))
    if not isinstance(value, dict):
        raise _invalid("provider", "a provider name or an object")
    for key in value:
        if key not in _PROVIDER_KEYS:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: provider.{key}",
                param=f"provider.{key}",
                code="unknown_parameter",
            )
    fallbacks = value.get("allow_fallbacks", True)
    if not isinstance(fallbacks, bool):
        raise _invalid("provider.allow_fallbacks", "a boolean")
    only = value.get("only")
    return ProviderWish(
        order=_names(value.get("order", []), "provider.order"),
        only=None if only is None else frozenset(_names(only, "provider.only")),
        ignore=frozenset(_names(value.get("ignore", []), "provider.ignore")),
        allow_fallbacks=fallbacks,
    )


def _string(raw: dict[str, Any], param: str, longest: int) -> str:
    value = raw.get(param, "")
    if not isinstance(value, str):
        raise _invalid(param, "a string")
    if len(value) > longest:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length {longest}, "
            f"but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def _capabilities(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    names = _names(value, "capabilities")
    for name in names:
        if name not in CAPABILITIES:
            choices = ", ".join(f"'{item}'" for item in CAPABILITIES)
            raise InvalidRequest(
                f"Invalid value: '{name}'. Supported values are: {choices}.", param="capabilities", code="invalid_value"
            )
    return frozenset(names)


def _cost(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid("max_cost_per_token", "a number")
    if value < 0:
        raise InvalidRequest(
            f"Invalid 'max_cost_per_token': decimal below minimum value. Expected a value >= 0, but got {value:g} "
            "instead.",
            param="max_cost_per_token",
            code="decimal_below_min_value",
        )
    return float(value)


def _models(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _names(value, "models")
    if len(names) > MAX_MODELS:
        raise InvalidRequest(
            f"Invalid 'models': array too long. Expected an array with maximum length {MAX_MODELS}, "
            f"but got an array with length {len(names)} instead.",
            param="models",
            code="array_above_max_length",
        )
    return names


def _timeout(value: str, most: float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= most):
        raise InvalidRequest(
            f"Invalid 'x-portico-timeout': expected a number of seconds above 0 and at most {most:g}, got {value!r}.",
            param="x-portico-timeout",
            code="invalid_value",
        )
    return seconds
