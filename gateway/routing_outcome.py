"""What came of routing a call: the trail of its attempts, the error when none served it, the headers it gets.

gateway.routing's loop writes the trail as it goes; when no deployment answered,
`nothing_served` turns it into the one error the client gets (the last upstream
failure, else why nothing could be tried), and `headers_of` tells any client,
answered or not, how its call was routed.
"""

from __future__ import annotations

import functools

from django.conf import settings

from gateway.accounting import Call
from gateway.errors import InvalidRequest, NoDeployment, PorticoError, UpstreamTimeout
from gateway.routing_caps import at_capacity
from providers.facade import ModelInfo, RouteInfo


class Trail:
    """What the chain has learned so far: the last failure, why nothing was tried, the window it needs."""

    __slots__ = ("error", "excluded", "full", "min_window", "need", "rest", "served")

    def __init__(self) -> None:
        self.error: PorticoError | None = None
        self.full: float | None = None  # deployments at their caps were skipped: the seconds until one has room
        self.served: ModelInfo | None = None  # the model whose deployment answered
        self.rest: list[RouteInfo] = []  # its deployments after that one, in order: where a stream may carry on
        self.excluded = ""  # "provider" or "max_cost_per_token": a wish left the first model nothing
        self.min_window = 0  # after a context_length failure: only larger windows
        self.need: int | None = None  # prompt + requested output, counted when a window must be checked


def nothing_served(call: Call, trail: Trail) -> PorticoError:
    """The error of a call no deployment answered: the last failure, else why nothing was tried."""
    if trail.error is not None:
        return trail.error
    if trail.full is not None:
        return at_capacity(call.model, trail.full)
    if trail.excluded == "provider":
        return InvalidRequest(
            f"No deployment of the model `{call.model.public_id}` matches the `provider` preferences.",
            param="provider",
            code="provider_not_available",
        )
    if trail.excluded == "max_cost_per_token":
        return InvalidRequest(
            f"No deployment of the model `{call.model.public_id}` costs at most the `max_cost_per_token` asked.",
            param="max_cost_per_token",
            code="max_cost_exceeded",
        )
    if trail.need is not None and trail.min_window == 0 and call.model.context_window is not None:
        return InvalidRequest(
            f"This model's maximum context length is {call.model.context_window} tokens. However, you requested "
            f"{trail.need} tokens. Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return NoDeployment(call.model.public_id)


def deadline_passed(call: Call, seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"No deployment of the model `{call.model.public_id}` answered within the request's deadline of {seconds:g} s."
    )


def headers_of(call: Call) -> dict[str, str]:
    """What a client learns of how its call was routed (the provider's name only if the operator allows it)."""
    route = call.route
    if not call.attempts:
        return {"x-portico-attempts": "0"}
    hide = settings.PORTICO_HIDE_PROVIDER
    headers = {
        "x-portico-deployment": str(route.id) if hide else _ascii(route.name),
        "x-portico-attempts": str(call.attempts),
        "x-portico-routing": _ascii(call.routing),
    }
    if not hide:
        headers["x-portico-provider"] = _ascii(route.provider.name)
    if call.upstream_id:  # a stream's is known once it opened, before these headers go out
        headers["x-portico-upstream-id"] = call.upstream_id
    return headers


@functools.lru_cache(maxsize=4096)
def _ascii(value: str) -> str:
    # Operators name providers freely; a header value must stay printable ASCII. The same few names and reasons
    # come back on every call: cached.
    if value.isascii() and value.isprintable():
        return value
    return "".join(char if " " <= char <= "~" else "?" for char in value)
