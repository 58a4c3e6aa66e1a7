"""Where alerts go (channels) and what became of each one sent there (deliveries).

A delivery is one alert on one channel, unique by (alert key, channel), so an
alert raised twice, or by two processes at once, is delivered at most once:

    pending  ──claim──►  sending  ──►  sent
       ▲                    │
       └──── a try failed ──┤  (tries left: back to pending, retried with backoff)
                            └──►  failed   (no tries left; the admin's "Send again" makes it pending)

A row left `sending` lost its worker mid-send: whether it went out is not
known, so it is never sent again by itself (docs/alerts.md).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class AlertEvent(models.TextChoices):
    BUDGET_SOFT = "budget_soft", "a budget's soft threshold reached"
    BUDGET_HARD = "budget_hard", "a budget's amount reached (requests refused)"
    BREAKER_OPEN = "breaker_open", "a deployment's circuit breaker opened (operators only)"


class AlertChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "email"
        WEBHOOK = "webhook", "webhook (Slack-compatible JSON, signed)"

    name = models.CharField(max_length=200)
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_channels",
        help_text="Leave empty for an operators' channel, which receives the alerts of every tenant.",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    emails = models.JSONField(default=list, blank=True, help_text="Email: the addresses alerts are sent to.")
    url = models.URLField(max_length=2000, blank=True, help_text="Webhook: the URL alerts are POSTed to.")
    # Fernet token (providers/credentials.py): the webhook's signing secret, never shown back.
    secret_encrypted = models.TextField(blank=True, editable=False)
    # A list of AlertEvent values; matched in Python (selectors), as SQLite has no JSON containment lookup.
    events = models.JSONField(default=list, help_text="The alerts this channel receives.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="email") & Q(url="")) | (Q(kind="webhook") & ~Q(url="")),
                name="alert_channel_has_its_kinds_target",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


class AlertDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=20, choices=AlertEvent.choices)
    key = models.CharField(max_length=200, help_text="The alert, e.g. budget:12:2026-11:soft or breaker:7:<time>.")
    subject = models.CharField(max_length=300)
    text = models.TextField(help_text="The message: an email's body, a webhook's `text`.")
    payload = models.JSONField(default=dict, help_text="The alert's details, sent to webhooks as `portico.data`.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "alert deliveries"
        constraints = [models.UniqueConstraint(fields=["key", "channel"], name="one_delivery_per_alert_and_channel")]
        indexes = [models.Index(fields=["status", "created_at"], name="alert_delivery_status")]

    def __str__(self) -> str:
        return f"{self.subject} → {self.channel}"
