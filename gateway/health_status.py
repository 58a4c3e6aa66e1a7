"""GET /health: how every provider, deployment and public model is doing, for operators.

Each deployment shows its circuit breaker (from the shared breakers, as the
request path sees it) and its latest health check; it counts as healthy when
it is active, its breaker is closed and its latest check (if any) passed. A
public model is healthy when any of its deployments is, a provider when any
of its deployments is. `status` is "ok" when every active model is healthy,
else "degraded"; the answer is 200 either way (liveness and readiness are
/health/live and /health/ready).

Only operators may read it: a staff member signed in to the admin, or a staff
user's management token (`Authorization: Token <token>`). Anyone else gets an
OpenAI-shaped 401 (no or a bad token) or 403 (not staff).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from gateway.breakers import CLOSED, BreakerState, breakers_for_settings
from gateway.errors import MethodNotAllowed, PorticoError, error_response
from providers.selectors import DeploymentCheck, deployments_with_latest_probe
from tenants.authentication import ManagementTokenAuthentication

UNKNOWN = "unknown: Redis does not answer"  # what RedisBreakers.state() says when it could not ask


def _refusal(request: HttpRequest) -> PorticoError | None:
    user = request.user
    if user.is_authenticated and user.is_staff:
        return None
    try:
        # The management API's own reading of the header, applied to this plain Django request.
        found = ManagementTokenAuthentication().authenticate(request)  # type: ignore[arg-type]
    except AuthenticationFailed:
        found = None
    if found is None and not user.is_authenticated:
        return PorticoError(
            "Give a staff user's management token (Authorization: Token <token>), or sign in to the admin.",
            status=401,
            type="invalid_request_error",
            code="unauthenticated",
            headers={"WWW-Authenticate": "Token"},
        )
    token_user = found[0] if found is not None else user
    if token_user.is_staff:
        return None
    return PorticoError(
        "Only operators (staff users) may read Portico's health.",
        status=403,
        type="invalid_request_error",
        code="permission_denied",
    )


# It changes nothing, so it needs no CSRF token; any method but GET (and HEAD) is refused in JSON.
@csrf_exempt
def health_status(request: HttpRequest) -> HttpResponse:
    if request.method not in {"GET", "HEAD"}:
        response = error_response(MethodNotAllowed(f"Only GET is allowed on /health, not {request.method}."))
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal is not None:
        return error_response(refusal)
    return JsonResponse(health_report(deployments_with_latest_probe()))


def health_report(checks: list[DeploymentCheck]) -> dict[str, Any]:
    states = _BreakerStates()
    providers: dict[int, dict[str, Any]] = {}
    models: dict[int, dict[str, Any]] = {}
    for check in checks:
        deployment = check.deployment
        row = _deployment(check, states.get(deployment.pk))
        provider = providers.setdefault(deployment.provider_id, _provider(deployment.provider))
        provider["deployments"].append(row)
        provider["healthy"] = bool(provider["healthy"]) or row["healthy"]
        model = models.setdefault(deployment.model_id, _model(deployment.model))
        model["deployments"].append(deployment.pk)
        model["healthy"] = model["healthy"] or row["healthy"]
    listed = sorted(models.values(), key=lambda model: model["id"])
    degraded = any(model["active"] and not model["healthy"] for model in listed)
    return {
        "status": "degraded" if degraded else "ok",
        "redis_unreachable": states.unreachable,
        "providers": list(providers.values()),
        "models": listed,
    }


def _deployment(check: DeploymentCheck, breaker: BreakerState) -> dict[str, Any]:
    deployment, probe = check.deployment, check.probe
    active = deployment.active and deployment.provider.active and deployment.model.active
    healthy = active and breaker.state == CLOSED and (probe is None or probe.ok)
    return {
        "id": deployment.pk,
        "name": deployment.name,
        "model": deployment.model.public_id,
        "upstream_model": deployment.upstream_model,
        "active": active,
        "healthy": healthy,
        "breaker": {
            "state": breaker.state,
            "since": _iso(breaker.since),
            "until": _iso(breaker.until),
            "reason": breaker.reason,
        },
        "probe": None
        if probe is None
        else {
            "ok": probe.ok,
            "at": _iso(probe.probed_at),
            "latency_ms": probe.latency_ms,
            "reason": probe.reason,
            "detail": probe.detail,
        },
    }


def _provider(provider: Any) -> dict[str, Any]:
    # "healthy" stays None for a provider that serves no deployment.
    return {
        "id": provider.pk,
        "name": provider.name,
        "kind": provider.kind,
        "active": provider.active,
        "healthy": None,
        "deployments": [],
    }


def _model(model: Any) -> dict[str, Any]:
    return {"id": model.public_id, "active": model.active, "healthy": False, "deployments": []}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class _BreakerStates:
    """Each deployment's breaker, read once; once Redis has failed to answer, it is asked no more."""

    def __init__(self) -> None:
        self.breakers = breakers_for_settings()
        self.unreachable = False

    def get(self, route_id: int) -> BreakerState:
        if self.unreachable:
            return BreakerState(route_id, CLOSED, None, None, UNKNOWN, ())
        state = self.breakers.state(route_id)
        self.unreachable = state.state == CLOSED and state.reason.startswith("unknown")
        return state
