"""Reads on queued jobs: one job within its tenant, whether a call reached the ledger, the console's summary."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q

from billing.models import UsageRecord
from queueing.facade import JobInfo, TenantQueue
from queueing.models import QueuedJob
from queueing.waiting import waiting_in_line
from tenants.models import Tenant


def job_info(job: QueuedJob) -> JobInfo:
    return JobInfo(
        id=job.id,
        tenant_id=job.tenant_id,
        api_key_id=job.api_key_id,
        key_prefix=job.key_prefix,
        operation=job.operation,
        path=job.path,
        model=job.model,
        body=job.body,
        status=job.status,
        created_at=job.created_at.timestamp(),
        deadline=job.deadline.timestamp(),
        headers=dict(job.headers or {}),
        client_request_id=job.client_request_id,
        attempts=job.attempts,
        lease_until=job.lease_until.timestamp() if job.lease_until else None,
        sent_at=job.sent_at.timestamp() if job.sent_at else None,
        enqueued_at=job.enqueued_at.timestamp(),
        queue_ms=job.queue_ms,
        result_status=job.result_status,
        result_body=job.result_body,
        error_code=job.error_code,
    )


def queued_job_get(*, tenant_id: int, job_id: str) -> JobInfo | None:
    """Another tenant's job is no job at all."""
    job = QueuedJob.objects.filter(tenant_id=tenant_id, pk=job_id).first()
    return job_info(job) if job is not None else None


def usage_recorded(*, request_id: str) -> bool:
    """Whether the ledger holds the call of this request id (a job's id is its call's)."""
    return UsageRecord.objects.filter(request_id=request_id).exists()


def queue_summary(*, since: datetime, now: datetime) -> list[TenantQueue]:
    """Each tenant with jobs waiting or running now, requests waiting in line now, or calls that waited since
    `since`: counts and median wait."""
    live = (
        QueuedJob.objects.filter(status__in=["queued", "running"])
        .values("tenant_id")
        .annotate(
            queued=Count("pk", filter=Q(status="queued", deadline__gt=now)),
            running=Count("pk", filter=Q(status="running")),
        )
    )
    counts = {row["tenant_id"]: (row["queued"], row["running"]) for row in live}
    waits = _median_waits(since)
    in_line = waiting_in_line()
    tenant_ids = set(counts) | set(waits) | set(in_line)
    names = dict(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "name"))
    summary = [
        TenantQueue(
            tenant_id=tenant_id,
            tenant=names.get(tenant_id, f"tenant {tenant_id}"),
            queued=counts.get(tenant_id, (0, 0))[0],
            running=counts.get(tenant_id, (0, 0))[1],
            in_line=in_line.get(tenant_id, 0),
            median_wait_ms=waits.get(tenant_id, (None, 0))[0],
            waited=waits.get(tenant_id, (None, 0))[1],
        )
        for tenant_id in tenant_ids
    ]
    return sorted(summary, key=lambda row: (-(row.queued + row.in_line), row.tenant))


_PG_MEDIANS = (
    f"SELECT tenant_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_ms), count(*) "  # noqa: S608
    f"FROM {UsageRecord._meta.db_table} WHERE created_at >= %s AND queue_ms IS NOT NULL GROUP BY tenant_id"
)


def _median_waits(since: datetime) -> dict[int, tuple[int | None, int]]:
    """tenant id -> (median queue_ms, calls that waited) over the ledger rows since `since`."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PG_MEDIANS, [since])
            return {tenant: (round(median), count) for tenant, median, count in cursor.fetchall()}
    by_tenant: dict[int, list[int]] = defaultdict(list)
    rows = UsageRecord.objects.filter(created_at__gte=since, queue_ms__isnull=False)
    for tenant_id, wait in rows.values_list("tenant_id", "queue_ms"):
        if tenant_id is not None and wait is not None:
            by_tenant[tenant_id].append(wait)
    return {tenant: (round(statistics.median(waits)), len(waits)) for tenant, waits in by_tenant.items()}
