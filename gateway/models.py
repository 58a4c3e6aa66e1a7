"""The gateway's own tables: the history of circuit breaker transitions, and stored Responses API answers.

Rows are written off the request path by `gateway.breakers.history` and read by
the admin's breaker panel. A transition names the deployment by id and by name,
without a foreign key: history outlives the deployment it describes, and the
writer must not depend on the providers' tables being reachable.
"""

from __future__ import annotations

from django.db import models


class BreakerTransition(models.Model):
    STATES = [("closed", "closed"), ("open", "open"), ("half_open", "half-open")]

    route_id = models.PositiveIntegerField(help_text="The deployment (ModelRoute) id.")
    route_name = models.CharField(max_length=200, blank=True, help_text="provider/upstream model, when it changed.")
    from_state = models.CharField(max_length=16, choices=STATES)
    to_state = models.CharField(max_length=16, choices=STATES)
    reason = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField()
    process = models.CharField(max_length=100, blank=True, help_text="host:pid of the process that saw it happen.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["route_id", "-at"], name="breaker_route_at")]

    def __str__(self) -> str:
        return f"{self.route_name or self.route_id}: {self.from_state} -> {self.to_state}"


class StoredResponse(models.Model):
    """A Responses API answer created with `store: true`, kept for `GET /v1/responses/{id}`.

    Written off the request path (gateway.responses.storage). The tenant and key are named by id,
    without a foreign key, as above: the gateway's reads go through the tenant's id alone.
    """

    response_id = models.CharField(max_length=200)
    tenant_id = models.PositiveIntegerField()
    key_id = models.PositiveIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200)
    # Text, not JSON: Postgres's JSON types refuse a NUL (\u0000), which a client's input or a model's answer may hold.
    body = models.TextField(help_text="The `response` object as the client received it, as JSON.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "response_id"], name="stored_response_tenant_id"),
        ]

    def __str__(self) -> str:
        return self.response_id
