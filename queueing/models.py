"""Requests accepted as asynchronous jobs (202 Accepted), kept until they have run or expired.

    queued  ──claim──►  running  ──finish──►  completed   (the answer, as the client would have had it)
       ▲                   │      ──finish──►  failed      (an error answer, or none: why)
       └──── release ──────┘      ──finish──►  expired     (its deadline passed before capacity freed)
                                  (no room within the run's slice: back in the broker, after a pause)

A run claims the job in its own committed transaction and holds it for a
lease; it records the outcome only under its claim, and marks it `sent_at`,
committed, just before its call goes upstream. A job found `running` past its
lease lost its worker: the next run runs it again only if that run never got
as far as the mark (it died waiting for capacity); otherwise it fails the job,
never sending it twice (gateway.queueing.runner, docs/queueing.md).

Tenants and keys are referenced without a database constraint, as the usage
ledger does: a job keeps the ids it was made with.
"""

from __future__ import annotations

import os

from django.db import models
from django.utils import timezone


def new_job_id() -> str:
    return f"qjob_{os.urandom(12).hex()}"


class QueuedJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        EXPIRED = "expired", "expired"

    id = models.CharField(primary_key=True, max_length=40, default=new_job_id, editable=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, db_constraint=False, related_name="queued_jobs"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False, related_name="+"
    )
    key_prefix = models.CharField(max_length=16)
    operation = models.CharField(max_length=20)
    path = models.CharField(max_length=100, help_text="The endpoint it was sent to, e.g. /v1/chat/completions.")
    model = models.CharField(max_length=200, blank=True)
    body = models.TextField(help_text="The request's JSON body, as the client sent it.")
    headers = models.JSONField(default=dict, blank=True, help_text="Its routing headers (x-portico-*).")
    client_request_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deadline = models.DateTimeField(help_text="When it expires if it has not been admitted by then.")
    enqueued_at = models.DateTimeField(
        default=timezone.now, help_text="When it was last handed to the workers (after a pause: when the pause ends)."
    )
    started_at = models.DateTimeField(null=True, blank=True, help_text="When a run first took it.")
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs that took it.")
    run_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A running job past this lost its worker.")
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the run holding it was about to send it upstream, admitted."
    )
    queue_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Milliseconds from acceptance until its limits and capacity admitted it."
    )
    result_status = models.PositiveSmallIntegerField(null=True, blank=True)
    result_body = models.TextField(blank=True)
    error_code = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "queued job"
        indexes = [
            models.Index(fields=["tenant", "status"], name="queued_job_tenant_status"),
            models.Index(fields=["status", "deadline"], name="queued_job_status_deadline"),
            models.Index(fields=["created_at"], name="queued_job_created"),
        ]

    def __str__(self) -> str:
        return self.id
