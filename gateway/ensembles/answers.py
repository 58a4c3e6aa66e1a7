"""Judging a whole chat completion: is it acceptable (cascade), and what does it say (vote).

An answer is not acceptable, and a cascade escalates, when (the word is the one
`x-portico-ensemble` shows):

| reason            | the answer                                                              |
|-------------------|-------------------------------------------------------------------------|
| `error-<status>`  | failed, or came back with a non-2xx status                              |
| `unreadable`      | is not a chat completion                                                |
| `refusal`         | sets `message.refusal`, or is short (<= REFUSAL_MAX_CHARS) and opens    |
|                   | with one of REFUSAL_OPENINGS (case, spacing and curly quotes ignored)   |
| `length`          | has `finish_reason` "length": it was cut off                            |
| `content_filter`  | has `finish_reason` "content_filter"                                    |
| `empty`           | has no text and no tool call                                            |
| `response_format` | is not a JSON object for `json_object`, or fails the `json_schema`      |

Only the first choice is judged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from gateway.ensembles.calls import Outcome

# Only short answers: a long one that opens with an apology usually goes on to help.
REFUSAL_OPENINGS = (
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "sorry, but i can't",
    "sorry, i can't",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "i'm not able to help",
    "i won't be able to help",
)
REFUSAL_MAX_CHARS = 200

Check = Callable[[str], bool]


def escalation(outcome: Outcome, check: Check | None = None) -> str:
    """Why a cascade moves on from this answer (one word, for the header), or "" when it is acceptable."""
    if not outcome.ok:
        return f"error-{outcome.status}"
    choice = first_choice(outcome.body)
    message = choice.get("message") if choice is not None else None
    if choice is None or not isinstance(message, dict):
        return "unreadable"
    content = message.get("content")
    text = content.strip() if isinstance(content, str) else ""
    if message.get("refusal"):
        return "refusal"
    if choice.get("finish_reason") in ("length", "content_filter"):
        return str(choice["finish_reason"])
    if not text and not (message.get("tool_calls") or message.get("function_call")):
        return "empty"
    opening = " ".join(text.split()).casefold().replace("\u2019", "'")
    if len(opening) <= REFUSAL_MAX_CHARS and opening.startswith(REFUSAL_OPENINGS):
        return "refusal"
    if check is not None and text and not check(text):
        return "response_format"
    return ""


def first_choice(body: bytes) -> dict[str, Any] | None:
    try:
        choice = orjson.loads(body)["choices"][0]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return choice if isinstance(choice, dict) else None


def answer_check(request_body: dict[str, Any]) -> Check | None:
    """What the request's `response_format` asks of the answer's text; None when it asks nothing checkable."""
    response_format = request_body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return lambda text: isinstance(parse_json(text), dict)
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if kind == "json_schema" and isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return None
    is_valid = _schema_check(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    if is_valid is None:
        return None
    return lambda text: is_valid(parse_json(text))


NOT_JSON = object()


def parse_json(text: str) -> Any:
    """The JSON value of `text`, or NOT_JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return NOT_JSON


@functools.lru_cache(maxsize=128)
def _schema_check(schema_json: bytes) -> Callable[[Any], bool] | None:
    """A validator for the schema, built once per distinct schema (checking a schema costs milliseconds)."""
    # Imported here: jsonschema takes 0.2 s to import, and most processes never cascade.
    import referencing.exceptions
    from jsonschema import exceptions, validators

    schema = orjson.loads(schema_json)
    base = validators.validator_for(schema)
    try:
        base.check_schema(schema)
    except exceptions.SchemaError:
        return None  # the upstream rejects such a schema itself; there is nothing to hold the answer to
    validator = _without_patterns(base)(schema)

    def is_valid(instance: Any) -> bool:
        if instance is NOT_JSON:
            return False
        try:
            return bool(validator.is_valid(instance))
        except referencing.exceptions.Unresolvable:
            return True  # a remote $ref is never fetched; the answer gets the benefit of the doubt

    return is_valid


@functools.cache
def _without_patterns(base: Any) -> Any:
    # A tenant's `pattern` run on model output could backtrack for seconds on the
    # event loop and stall every call of the process; strict upstreams enforce it.
    from jsonschema import validators

    return validators.extend(base, {"pattern": lambda *_: None})
