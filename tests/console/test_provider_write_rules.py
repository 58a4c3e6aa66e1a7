"""The console and the management API refuse the same providers, public models and deployments, in the same words,
and write the ones they accept through the same services, with the same audit entries and snapshot reloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from gateway import invalidation
from providers import services
from providers.adapters import adapter_for
from providers.admin import providers as console
from providers.models import ModelRoute, Provider, PublicModel
from providers.services import BASE_URL_NEEDED, PRIORITY_OUT_OF_RANGE, TIMEOUT_OUT_OF_RANGE
from providers.tests.factories import make_provider, make_route

pytestmark = pytest.mark.django_db

MOCK_LABEL = adapter_for("mock").label


@pytest.fixture
def api() -> APIClient:
    operator = APIClient()
    operator.force_authenticate(get_user_model().objects.create_user(username="api-operator", is_staff=True))
    return operator


@pytest.fixture
def mock() -> Provider:
    return make_provider(name="mock", kind="mock")


def _console_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the console accepted it"
    return {field: list(errors) for field, errors in response.context["adminform"].form.errors.items()}


def _api_errors(response: Any) -> Any:
    assert response.status_code == 400, response.content
    return response.json()


# --- providers ----------------------------------------------------------------------------------------------------


def _provider_form(**fields: str) -> dict[str, str]:
    data = {
        "name": "upstream",
        "kind": "openai",
        "base_url": "https://api.openai.test/v1",
        "credential": "",
        "credential_header": "",
        "connect_timeout": "5",
        "read_timeout": "120",
        "total_timeout": "600",
        "extra_headers": "",
        "options": "{}",
        "active": "on",
    }
    return {**data, **fields}


def _provider_refusals(admin_client: Client, api: APIClient, form: dict[str, str], body: dict[str, Any]) -> tuple:
    said = admin_client.post(reverse("admin:providers_provider_add"), _provider_form(**form))
    answered = api.post("/api/providers/", {"name": "upstream", **body}, format="json")
    return _console_errors(said), _api_errors(answered)


@pytest.mark.parametrize(
    ("form", "body", "errors"),
    [
        ({"base_url": ""}, {"kind": "openai"}, {"base_url": [BASE_URL_NEEDED]}),
        ({"kind": "cohere", "base_url": ""}, {"kind": "cohere"}, {"base_url": [BASE_URL_NEEDED]}),
        (
            {"extra_headers": '{"X-Org": "org-1", "bad name": "v"}'},
            {"kind": "mock", "extra_headers": {"X-Org": "org-1", "bad name": "v"}},
            {"extra_headers": ["'bad name' is not a valid HTTP header name."]},
        ),
        (
            {"read_timeout": "100000"},
            {"kind": "mock", "read_timeout": 100_000},
            {"read_timeout": [TIMEOUT_OUT_OF_RANGE]},
        ),
        (
            {"connect_timeout": "0.05"},
            {"kind": "mock", "connect_timeout": 0.05},
            {"connect_timeout": [TIMEOUT_OUT_OF_RANGE]},
        ),
        (
            {"credential_header": "x api key"},
            {"kind": "mock", "credential_header": "x api key"},
            {"credential_header": ["Enter a valid HTTP header name."]},
        ),
        (
            {"kind": "mock", "options": '{"serves_responses": true}'},
            {"kind": "mock", "options": {"serves_responses": True}},
            {"options": [f"Unknown option(s) for {MOCK_LABEL}: serves_responses. Known: none."]},
        ),
    ],
    ids=[
        "no base url",
        "no base url for cohere",
        "a bad header name",
        "a day too long",
        "too short",
        "a bad credential header",
        "an unknown option",
    ],
)
def test_both_refuse_the_same_providers_in_the_same_words(admin_client, api, form, body, errors):
    said, answered = _provider_refusals(admin_client, api, form, body)

    assert said == answered == errors
    assert not Provider.objects.exists()


def test_a_provider_changed_in_either_is_checked_as_it_would_be_left(admin_client, api):
    provider = make_provider(name="upstream", kind="mock")
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    said = admin_client.post(url, _provider_form(kind="openai", base_url=""))
    answered = api.patch(f"/api/providers/{provider.pk}/", {"kind": "openai"}, format="json")

    assert _console_errors(said) == _api_errors(answered) == {"base_url": [BASE_URL_NEEDED]}
    assert Provider.objects.get().kind == "mock"


# --- public models and their deployments ------------------------------------------------------------------------


def _model_form(provider: Provider, **fields: Any) -> dict[str, Any]:
    """An add form for a public model with one deployment; billing's price inline comes along, empty."""
    data = {
        "public_id": "house",
        "owned_by": "portico",
        "active": "on",
        "supports_chat": "on",
        "strategy": "priority",
        "retry_on": ["connect", "5xx"],
        "fallbacks": "",
        "deployments-TOTAL_FORMS": "1",
        "deployments-INITIAL_FORMS": "0",
        "deployments-0-provider": provider.pk,
        "deployments-0-upstream_model": "house-a",
        "deployments-0-priority": "0",
        "deployments-0-weight": "1",
        "deployments-0-active": "on",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
    }
    return {**data, **fields}


