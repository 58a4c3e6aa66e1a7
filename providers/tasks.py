"""Celery tasks of the providers app: thin, each takes ids and calls a service.

The periodic ones (model_list_sources_refresh, provider_discovery_run,
deployment_health_probe) are scheduled by name in the project's one schedule
(gateway/schedule.py) and are not retried: their next run is never far. A
source's refresh that finds the database away is retried with the project's
policy (gateway/tasks_base.py), spelled out here as providers may not import
the gateway. Tasks queue others with `.delay()`, which goes to the broker, or
without one to the process's own background threads, as `enqueue` does.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.module_loading import import_string

from providers.discovery import discovery_run
from providers.model_lists.services import model_list_source_refresh as refresh_source
from providers.model_lists.services import model_list_sources_due
from providers.models import ModelListSource
from providers.probes import deployment_probes_run

logger = logging.getLogger(__name__)

# gateway.tasks_base's policy for the failures that may pass here: the database away for a while.
_RETRIED: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="providers.tasks.model_list_sources_refresh", acks_late=True)
def model_list_sources_refresh(at_start: bool = False) -> list[int]:
    """Queue a refresh of each enabled source that is due; at a worker's start, the settings' source too."""
    due = model_list_sources_due(settings_source_due=at_start)
    for source_id in due:
        model_list_source_refresh.delay(source_id, due_only=True)
    return due


@shared_task(name="providers.tasks.model_list_source_refresh", **_RETRIED)
def model_list_source_refresh(source_id: int, due_only: bool = False) -> str:
    source = ModelListSource.objects.filter(pk=source_id).first()
    if source is None:
        return "gone"
    refresh = refresh_source(source=source, due_only=due_only)
    return "not due" if refresh is None else refresh.status


@shared_task(name="providers.tasks.provider_discovery_run", acks_late=True)
def provider_discovery_run(provider_ids: list[int] | None = None) -> dict[str, int]:
    outcomes = discovery_run(provider_ids=provider_ids)
    return {"providers": len(outcomes), "failed": sum(not outcome.ok for outcome in outcomes)}


@shared_task(name="providers.tasks.deployment_health_probe", acks_late=True)
def deployment_health_probe() -> dict[str, int]:
    """Check every active deployment, record the checks, and hand them to the breakers."""
    results = deployment_probes_run()
    import_string(settings.PORTICO_HEALTH_PROBE_SINK)(results)
    return {"deployments": len(results), "failed": sum(not result.ok for result in results)}


@worker_ready.connect
def refresh_model_lists_at_start(**_: Any) -> None:
    """A starting worker reads the model lists at once rather than at the schedule's first tick: the
    settings' source may be new or changed. Only queued here: the work runs as any task does."""
    model_list_sources_refresh.delay(at_start=True)
