"""Files a tenant uploads, the batches run from them, and each line of a batch.

A `BatchLine`'s state is what makes a batch resumable without sending any
line twice (see gateway.batch_runner and docs/batches.md):

    pending  ──claim──►  running  ──record──►  done     (a 2xx answer: the output file)
       ▲                    │      ──record──►  failed   (any other answer, or none: the error file)
       └──── release ───────┘  (refused by the tenant's limits: nothing was sent; it waits)

A line is claimed, in its own committed transaction, before anything is sent
upstream, and recorded in one transaction guarded by its claim. A line found
`running` under a claim that is not the batch's current runner's was in flight
when its runner died: it is failed, never sent again.

Tenants and keys are referenced without a database constraint, as the usage
ledger does: their rows go through Portico's own deletes (which also remove
the stored blobs), and files and batches keep the ids they were made with.
"""

from __future__ import annotations

import os

from django.db import models
from django.utils import timezone


def new_file_id() -> str:
    return f"file-{os.urandom(12).hex()}"


def new_batch_id() -> str:
    return f"batch_{os.urandom(12).hex()}"


class File(models.Model):
    class Purpose(models.TextChoices):
        BATCH = "batch", "batch (an input file)"
        BATCH_OUTPUT = "batch_output", "batch_output (a batch's results)"

    class Status(models.TextChoices):
        UPLOADED = "uploaded", "uploaded"
        PROCESSED = "processed", "processed"
        ERROR = "error", "error"

    id = models.CharField(primary_key=True, max_length=40, default=new_file_id, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, db_constraint=False, related_name="files")
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
        help_text="The key that uploaded it; none for a batch's output.",
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Bytes (the File object's `bytes`).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROCESSED)
    storage_key = models.CharField(max_length=255, editable=False, help_text="Where the bytes are in the store.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="file_tenant_time"),
            models.Index(fields=["expires_at"], name="file_expiry", condition=models.Q(expires_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.filename})"


class Batch(models.Model):
    # Labels are OpenAI's own status names, as the API shows them.
    class Status(models.TextChoices):
        VALIDATING = "validating", "validating"
        FAILED = "failed", "failed"
        IN_PROGRESS = "in_progress", "in_progress"
        FINALIZING = "finalizing", "finalizing"
        COMPLETED = "completed", "completed"
        EXPIRED = "expired", "expired"
        CANCELLING = "cancelling", "cancelling"
        CANCELLED = "cancelled", "cancelled"

    id = models.CharField(primary_key=True, max_length=40, default=new_batch_id, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, db_constraint=False, related_name="batches")
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        null=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
        help_text="The key that created it: its lines run with this key's models, limits and budget.",
    )
    endpoint = models.CharField(max_length=40)
    model = models.CharField(max_length=200, blank=True, help_text="The model of its first line.")
    # Kept as ids when the files are deleted, as OpenAI keeps them: no constraint.
    input_file = models.ForeignKey(File, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    output_file = models.ForeignKey(
        File, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    error_file = models.ForeignKey(
        File, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    completion_window = models.CharField(max_length=10, default="24h")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.VALIDATING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(null=True, blank=True)
    errors = models.JSONField(null=True, blank=True, help_text="Why the batch failed: OpenAI's BatchError objects.")
    usage = models.JSONField(null=True, blank=True, help_text="Tokens of its answers, summed when it finished.")
    # The runner that holds the batch (its token) and until when, unless it renews; see batches.services.runs.
    runner = models.CharField(max_length=32, blank=True, editable=False)
    runner_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Lines refused by the tenant's limits are not tried again before this.
    not_before = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="batch_tenant_time"),
            models.Index(fields=["status"], name="batch_status"),
        ]

    def __str__(self) -> str:
        return self.id


class BatchLine(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="lines")
    number = models.PositiveIntegerField(help_text="Its line in the input file, from 1.")
    custom_id = models.CharField(max_length=512, blank=True)
    # The call's request id: the usage ledger's key, so a line is one ledger row however often it is looked at.
    request_id = models.CharField(max_length=64, unique=True)
    body = models.TextField(blank=True, help_text="The request body, as JSON; empty for a line that was invalid.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times it was claimed.")
    claim = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The answer, if one came (status and body as JSON), or the error of a line that got none.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "number"]
        constraints = [models.UniqueConstraint(fields=["batch", "number"], name="one_line_per_number")]
        indexes = [models.Index(fields=["batch", "state", "number"], name="batch_line_state")]

    def __str__(self) -> str:
        return f"{self.batch_id} line {self.number}"