def _model_body(provider: Provider, **fields: Any) -> dict[str, Any]:
    body = {
        "public_id": "house",
        "retry_on": ["connect", "5xx"],
        "deployments": [{"provider": provider.name, "upstream_model": "house-a"}],
    }
    return {**body, **fields}


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"stall_timeout": 100_000}, {"stall_timeout": [TIMEOUT_OUT_OF_RANGE]}),
        ({"timeout": 0}, {"timeout": [TIMEOUT_OUT_OF_RANGE]}),
        ({"fallbacks": ["house"]}, {"fallbacks": ["A model cannot be its own fallback."]}),
        ({"fallbacks": ["no-such-model"]}, {"fallbacks": ["Unknown models: no-such-model."]}),
    ],
    ids=["a day too long", "no time at all", "its own fallback", "an unknown fallback"],
)
def test_both_refuse_the_same_public_models_in_the_same_words(admin_client, api, mock, fields, errors):
    typed = {name: ", ".join(value) if isinstance(value, list) else value for name, value in fields.items()}

    said = admin_client.post(reverse("admin:providers_publicmodel_add"), _model_form(mock, **typed))
    answered = api.post("/api/models/", _model_body(mock, **fields), format="json")

    assert _console_errors(said) == _api_errors(answered) == errors
    assert not PublicModel.objects.exists()


@pytest.mark.parametrize("priority", [1_000_001, -5_000_000_000])
def test_both_refuse_a_deployment_priority_out_of_range_in_the_same_words(admin_client, api, mock, priority):
    said = admin_client.post(
        reverse("admin:providers_publicmodel_add"), _model_form(mock, **{"deployments-0-priority": str(priority)})
    )
    body = _model_body(mock, deployments=[{"provider": "mock", "upstream_model": "house-a", "priority": priority}])
    answered = api.post("/api/models/", body, format="json")

    assert said.status_code == 200
    inline = said.context["inline_admin_formsets"][0].formset
    said_inline = {
        str(index): {field: list(messages) for field, messages in errors.items()}
        for index, errors in enumerate(inline.errors)
    }
    assert said_inline == _api_errors(answered)["deployments"] == {"0": {"priority": [PRIORITY_OUT_OF_RANGE]}}
    assert not PublicModel.objects.exists()


def test_the_deployment_page_keeps_the_same_priority_rule_and_saves_through_the_service(admin_client, calls, mock):
    route = make_route(provider=mock, public_id="house", priority=0)
    url = reverse("admin:providers_modelroute_change", args=[route.pk])
    data = {"model": route.model_id, "provider": mock.pk, "upstream_model": "house", "weight": "1", "active": "on"}
    data.update({"costs-TOTAL_FORMS": "0", "costs-INITIAL_FORMS": "0"})

    refused = admin_client.post(url, {**data, "priority": "1000001"})
    accepted = admin_client.post(url, {**data, "priority": "1000000"})

    assert _console_errors(refused) == {"priority": [PRIORITY_OUT_OF_RANGE]}
    assert accepted.status_code == 302, _console_errors(accepted)
    assert [(call["route"].pk, call["fields"]["priority"]) for call in calls("model_route_update")] == [
        (route.pk, 1_000_000)
    ]
    assert ModelRoute.objects.get().priority == 1_000_000


# --- what an accepted save does ---------------------------------------------------------------------------------


@pytest.fixture
def calls(monkeypatch) -> Callable[[str], list[dict[str, Any]]]:
    """Records each call the console makes to the services it writes through, and lets it through."""
    made: dict[str, list[dict[str, Any]]] = {}

    def spy(name: str) -> None:
        real = getattr(services, name)

        def recorded(**kwargs: Any) -> Any:
            made.setdefault(name, []).append(kwargs)
            return real(**kwargs)

        # The console holds its own references to the services; a console that wrote past them has none.
        monkeypatch.setattr(console, name, recorded, raising=False)

    for name in (
        "provider_create",
        "provider_update",
        "public_model_create",
        "public_model_update",
        "public_model_set_deployments",
        "model_route_add",
        "model_route_update",
    ):
        spy(name)
    return lambda name: made.get(name, [])


