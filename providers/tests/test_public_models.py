"""What `load_models()` hands the hot path: public models with their servable deployments, in order."""

from __future__ import annotations

import pytest

from providers.facade import DEFAULT_RETRY_ON, load_models
from providers.models import PublicModel
from providers.services import model_route_create
from providers.tests.factories import make_provider, make_route

pytestmark = pytest.mark.django_db


def test_deployments_come_by_priority_then_age_with_their_order_and_caps() -> None:
    late = make_route(public_id="gpt-4o", upstream_model="late", priority=1)
    first = make_route(public_id="gpt-4o", upstream_model="first", priority=0, weight=3, max_in_flight=8)
    second = make_route(public_id="gpt-4o", upstream_model="second", priority=0, max_tokens_per_minute=90_000)

    routes = load_models()["gpt-4o"].routes

    assert [route.id for route in routes] == [first.pk, second.pk, late.pk]
    assert (routes[0].weight, routes[0].max_in_flight, routes[0].max_requests_per_minute) == (3, 8, None)
    assert routes[1].max_tokens_per_minute == 90_000
    assert routes[2].priority == 1
    assert routes[0].name == f"{first.provider.name}/first"


def test_the_models_promise_is_what_every_deployment_carries() -> None:
    make_route(public_id="house", supports_vision=True, context_window=128_000, owned_by="acme-labs")
    make_route(public_id="house", provider=make_provider(kind="mock"))

    model = load_models()["house"]

    assert model.capabilities == frozenset({"chat", "streaming", "tools", "vision", "json_mode"})
    assert {route.capabilities for route in model.routes} == {model.capabilities}
    assert {(route.context_window, route.owned_by, route.public_id) for route in model.routes} == {
        (128_000, "acme-labs", "house")
    }


def test_a_model_carries_its_routing_options() -> None:
    make_route(public_id="backup")
    make_route(
        public_id="house",
        model_family="llama-3",
        strategy="weighted",
        fallbacks=["backup"],
        retry_on=["5xx", "stall"],
        mid_stream_recovery=True,
        ensemble="hedge",
        timeout=30.0,
        first_byte_timeout=5.0,
        stall_timeout=2.5,
    )

    model = load_models()["house"]

    assert (model.model_family, model.strategy, model.fallbacks) == ("llama-3", "weighted", ("backup",))
    assert (model.retry_on, model.mid_stream_recovery, model.ensemble) == (frozenset({"5xx", "stall"}), True, "hedge")
    assert (model.timeout, model.first_byte_timeout, model.stall_timeout) == (30.0, 5.0, 2.5)
    assert load_models()["backup"].retry_on == DEFAULT_RETRY_ON


def test_only_active_deployments_of_active_providers_and_models_are_served() -> None:
    served = make_route(public_id="mixed", upstream_model="served")
    make_route(public_id="mixed", upstream_model="off", active=False)
    make_route(public_id="mixed", upstream_model="retired", provider=make_provider(active=False))
    PublicModel.objects.filter(pk=make_route(public_id="switched-off").model_id).update(active=False)
    make_route(public_id="nothing-servable", active=False)

    models = load_models()

    assert set(models) == {"mixed"}
    assert [route.id for route in models["mixed"].routes] == [served.pk]


def test_a_deployment_made_by_the_service_joins_an_existing_model() -> None:
    provider = make_provider()
    first = model_route_create(provider=provider, public_id="gpt-4o", upstream_model="a", supports_vision=True)
    second = model_route_create(provider=provider, public_id="gpt-4o", upstream_model="b")

    assert first.model_id == second.model_id
    assert PublicModel.objects.get(public_id="gpt-4o").supports_vision
