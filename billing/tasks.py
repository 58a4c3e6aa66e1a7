"""Celery tasks of the billing app: thin, each calls a service.

    usage_rollups_update         add the ledger's new rows to the usage rollups   every PORTICO_ROLLUP_INTERVAL s
    ledger_partitions_maintain   make the ledger's monthly partitions ahead, prune old ones   every
                                 PORTICO_LEDGER_PARTITION_INTERVAL s (PostgreSQL; billing/partitions.py)

It is scheduled by name in the project's one schedule (gateway/schedule.py).
A run may come twice or late (acks_late, redelivery, a second beat): the
rollups' cursor makes every run after the first add nothing (billing/rollups.py);
partition upkeep finds the months it would make or drop already done.
A database that is away is retried with the project's policy
(gateway/tasks_base.py), spelled out here as billing may not import the gateway.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from billing.partitions import ledger_partitions_maintain as partitions_maintain
from billing.rollups import usage_rollups_update as rollups_update

logger = logging.getLogger(__name__)

# gateway.tasks_base's policy for the failures that may pass here: the database away, or the ledger's lock
# not had in time (an OperationalError too). No result is kept: the rollups and the log say what happened.
_RETRIED: dict[str, Any] = {
    "acks_late": True,
    "ignore_result": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="billing.tasks.usage_rollups_update", **_RETRIED)
def usage_rollups_update() -> None:
    run = rollups_update()
    if not run.caught_up:
        # A backlog (an upgrade onto a large ledger, a long outage): go on at once rather than at the next tick.
        logger.info("usage rollups are behind the ledger (at id %s): another run is queued", run.last_id)
        usage_rollups_update.delay()


@shared_task(name="billing.tasks.ledger_partitions_maintain", **_RETRIED)
def ledger_partitions_maintain() -> None:
    partitions_maintain()