def _effects(callbacks: list[Callable[[], Any]], *, after: int = 0) -> tuple[list[tuple[str, str]], int]:
    """The audit entries written (those after entry `after`), and the snapshot reloads announced once the change
    commits."""
    entries = AuditEntry.objects.filter(pk__gt=after).order_by("pk").values_list("action", "model_label")
    return list(entries), sum(1 for callback in callbacks if callback is invalidation.publish)


def _last_entry() -> int:
    return AuditEntry.objects.order_by("pk").values_list("pk", flat=True).last() or 0


def test_a_provider_added_in_the_console_is_created_by_the_service_once(
    admin_client, calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            reverse("admin:providers_provider_add"),
            _provider_form(credential="sk-1", extra_headers='{"X-Org": "o"}', _continue="1"),
        )

    assert response.status_code == 302, _console_errors(response)
    provider = Provider.objects.get()
    assert response["Location"] == reverse("admin:providers_provider_change", args=[provider.pk])
    assert [call["name"] for call in calls("provider_create")] == ["upstream"]
    assert (calls("provider_create")[0]["credential"], calls("provider_create")[0]["extra_headers"]) == (
        "sk-1",
        {"X-Org": "o"},
    )
    assert _effects(callbacks) == ([("create", "providers.provider")], 1)


