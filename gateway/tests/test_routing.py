"""The routing loop's pieces without servers: failure classes, headers, extensions, and the loop's choices.

The loop is driven here with a stand-in for `relay.attempt` (the real one is
proved against loopback upstreams in tests/integration/test_failover.py).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from billing.facade import BillingSnapshot
from billing.money import PriceInfo, PriceSchedule
from gateway import routing
from gateway.accounting import Call
from gateway.breakers import BreakerRules, LocalBreakers
from gateway.errors import (
    InvalidRequest,
    NoDeployment,
    PorticoError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.extensions import NONE, ProviderWish, read_extensions
from gateway.relay import Whole, cool_down_of
from gateway.routing import _run, failure_class, headers_of
from gateway.routing_outcome import Trail
from gateway.snapshot import Snapshot
from gateway.tests.test_accounting import GRANT, model_of
from providers.facade import RouteInfo
from providers.tests.factories import make_provider_info

HI = [{"role": "user", "content": "hi"}]


def deployment(route_id: int, provider: str, *, public_id: str = "gpt-x", **fields: Any) -> RouteInfo:
    return RouteInfo(
        id=route_id,
        public_id=public_id,
        provider=make_provider_info(id=route_id, name=provider),
        upstream_model=f"{provider}-model",
        owned_by="portico",
        created=0,
        context_window=fields.pop("context_window", None),
        max_output_tokens=None,
        capabilities=frozenset({"chat", "streaming"}),
        priority=route_id,
        **fields,
    )


def model(*routes: RouteInfo, **fields: Any) -> Any:
    return dataclasses.replace(model_of(routes[0]), routes=routes, **fields)


def new_call(first: Any) -> Call:
    return Call(
        request_id="req_1",
        client_request_id="",
        grant=GRANT,
        model=first,
        operation="chat",
        body={
            "model": first.public_id,
            "messages": HI,
        },
    )


class Upstreams:
    """Stands in for relay.attempt: each deployment id fails with its error, or answers."""

    def __init__(self, failures: dict[int, PorticoError]) -> None:
        self.failures = failures
        self.tried: list[int] = []

    async def __call__(self, call: Call, route: RouteInfo, *, first_byte: float | None = None, **_: object) -> Whole:
        self.tried.append(route.id)
        if route.id in self.failures:
            raise self.failures[route.id]
        return Whole(b"{}", "application/json")


@pytest.fixture
def breakers(monkeypatch: pytest.MonkeyPatch) -> LocalBreakers:
    local = LocalBreakers(rules=BreakerRules())
    monkeypatch.setattr(routing, "_breakers", lambda: local)
    return local


def served(monkeypatch: pytest.MonkeyPatch, failures: dict[int, PorticoError]) -> Upstreams:
    upstreams = Upstreams(failures)
    monkeypatch.setattr(routing, "attempt", upstreams)
    return upstreams


def failed(status: int, code: str | None = None) -> UpstreamError:
    return UpstreamError("failed", status=status, code=code)


# --- failure classes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (UpstreamUnreachable("refused"), "connect"),
        (UpstreamTimeout("slow"), "timeout"),
        (failed(502), "5xx"),
        (failed(429), "429"),
        (failed(400, "context_length_exceeded"), "context_length"),
        (failed(400, "content_filter"), "content_filter"),
        (failed(400), None),
        (RateLimited("Portico's own limit"), None),
        (InvalidRequest("bad"), None),
    ],
)
def test_each_failure_has_its_retry_class(error: PorticoError, kind: str | None) -> None:
    assert failure_class(error) == kind


@pytest.mark.parametrize(
    ("status", "headers", "seconds"),
    [
        (429, {"retry-after": "7"}, 7.0),
        (429, {"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        (200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
        (200, {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}, 0.0),
        (429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        (500, {"retry-after": "7"}, 0.0),
    ],
)
def test_a_deployment_rests_as_long_as_its_headers_ask(status: int, headers: dict[str, str], seconds: float) -> None:
    assert cool_down_of(status, headers) == seconds


# --- headers ---------------------------------------------------------------------------------------------------------


def test_the_headers_name_the_deployment_unless_the_provider_is_hidden() -> None:
    call = new_call(model(deployment(4, "Zürich AI")))
    call.attempts, call.routing = 2, "strategy=priority; only deployment"

    shown = headers_of(call)
    with override_settings(PORTICO_HIDE_PROVIDER=True):
        hidden = headers_of(call)

    assert shown == {
        "x-portico-deployment": "Z?rich AI/Zürich AI-model".replace("ü", "?"),
        "x-portico-attempts": "2",
        "x-portico-routing": "strategy=priority; only deployment",
        "x-portico-provider": "Z?rich AI",
    }
    assert hidden == {
        "x-portico-deployment": "4",
        "x-portico-attempts": "2",
        "x-portico-routing": shown["x-portico-routing"],
    }


# --- extensions --------------------------------------------------------------------------------------------------


def test_extensions_come_out_of_the_body_and_from_headers() -> None:
    body = {"model": "m", "provider": {"order": ["b"], "ignore": ["c"]}, "models": ["n"], "request_id": "r1"}
    meta = {"HTTP_X_PORTICO_CAPABILITIES": "tools, vision", "HTTP_X_PORTICO_TIMEOUT": "2.5"}

    ext = read_extensions(body, meta, max_timeout=60)

    assert body == {"model": "m"}
    assert ext.provider == ProviderWish(order=("b",), ignore=frozenset({"c"}))
    assert (ext.models, ext.request_id, ext.capabilities, ext.timeout) == (("n",), "r1", {"tools", "vision"}, 2.5)
    assert read_extensions({"model": "m"}, {}, max_timeout=60) is NONE


@pytest.mark.parametrize(
    ("body", "meta", "param"),
    [
        ({"provider": 3}, {}, "provider"),
        ({"provider": {"only": "a"}}, {}, "provider.only"),
        ({"capabilities": ["telepathy"]}, {}, "capabilities"),
        ({"max_cost_per_token": -1}, {}, "max_cost_per_token"),
        ({"models": [f"m{i}" for i in range(11)]}, {}, "models"),
        ({}, {"HTTP_X_PORTICO_TIMEOUT": "61"}, "x-portico-timeout"),
        ({}, {"HTTP_X_PORTICO_PROVIDER": "{not json"}, "provider"),
    ],
)
def test_an_extension_portico_cannot_read_is_a_400_naming_it(
    body: dict[str, Any], meta: dict[str, str], param: str
) -> None:
    with pytest.raises(InvalidRequest) as error:
        read_extensions(body, meta, max_timeout=60)

    assert error.value.param == param


# --- the loop ----------------------------------------------------------------------------------------------------


async def test_a_client_error_is_not_tried_elsewhere(monkeypatch: pytest.MonkeyPatch, breakers: LocalBreakers) -> None:
    upstreams = served(monkeypatch, {1: failed(400)})
    first = model(deployment(1, "a"), deployment(2, "b"))

    with pytest.raises(UpstreamError):
        await _run(new_call(first), Snapshot(models={"gpt-x": first}), NONE, Trail())

    assert upstreams.tried == [1]


async def test_a_prompt_too_long_moves_on_to_a_fallback_with_a_larger_window(
    monkeypatch: pytest.MonkeyPatch, breakers: LocalBreakers
) -> None:
    upstreams = served(monkeypatch, {1: failed(400, "context_length_exceeded")})
    retry = frozenset({"context_length"})
    first = model(
        deployment(1, "a", context_window=8000),
        deployment(2, "b"),
        context_window=8000,
        retry_on=retry,
        fallbacks=("small", "large"),
    )
    small = model(deployment(3, "c", public_id="small"), public_id="small", context_window=4000)
    large = model(deployment(4, "d", public_id="large"), public_id="large", context_window=128000)
    snapshot = Snapshot(models={"gpt-x": first, "small": small, "large": large})
    call = new_call(first)

    await _run(call, snapshot, NONE, Trail())

    assert upstreams.tried == [1, 4]  # not the same window again, not a smaller one
    assert (call.attempts, call.route.id) == (2, 4)


async def test_an_open_breaker_keeps_its_deployment_out_and_none_left_is_a_503(
    monkeypatch: pytest.MonkeyPatch, breakers: LocalBreakers
) -> None:
    upstreams = served(monkeypatch, {})
    first = model(deployment(1, "a"), deployment(2, "b"))
    breakers.cool_down(1, "a", 30, "test")
    call = new_call(first)

    await _run(call, Snapshot(models={"gpt-x": first}), NONE, Trail())
    breakers.cool_down(2, "b", 30, "test")
    with pytest.raises(NoDeployment):
        await _run(new_call(first), Snapshot(models={"gpt-x": first}), NONE, Trail())

    assert upstreams.tried == [2]


async def test_no_deployment_under_the_cost_ceiling_is_a_400_naming_the_parameter(
    monkeypatch: pytest.MonkeyPatch, breakers: LocalBreakers
) -> None:
    served(monkeypatch, {})
    first = model(deployment(1, "a"), deployment(2, "b"))
    info = PriceInfo(0, Decimal(5), Decimal(5), Decimal(5))
    billing = BillingSnapshot(costs={1: PriceSchedule(starts=(0,), prices=(info,))})
    ext = dataclasses.replace(NONE, max_cost_per_token=0.000001)

    with pytest.raises(InvalidRequest) as error:
        await _run(new_call(first), Snapshot(models={"gpt-x": first}, billing=billing), ext, Trail())

    assert error.value.param == "max_cost_per_token"
