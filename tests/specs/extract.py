"""Write the OpenAI schemas the tests check answers against, from OpenAI's published OpenAPI document.

    python tests/specs/extract.py path/to/openapi.yaml > tests/specs/openai-schemas.json

The document (github.com/openai/openai-openapi, MIT licensed) is 3 MB of YAML; the tests need a few
components and what they refer to. OpenAPI 3.0's `nullable: true` becomes a JSON Schema union with null,
so the output validates with any Draft 2020-12 validator.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

COMPONENTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "Model",
    "Response",  # the Responses API's `response` object
    "ResponseStreamEvent",  # every event of a Responses stream, one component per event type
)
PREFIX = "#/components/schemas/"


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(PREFIX) :]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def extract(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    wanted, todo = set(), list(COMPONENTS)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(_refs(schemas[name]))
    return {"components": {"schemas": {name: _nullable(schemas[name]) for name in sorted(wanted)}}}


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        spec = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    json.dump(extract(spec), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