def test_a_provider_added_through_either_leaves_the_same_trace(admin_client, api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as by_console:
        said = admin_client.post(reverse("admin:providers_provider_add"), _provider_form(credential="sk-1"))
    assert said.status_code == 302, _console_errors(said)
    console_trace, seen = _effects(by_console), _last_entry()
    with django_capture_on_commit_callbacks() as by_api:
        body = {"name": "other", "kind": "openai", "base_url": "https://a.test/v1", "credential": "sk-2"}
        answered = api.post("/api/providers/", body, format="json")

    assert answered.status_code == 201, answered.content
    assert console_trace == _effects(by_api, after=seen) == ([("create", "providers.provider")], 1)


def test_a_provider_changed_in_the_console_keeps_its_secrets_unless_told_and_is_saved_once(
    admin_client, calls, django_capture_on_commit_callbacks
):
    provider = make_provider(
        name="upstream",
        kind="openai",
        base_url="https://api.openai.test/v1",
        credential="sk-old",
        extra_headers={"X": "1"},
    )
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(url, _provider_form(read_timeout="30", clear_extra_headers="on"))

    assert response.status_code == 302, _console_errors(response)
    (call,) = calls("provider_update")
    assert (call["provider"].pk, call["fields"]["read_timeout"], call["credential"], call["extra_headers"]) == (
        provider.pk,
        30.0,
        None,
        {},
    )
    provider.refresh_from_db()
    assert (provider.read_timeout, provider.has_credential, provider.extra_headers_encrypted) == (30.0, True, "")
    assert _effects(callbacks) == ([("update", "providers.provider")], 1)


def test_a_public_model_added_in_the_console_is_made_by_the_services_once(
    admin_client, calls, mock, django_capture_on_commit_callbacks
):
    data = _model_form(mock, **{"deployments-TOTAL_FORMS": "2"})
    data.update({"deployments-1-provider": mock.pk, "deployments-1-upstream_model": "house-b"})
    data.update({"deployments-1-priority": "1", "deployments-1-weight": "2", "deployments-1-active": "on"})
    data["_continue"] = "1"

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(reverse("admin:providers_publicmodel_add"), data)

    assert response.status_code == 302, _console_errors(response)
    model = PublicModel.objects.get()
    assert response["Location"] == reverse("admin:providers_publicmodel_change", args=[model.pk])
    assert [call["public_id"] for call in calls("public_model_create")] == ["house"]
    (deployments,) = calls("public_model_set_deployments")
    assert [(d["upstream_model"], d["priority"], d["weight"]) for d in deployments["deployments"]] == [
        ("house-a", 0, 1),
        ("house-b", 1, 2),
    ]
    assert [(r.upstream_model, r.priority, r.weight) for r in model.deployments.all()] == [
        ("house-a", 0, 1),
        ("house-b", 1, 2),
    ]
    entries = [
        ("create", "providers.publicmodel"),
        ("create", "providers.modelroute"),
        ("create", "providers.modelroute"),
    ]
    assert _effects(callbacks) == (entries, 3)


def _stored_house(provider: Provider) -> ModelRoute:
    """The first deployment of a public model stored just as _model_form() shows it, so a form sent back unchanged
    changes nothing of the model."""
    unticked = {f"supports_{name}": False for name in ("streaming", "tools", "json_mode")}
    return make_route(
        provider=provider, public_id="house", upstream_model="house-a", retry_on=["connect", "5xx"], **unticked
    )


def _change_form(model: PublicModel, routes: list[ModelRoute], **changes: Any) -> dict[str, Any]:
    data = _model_form(routes[0].provider, public_id=model.public_id)
    data.update({"deployments-TOTAL_FORMS": str(len(routes)), "deployments-INITIAL_FORMS": str(len(routes))})
    for index, route in enumerate(routes):
        prefix = f"deployments-{index}"
        data.update({f"{prefix}-id": route.pk, f"{prefix}-model": model.pk, f"{prefix}-provider": route.provider_id})
        data.update({f"{prefix}-upstream_model": route.upstream_model, f"{prefix}-priority": route.priority})
        data.update({f"{prefix}-weight": route.weight, f"{prefix}-active": "on"})
    return {**data, **changes}


def test_a_change_of_one_deployment_through_either_saves_that_one_only(
    admin_client, api, mock, django_capture_on_commit_callbacks
):
    first = _stored_house(mock)
    second = make_route(provider=mock, public_id="house", upstream_model="house-b", priority=1)
    model = first.model

    with django_capture_on_commit_callbacks() as by_console:
        response = admin_client.post(
            reverse("admin:providers_publicmodel_change", args=[model.pk]),
            _change_form(model, [first, second], **{"deployments-1-weight": "5"}),
        )
    assert response.status_code == 302, _console_errors(response)
    console_trace, seen = _effects(by_console), _last_entry()
    given = [{"id": route.pk, "provider": "mock", "upstream_model": route.upstream_model} for route in (first, second)]
    with django_capture_on_commit_callbacks() as by_api:
        answered = api.patch(
            f"/api/models/{model.pk}/",
            {"deployments": [{**given[0], "weight": 1}, {**given[1], "weight": 7}]},
            format="json",
        )
    assert answered.status_code == 200, answered.content

    # The model is saved as it was (no entry, one reload), and only the changed deployment is saved again.
    assert console_trace == _effects(by_api, after=seen) == ([("update", "providers.modelroute")], 2)
    assert list(ModelRoute.objects.order_by("priority").values_list("weight", flat=True)) == [1, 7]


def test_a_deployment_deleted_in_the_inline_is_deleted_by_the_service(admin_client, calls, mock):
    first = _stored_house(mock)
    second = make_route(provider=mock, public_id="house", upstream_model="house-b", priority=1)
    url = reverse("admin:providers_publicmodel_change", args=[first.model_id])

    response = admin_client.post(url, _change_form(first.model, [first, second], **{"deployments-1-DELETE": "on"}))

    assert response.status_code == 302, _console_errors(response)
    (call,) = calls("public_model_set_deployments")
    assert [given["id"] for given in call["deployments"]] == [first.pk]
    assert list(ModelRoute.objects.values_list("upstream_model", flat=True)) == ["house-a"]
    assert list(AuditEntry.objects.values_list("action", "object_id")) == [("delete", str(second.pk))]


def test_a_deployment_added_on_its_own_page_is_added_by_the_service(admin_client, calls, mock):
    model = make_route(provider=mock, public_id="house").model
    data = {"model": model.pk, "provider": mock.pk, "upstream_model": "house-b", "priority": "3", "weight": "2"}
    data.update({"active": "on", "costs-TOTAL_FORMS": "0", "costs-INITIAL_FORMS": "0", "_continue": "1"})

    response = admin_client.post(reverse("admin:providers_modelroute_add"), data)

    assert response.status_code == 302, _console_errors(response)
    (call,) = calls("model_route_add")
    assert (call["model"].pk, call["upstream_model"], call["priority"], call["weight"]) == (model.pk, "house-b", 3, 2)
    added = ModelRoute.objects.get(upstream_model="house-b")
    assert response["Location"] == reverse("admin:providers_modelroute_change", args=[added.pk])
    assert list(AuditEntry.objects.values_list("action", "object_id")) == [("create", str(added.pk))]


def test_a_deployment_added_elsewhere_since_the_page_was_read_is_kept(admin_client, mock):
    first = _stored_house(mock)
    url = reverse("admin:providers_publicmodel_change", args=[first.model_id])
    read = _change_form(first.model, [first], **{"deployments-0-weight": "4"})
    later = make_route(provider=mock, public_id="house", upstream_model="house-late")

    response = admin_client.post(url, read)

    assert response.status_code == 302, _console_errors(response)
    assert list(ModelRoute.objects.order_by("pk").values_list("pk", "weight")) == [(first.pk, 4), (later.pk, 1)]
