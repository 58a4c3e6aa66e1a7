"""A model list's document, read into listed models and one error per entry that cannot be used.

The document is a JSON array of entries:

    {"model_version": "claude-3-7-sonnet-20250219", "model_family": "claude-3",
     "handle": "/anthropic/v1/messages", "prompt_price_1k": 0.003, "completion_price_1k": 0.015}

`model_family` may be missing or null. Prices are USD per thousand tokens; they
are read as decimals straight from the JSON text (never through a float) and
become USD per million tokens, at the six decimal places prices are kept in.
A document that is not a JSON array is unreadable as a whole; a bad entry
is reported and the others are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.model_lists.handles import base_path, handle_problem, kind_for, model_mismatch

MODEL_ID_MAX = 200  # PublicModel.public_id and ModelRoute.upstream_model
FAMILY_MAX = 100  # PublicModel.model_family
# What a price per million tokens may hold: billing keeps them as max_digits=12, decimal_places=6.
PER_MILLION_PLACES = Decimal("0.000001")
PER_MILLION_MAX = Decimal("999999.999999")
_SHOWN = 80  # characters of a value quoted in an error


class ListUnreadable(ValueError):
    """The document as a whole is not a model list; nothing of it is applied."""


@dataclass(frozen=True, slots=True)
class ListedModel:
    model_id: str  # the public model id and the upstream model name
    family: str  # "" when the list gives none
    handle: str
    kind: str
    base_path: str  # the handle without its kind's chat path: the provider's path under the source's base URL
    input_per_million: Decimal
    output_per_million: Decimal

    @property
    def prices(self) -> tuple[Decimal, Decimal]:
        return self.input_per_million, self.output_per_million


@dataclass(frozen=True, slots=True)
class EntryError:
    entry: int  # its position in the list, from 1
    model: str  # its model_version when it has a usable one, else ""
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "model": self.model, "error": self.error}


class _Refused(ValueError):
    pass


def _no_constants(name: str) -> None:
    raise ListUnreadable(f"the list is not valid JSON: {name} is not a number")


def parse_model_list(payload: bytes, *, rules: list[dict[str, str]]) -> tuple[list[ListedModel], list[EntryError]]:
    """The usable entries of `payload`, and an error for each other one; raises ListUnreadable."""
    try:
        document = json.loads(payload, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ListUnreadable):
            raise
        raise ListUnreadable("the list is not valid JSON") from None
    if not isinstance(document, list):
        raise ListUnreadable(f"the list is a JSON {type(document).__name__}, not an array")
    listed: list[ListedModel] = []
    errors: list[EntryError] = []
    seen: set[str] = set()
    for position, raw in enumerate(document, start=1):
        model_id = _model_id(raw)
        try:
            if model_id in seen:
                raise _Refused("the list names this model more than once; the first entry is used")
            listed.append(_entry(raw, model_id, rules))
            seen.add(model_id)
        except _Refused as exc:
            errors.append(EntryError(position, model_id, str(exc)))
    return listed, errors


def _model_id(raw: Any) -> str:
    value = raw.get("model_version") if isinstance(raw, dict) else None
    usable = isinstance(value, str) and 0 < len(value) <= MODEL_ID_MAX and value.isprintable() and not value.isspace()
    return value if usable and value.strip() == value else ""


def _entry(raw: Any, model_id: str, rules: list[dict[str, str]]) -> ListedModel:
    if not isinstance(raw, dict):
        raise _Refused("the entry is not a JSON object")
    if not model_id:
        raise _Refused(f"model_version must be 1 to {MODEL_ID_MAX} printable characters, without outer spaces")
    family = raw.get("model_family") or ""
    if not isinstance(family, str) or len(family) > FAMILY_MAX or not family.isprintable():
        raise _Refused(f"model_family must be at most {FAMILY_MAX} printable characters")
    handle = raw.get("handle")
    if not isinstance(handle, str) or not handle:
        raise _Refused("handle is missing")
    problem = handle_problem(handle)
    if problem:
        raise _Refused(problem)
    kind = kind_for(handle, rules)
    if not kind:
        raise _Refused(f"no rule of this source says which kind of provider serves {_shown(handle)}")
    path = base_path(handle, kind)
    if not path:
        raise _Refused(f"{_shown(handle)} is of kind {kind}, but does not end with that kind's chat path")
    mismatch = model_mismatch(handle, kind, model_id)
    if mismatch:
        raise _Refused(mismatch)
    return ListedModel(
        model_id=model_id,
        family=family,
        handle=handle,
        kind=kind,
        base_path=path,
        input_per_million=_per_million(raw, "prompt_price_1k"),
        output_per_million=_per_million(raw, "completion_price_1k"),
    )


def _per_million(raw: dict[str, Any], name: str) -> Decimal:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Refused(f"{name} must be a number")
    try:
        per_million = (Decimal(value) * 1000).quantize(PER_MILLION_PLACES)
    except InvalidOperation:
        raise _Refused(f"{name} is out of range") from None
    if per_million < 0:
        raise _Refused(f"{name} must not be negative")
    if per_million > PER_MILLION_MAX:
        raise _Refused(f"{name} is over {PER_MILLION_MAX / 1000} USD per thousand tokens")
    return per_million


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")
