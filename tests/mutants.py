"""Every way of breaking one field of a JSON value: what the robustness tests feed the translations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# What a broken field may hold instead: each JSON type, and numbers a count cannot be.
REPLACEMENTS: tuple[Any, ...] = (None, 0, -3, 2.5, 2**64 - 1, True, "", "x", [], ["x"], [{}], {}, {"x": 1})


def mutants(value: Any) -> Iterator[tuple[str, Any]]:
    """Every way of breaking one field of `value` (the value itself included), with the path broken."""
    for replacement in REPLACEMENTS:
        if replacement != value or type(replacement) is not type(value):
            yield f"= {replacement!r}", replacement
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list | tuple):
        children = list(enumerate(value))
    for key, child in children:
        yield f"[{key!r}] removed", _without(value, key)
        for path, broken in mutants(child):
            yield f"[{key!r}]{path}", _with(value, key, broken)


def _with(value: Any, key: Any, child: Any) -> Any:
    if isinstance(value, dict):
        return {**value, key: child}
    return [*value[:key], child, *value[key + 1 :]]


def _without(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return {name: child for name, child in value.items() if name != key}
    return [*value[:key], *value[key + 1 :]]
