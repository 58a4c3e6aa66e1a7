"""What applying a file changes, entry by entry and field by field, and how that reads.

    providers
      + openai-prod                          created
      ~ azure-eu                             changed:
          read_timeout: 120.0 → 60.0
          credential: changed                (a secret: never shown)
          deployments[azure-eu/gpt-4o]: added
      - legacy: deactivated                  --prune, for an entry the file leaves out
      · old: not in the file, kept           the same, without --prune

An entry is matched by its key (schema.py); an entry the file leaves out is
retired only with `--prune`, as its shape says: deactivated where it keeps
history (providers, models, deployments, tenants), disabled (sources), deleted
(rate limits, budgets) or, for a price, withdrawn if it has not started. A
price in effect is history: the file may not change it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.setup_config.schema import SECTIONS, ConfigInvalid, Document, Entry, Field, Shape


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: str
    after: str
    note: bool = False  # says what stays as it is; changes nothing


@dataclass
class ItemPlan:
    section: str
    key: str
    action: str  # create, change, retire, keep, or note (only notes)
    desired: Entry | None = None
    current: Entry | None = None
    changes: list[FieldChange] = field(default_factory=list)


RETIRED = {"deactivate": "deactivated", "disable": "disabled", "delete": "deleted", "withdraw": "withdrawn"}


def plan(current: Document, desired: Document, *, prune: bool, now: datetime) -> list[ItemPlan]:
    """The changes that make `current` match `desired`, section by section, in the file's order."""
    problems: list[str] = []
    items: list[ItemPlan] = []
    for section, shape in SECTIONS.items():
        wanted = desired.sections.get(section)
        if wanted is None:
            continue
        stored = {entry.key: entry for entry in current.entries(section)}
        for entry in wanted:
            old = stored.pop(entry.key, None)
            if old is None:
                items.append(ItemPlan(section, entry.key, "create", desired=entry))
                continue
            changes = _compare(shape, old, entry, "", prune, now, problems)
            if changes:
                action = "change" if any(not change.note for change in changes) else "note"
                items.append(ItemPlan(section, entry.key, action, desired=entry, current=old, changes=changes))
        for old in stored.values():
            if _live(shape, old):
                items.append(ItemPlan(section, old.key, "retire" if prune else "keep", current=old))
    if problems:
        raise ConfigInvalid(problems)
    return items


def _live(shape: Shape, entry: Entry) -> bool:
    """Whether retiring the entry would change anything: one already switched off is left alone."""
    if shape.retire == "deactivate":
        return bool(entry.values["active"])
    if shape.retire == "disable":
        return bool(entry.values["enabled"])
    return True


def _compare(
    shape: Shape, old: Entry, new: Entry, prefix: str, prune: bool, now: datetime, problems: list[str]
) -> list[FieldChange]:
    changes = [
        FieldChange(prefix + spec.name, *_shown(spec, old.values[spec.name], new.values[spec.name]))
        for spec in shape.fields
        if old.values[spec.name] != new.values[spec.name]
    ]
    if shape.retire == "withdraw" and changes and old.values["effective_from"] <= now:
        problems.append(
            f"{new.path}: the price from {old.key} is in effect, and prices are history: "
            "add a new price with a later effective_from instead"
        )
    for child in shape.children:
        stored = {entry.key: entry for entry in old.children.get(child.name, [])}
        for entry in new.children.get(child.name, []):
            name = f"{prefix}{child.name}" if child.single else f"{prefix}{child.name}[{entry.key}]"
            before = stored.pop(entry.key, None)
            if before is None:
                changes.append(FieldChange(name, "", "added"))
            else:
                changes += _compare(child.shape, before, entry, f"{name}.", prune, now, problems)
        for entry in stored.values():
            name = f"{prefix}{child.name}" if child.single else f"{prefix}{child.name}[{entry.key}]"
            change = _left_out(child.shape, entry, name, prune, now)
            if change is not None:
                changes.append(change)
    return changes


def _left_out(shape: Shape, entry: Entry, name: str, prune: bool, now: datetime) -> FieldChange | None:
    if not _live(shape, entry):
        return None
    if shape.retire == "withdraw" and entry.values["effective_from"] <= now:
        return FieldChange(name, "", "not in the file; in effect, so kept as history", note=True)
    if prune:
        return FieldChange(name, "", RETIRED[shape.retire])
    return FieldChange(name, "", "not in the file, kept", note=True)


def _shown(spec: Field, before: Any, after: Any) -> tuple[str, str]:
    if spec.secret and isinstance(before, dict) and isinstance(after, dict):
        # Header names may be shown, their values never.
        if sorted(before) == sorted(after):
            return "", "values changed"
        return _text(sorted(before)), _text(sorted(after))
    if spec.secret:
        return "", "changed" if after else "removed"
    return _text(spec.dump(before)), _text(spec.dump(after))


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- reading a plan ---------------------------------------------------------------------------------------------


def render(items: list[ItemPlan], *, dry_run: bool) -> str:
    if not items:
        return "No changes: the database matches the file.\n"
    lines: list[str] = []
    for section, shape in SECTIONS.items():
        mine = [item for item in items if item.section == section]
        if mine:
            lines.append(section)
            lines += [line for item in mine for line in _item_lines(item, shape)]
    lines.append(_summary(items, dry_run=dry_run))
    return "\n".join(lines) + "\n"


def _item_lines(item: ItemPlan, shape: Shape) -> list[str]:
    if item.action == "create":
        return [f"  + {item.key}"]
    if item.action == "retire":
        return [f"  - {item.key}: {RETIRED[shape.retire]}"]
    if item.action == "keep":
        return [f"  · {item.key}: not in the file, kept (--prune: {RETIRED[shape.retire]})"]
    mark = "~" if item.action == "change" else "·"
    return [f"  {mark} {item.key}"] + [f"      {_change_line(change)}" for change in item.changes]


def _change_line(change: FieldChange) -> str:
    if not change.before:
        return f"{change.name}: {change.after}"
    return f"{change.name}: {change.before} → {change.after}"


def _summary(items: list[ItemPlan], *, dry_run: bool) -> str:
    counts = {action: sum(1 for item in items if item.action == action) for action in ("create", "change", "retire")}
    kept = sum(1 for item in items if item.action == "keep")
    parts = [f"{counts['create']} to create", f"{counts['change']} to change", f"{counts['retire']} to retire"]
    said = ", ".join(parts) + (f"; {kept} not in the file, kept" if kept else "")
    if not any(counts.values()):
        said = "Nothing to change" + (f"; {kept} not in the file, kept" if kept else "")
    return said + (". Dry run: nothing was applied." if dry_run else ".")


def has_changes(items: list[ItemPlan]) -> bool:
    return any(item.action in {"create", "change", "retire"} for item in items)
