"""A setup file's text: YAML in and out, and the `${ENV_VAR}` references it holds for secrets.

Reading follows YAML 1.2 on booleans: only `true` and `false` are booleans, so a
queue mode of `off` (or a model named `no`) stays the text it looks like, as it
does not in YAML 1.1. Writing is block style in the order the schema gives, so
the same setup always makes the same file and a change makes a small git diff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

# ${NAME}: resolved from the environment when the file is applied; `$${` writes a literal `${`.
REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


class FileUnreadable(Exception):
    """Not YAML, or not a mapping at its top."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load(text: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise FileUnreadable(f"not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FileUnreadable("the file must be a mapping of sections (providers, models, tenants, ...)")
    return raw


def dump(document: Mapping[str, Any], *, header: str = "") -> str:
    body = yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return header + body


def resolve_references(raw: Any, environ: Mapping[str, str] | None = None) -> tuple[Any, list[str]]:
    """`raw` with every `${NAME}` in its text replaced by the variable's value, and a problem for each one unset."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    resolved = _resolve(raw, "", environ, problems)
    return resolved, problems


def _resolve(value: Any, path: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, _join(path, str(key)), environ, problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, f"{path}[{index}]", environ, problems) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in environ:
            problems.append(f"{path}: the environment variable {name} is not set")
            return ""
        return environ[name]

    return REFERENCE.sub(substitute, value)


def reference(name: str) -> str:
    return "${" + name + "}"


def escape(text: str) -> str:
    """Text written as it is: what would read as a reference (or as an escaped one) gets one more `$`."""
    return REFERENCE.sub(lambda match: "$" + match.group(0), text)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
