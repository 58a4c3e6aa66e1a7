"""Writes on model-list sources: create, change, refresh, and the source the environment configures.

A refresh reads the list, then applies it (providers/model_lists/apply.py) and
records a `ModelListRefresh` either way. A list that cannot be read (refused,
unreachable, too large, not a JSON array) changes nothing: the registry keeps
what the last good list made of it, and the error is recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from providers.credentials import CredentialUnreadable, decrypt_credential, encrypt_credential
from providers.model_lists.apply import DIFF_KEYS, listed_models_apply
from providers.model_lists.entries import EntryError, ListUnreadable, parse_model_list
from providers.model_lists.fetch import SourceUnreadable, list_read
from providers.model_lists.handles import validate_handle_kinds
from providers.models import ModelListRefresh, ModelListSource, RefreshStatus

logger = logging.getLogger(__name__)

# The source PORTICO_MODEL_LIST_URL configures.
SETTINGS_SOURCE = "env"
# A refresh keeps this many entry errors; a list of thousands of bad entries says as much with the first ones.
ERRORS_KEPT = 200
# Changing these (or the credential) makes a source due at once: what it reads, or how it reads it, is new.
REREAD_FIELDS = frozenset({"url", "base_url", "handle_kinds", "enabled", "credential", "clear_credential"})


def model_list_source_create(*, name: str, url: str, credential: str = "", **fields: Any) -> ModelListSource:
    source = ModelListSource(name=name, url=url, **fields)
    model_list_source_set_credential(source=source, credential=credential)
    source.full_clean()
    source.save()
    return source


def model_list_source_set_credential(*, source: ModelListSource, credential: str) -> None:
    """Encrypt a new credential onto an unsaved change; an empty one removes the stored credential."""
    source.credential_encrypted = encrypt_credential(credential)


def model_list_source_update(
    *, source: ModelListSource, fields: dict[str, Any], credential: str | None = None
) -> ModelListSource:
    """Change a source; a credential of None is kept, an empty one removed. A new address, credential or
    set of rules makes it due at once."""
    reread = credential is not None or any(
        name in REREAD_FIELDS and getattr(source, name) != value for name, value in fields.items()
    )
    for name, value in fields.items():
        setattr(source, name, value)
    if credential is not None:
        model_list_source_set_credential(source=source, credential=credential)
    if reread:
        source.last_refreshed_at = None
    source.full_clean()
    source.save()
    return source


def model_list_source_from_settings(*, due_now: bool = False) -> ModelListSource | None:
    """The source PORTICO_MODEL_LIST_URL configures, made or brought in line with the settings (and, with
    `due_now`, made due whatever its last refresh); None without one. Whether it is enabled is left to the
    operator once it exists."""
    url = settings.PORTICO_MODEL_LIST_URL
    if not url:
        return None
    wanted = {
        "url": url,
        "base_url": settings.PORTICO_MODEL_LIST_BASE_URL,
        "refresh_interval": settings.PORTICO_MODEL_LIST_REFRESH_SECONDS,
    }
    credential = settings.PORTICO_MODEL_LIST_CREDENTIAL
    source = ModelListSource.objects.filter(name=SETTINGS_SOURCE).first()
    if source is None:
        return model_list_source_create(name=SETTINGS_SOURCE, credential=credential, **wanted)
    changed = {name: value for name, value in wanted.items() if getattr(source, name) != value}
    try:
        same_credential = decrypt_credential(source.credential_encrypted) == credential
    except CredentialUnreadable:
        same_credential = False
    if changed or not same_credential:
        model_list_source_update(source=source, fields=changed, credential=None if same_credential else credential)
    if due_now and source.last_refreshed_at is not None:
        ModelListSource.objects.filter(pk=source.pk).update(last_refreshed_at=None)
        source.last_refreshed_at = None
    return source


def model_list_sources_due(*, now: datetime | None = None, settings_source_due: bool = False) -> list[int]:
    """The ids of the enabled sources due for a refresh, the settings' source brought in line first (and
    made due at once with `settings_source_due`, as when a worker starts)."""
    model_list_source_from_settings(due_now=settings_source_due)
    now = now or timezone.now()
    return [source.pk for source in ModelListSource.objects.filter(enabled=True).order_by("pk") if is_due(source, now)]


def is_due(source: ModelListSource, now: datetime) -> bool:
    last = source.last_refreshed_at
    return last is None or last + timedelta(seconds=source.refresh_interval) <= now


def model_list_source_refresh(*, source: ModelListSource, due_only: bool = False) -> ModelListRefresh | None:
    """Read the list and apply it; the refresh as recorded. With `due_only`, None for a source that is not
    due (refreshed meanwhile by another task) or no longer enabled."""
    started = timezone.now()
    if due_only:
        source.refresh_from_db()
        if not source.enabled or not is_due(source, started):
            return None
    refresh = ModelListRefresh(source=source, started_at=started, diff={key: [] for key in DIFF_KEYS})
    try:
        validate_handle_kinds(source.handle_kinds)
        payload = list_read(url=source.url, credential=decrypt_credential(source.credential_encrypted))
        listed, errors = parse_model_list(payload, rules=source.handle_kinds)
    except CredentialUnreadable:
        _failed(refresh, "the stored credential cannot be decrypted with this PORTICO_CREDENTIAL_KEY")
    except ValidationError as exc:
        _failed(refresh, f"the source's handle rules are invalid: {'; '.join(exc.messages)}")
    except (SourceUnreadable, ListUnreadable) as exc:
        _failed(refresh, str(exc))
    else:
        refused = {error.model for error in errors if error.model}
        applied = listed_models_apply(source=source, listed=listed, refused=refused, now=started)
        refresh.diff = applied.diff
        _entry_errors(refresh, sorted(errors + applied.errors, key=lambda error: error.entry))
    refresh.finished_at = timezone.now()
    refresh.save()
    _remember(source, refresh)
    return refresh


def _failed(refresh: ModelListRefresh, error: str) -> None:
    refresh.status = RefreshStatus.FAILED
    refresh.error = error
    logger.warning("model list %s not refreshed: %s", refresh.source.name, error)


def _entry_errors(refresh: ModelListRefresh, errors: list[EntryError]) -> None:
    refresh.status = RefreshStatus.PARTIAL if errors else RefreshStatus.OK
    refresh.entry_errors = [error.as_json() for error in errors[:ERRORS_KEPT]]
    if len(errors) > ERRORS_KEPT:
        refresh.entry_errors.append({"entry": 0, "model": "", "error": f"and {len(errors) - ERRORS_KEPT} more"})
    counts = ", ".join(f"{len(ids)} {key}" for key, ids in refresh.diff.items() if ids) or "no change"
    logger.info("model list %s refreshed: %s, %d entry error(s)", refresh.source.name, counts, len(errors))


def _remember(source: ModelListSource, refresh: ModelListRefresh) -> None:
    """The outcome on the source, written alone (an operator may be editing the source's settings), and
    the history pruned to its newest PORTICO_MODEL_LIST_HISTORY refreshes."""
    if refresh.error:
        summary = refresh.error
    elif refresh.entry_errors:
        summary = f"{len(refresh.entry_errors)} entries not applied; see the refresh"
    else:
        summary = ""
    ModelListSource.objects.filter(pk=source.pk).update(
        last_refreshed_at=refresh.started_at, last_status=refresh.status, last_error=summary
    )
    source.last_refreshed_at, source.last_status, source.last_error = refresh.started_at, refresh.status, summary
    kept = source.refreshes.order_by("-started_at", "-id").values_list("pk", flat=True)[
        : settings.PORTICO_MODEL_LIST_HISTORY
    ]
    source.refreshes.exclude(pk__in=list(kept)).delete()
