"""OpenAI's own schemas for the answers Portico gives, to validate against (see tests/specs/extract.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

SCHEMAS = Path(__file__).parent / "specs" / "openai-schemas.json"


@functools.cache
def _registry() -> referencing.Registry:
    document = json.loads(SCHEMAS.read_text())
    resource = referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT202012)
    return referencing.Registry().with_resource("openai", resource)


def schema(component: str) -> dict[str, Any]:
    """The component as it stands in the document (its references unresolved)."""
    return json.loads(SCHEMAS.read_text())["components"]["schemas"][component]


@functools.cache
def validator(component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"openai#/components/schemas/{component}"}, registry=_registry())


def assert_valid(component: str, instance: Any) -> None:
    errors = sorted(validator(component).iter_errors(instance), key=lambda error: list(error.path))
    assert not errors, f"not a valid {component}: " + "; ".join(
        f"{'/'.join(map(str, error.path))}: {error.message}" for error in errors
    )
