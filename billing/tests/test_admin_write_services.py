"""The console writes prices and tenants through the management API's services: the same refusals, the same words."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.forms import MultiWidget
from django.urls import reverse
from django.utils import timezone

from billing.models import DeploymentPrice, Price
from billing.services import deployment_price_add, price_add
from billing.tests.factories import make_user, token_headers
from providers.tests.factories import make_route
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

KINDS = {
    # admin model name, API collection, how a row is added, the inline's prefix on the owner's page
    "price": ("price", "prices", lambda route, at: price_add(model=route.model, **_amounts(at)), "prices"),
    "deploymentprice": (
        "deploymentprice",
        "deployment-prices",
        lambda route, at: deployment_price_add(deployment=route, **_amounts(at)),
        "costs",
    ),
}


def _amounts(at):
    return {"input_per_million": Decimal(1), "output_per_million": Decimal(2), "effective_from": at}


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def route(db):
    return make_route(public_id="gpt-4o")


def _in_effect(route, kind: str):
    return KINDS[kind][2](route, timezone.now() - timedelta(days=1))


def _scheduled(route, kind: str):
    return KINDS[kind][2](route, timezone.now() + timedelta(days=1))


def _said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("kind", KINDS)
def test_both_refuse_to_withdraw_a_price_in_effect_in_the_same_words(admin_client, client, operator, route, kind):
    name, collection, _add, _prefix = KINDS[kind]
    row = _in_effect(route, kind)

    api = client.delete(f"/api/{collection}/{row.pk}/", headers=operator)
    console = admin_client.post(reverse(f"admin:billing_{name}_delete", args=[row.pk]), {"post": "yes"})

    assert api.status_code == 400
    assert console.status_code == 302
    assert _said(console) == api.json()
    assert api.json()[0].endswith("is in effect: add a later one instead.")
    assert type(row).objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("kind", KINDS)
def test_both_withdraw_a_scheduled_price(admin_client, client, operator, route, kind):
    name, collection, _add, _prefix = KINDS[kind]
    first, second = _scheduled(route, kind), KINDS[kind][2](route, timezone.now() + timedelta(days=2))

    api = client.delete(f"/api/{collection}/{first.pk}/", headers=operator)
    console = admin_client.post(reverse(f"admin:billing_{name}_delete", args=[second.pk]), {"post": "yes"})

    assert (api.status_code, console.status_code) == (204, 302)
    assert not type(first).objects.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_the_console_refuses_to_change_a_price_in_effect_in_the_api_s_words(
    admin_client, client, operator, route, kind
):
    name, collection, _add, _prefix = KINDS[kind]
    row = _in_effect(route, kind)
    owner = {"route": route.model_id} if kind == "price" else {"deployment": route.pk}
    local = timezone.localtime(row.effective_from)
    body = {
        **owner,
        "effective_from_0": local.strftime("%Y-%m-%d"),
        "effective_from_1": local.strftime("%H:%M:%S"),
        "input_per_million": "9",
        "output_per_million": "2",
    }

    console = admin_client.post(reverse(f"admin:billing_{name}_change", args=[row.pk]), body)
    api_words = client.delete(f"/api/{collection}/{row.pk}/", headers=operator).json()

    assert console.status_code == 200
    assert console.context["adminform"].form.non_field_errors() == api_words
    row.refresh_from_db()
    assert row.input_per_million == Decimal(1)


def test_the_console_changes_a_scheduled_price_and_adds_one_through_the_service(admin_client, route):
    row = _scheduled(route, "price")
    local = timezone.localtime(row.effective_from)
    body = {
        "route": route.model_id,
        "effective_from_0": local.strftime("%Y-%m-%d"),
        "effective_from_1": local.strftime("%H:%M:%S"),
        "input_per_million": "9",
        "output_per_million": "2",
    }

    changed = admin_client.post(reverse("admin:billing_price_change", args=[row.pk]), body)
    added = admin_client.post(reverse("admin:billing_price_add"), {**body, "effective_from_0": "2030-01-01"})

    assert (changed.status_code, added.status_code) == (302, 302)
    row.refresh_from_db()
    assert row.input_per_million == Decimal(9)
    assert Price.objects.count() == 2


def _history_form(route, kind: str, rows, **changes) -> dict[str, str]:
    """The public model's (prices) or the deployment's (provider costs) page, posted with its history inline."""
    prefix = KINDS[kind][3]
    body = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(len(rows))}
    for index, row in enumerate(rows):
        local = timezone.localtime(row.effective_from)
        body.update(
            {
                f"{prefix}-{index}-id": str(row.pk),
                f"{prefix}-{index}-effective_from_0": local.strftime("%Y-%m-%d"),
                f"{prefix}-{index}-effective_from_1": local.strftime("%H:%M:%S"),
                f"{prefix}-{index}-input_per_million": "1",
                f"{prefix}-{index}-output_per_million": "2",
            }
        )
    body.update({f"{prefix}-{key}": value for key, value in changes.items()})
    return body


def _posted(form) -> dict:
    """What a browser posts back for `form` as the page rendered it, unchanged."""
    data: dict = {}
    for field in form:
        value = field.value()
        widget = field.field.widget
        if isinstance(widget, MultiWidget):
            for index, part in enumerate(widget.decompress(value)):
                if part is not None:
                    data[f"{field.html_name}_{index}"] = str(part)
        elif isinstance(value, bool):
            if value:
                data[field.html_name] = "on"
        elif isinstance(value, list | tuple):
            data[field.html_name] = [str(getattr(item, "pk", item)) for item in value]
        elif value is not None:
            data[field.html_name] = str(getattr(value, "pk", value))
    return data


def _owner_page(admin_client, route, kind: str):
    """The owner's page address, and what posting it back unchanged sends (its main form and every inline)."""
    url = (
        reverse("admin:providers_publicmodel_change", args=[route.model_id])
        if kind == "price"
        else reverse("admin:providers_modelroute_change", args=[route.pk])
    )
    page = admin_client.get(url)
    fields = _posted(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        fields.update(_posted(formset.management_form))
        for form in formset.forms:
            fields.update(_posted(form))
    return url, fields


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("change", [{"0-input_per_million": "9"}, {"0-DELETE": "on"}], ids=["changed", "deleted"])
def test_a_history_inline_refuses_a_price_in_effect_in_the_api_s_words(
    admin_client, client, operator, route, kind, change
):
    row = _in_effect(route, kind)
    url, fields = _owner_page(admin_client, route, kind)

    response = admin_client.post(url, {**fields, **_history_form(route, kind, [row], **change)})
    api_words = client.delete(f"/api/{KINDS[kind][1]}/{row.pk}/", headers=operator).json()

    assert response.status_code == 200, "the console saved it"
    assert api_words[0] in response.content.decode()
    row.refresh_from_db()
    assert row.input_per_million == Decimal(1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_history_inline_withdraws_a_scheduled_price_and_adds_a_new_one(admin_client, route, kind):
    row = _scheduled(route, kind)
    url, fields = _owner_page(admin_client, route, kind)
    prefix = KINDS[kind][3]
    body = {**fields, **_history_form(route, kind, [row], **{"0-DELETE": "on"})}
    body.update(
        {
            f"{prefix}-TOTAL_FORMS": "2",
            f"{prefix}-1-effective_from_0": "2031-01-01",
            f"{prefix}-1-effective_from_1": "00:00:00",
            f"{prefix}-1-input_per_million": "4",
            f"{prefix}-1-output_per_million": "5",
        }
    )

    response = admin_client.post(url, body)

    assert response.status_code == 302, response.context and [
        formset.formset.errors for formset in response.context["inline_admin_formsets"]
    ]
    model = Price if kind == "price" else DeploymentPrice
    assert list(model.objects.values_list("input_per_million", flat=True)) == [Decimal(4)]


# --- Tenants ------------------------------------------------------------------------------------------


def _tenant_form(**fields) -> dict:
    return {
        "active": "on",
        "describe_models": "on",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        **fields,
    }


def test_both_refuse_a_taken_slug_in_the_same_words(admin_client, client, operator, tenant):
    console = admin_client.post(reverse("admin:tenants_tenant_add"), _tenant_form(name="Again", slug=tenant.slug))
    api = client.post(
        "/api/tenants/", {"name": "Again", "slug": tenant.slug}, content_type="application/json", headers=operator
    )

    assert console.status_code == 200
    assert api.status_code == 400
    assert console.context["adminform"].form.errors["slug"] == api.json()["slug"]


@pytest.mark.parametrize(
    ("access", "chosen", "restricted", "listed"),
    [
        ("every", [], False, set()),
        ("listed", ["gpt-4o"], True, {"gpt-4o"}),
        ("listed", [], True, set()),  # no model at all, as the API's [] means
    ],
    ids=["every model", "some models", "no model"],
)
def test_the_console_saves_a_tenant_s_three_model_states_as_the_api_does(
    admin_client, client, operator, route, access, chosen, restricted, listed
):
    ids = [route.model_id] if chosen else []
    admin_client.post(
        reverse("admin:tenants_tenant_add"),
        _tenant_form(name="Console", slug="console", model_access=access, allowed_models=ids),
    )
    client.post(
        "/api/tenants/",
        {"name": "Api", "slug": "api", "allowed_models": None if access == "every" else chosen},
        content_type="application/json",
        headers=operator,
    )

    for slug in ("console", "api"):
        tenant = Tenant.objects.get(slug=slug)
        assert tenant.models_restricted is restricted, slug
        assert set(tenant.allowed_models.values_list("public_id", flat=True)) == listed, slug


def test_saving_a_tenant_with_no_model_keeps_it_with_no_model(admin_client, route):
    tenant = Tenant.objects.create(name="Shut", slug="shut", models_restricted=True)
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    assert form["model_access"].value() == "listed"
    body = _posted(form)
    for inline in page.context["inline_admin_formsets"]:
        body.update(_posted(inline.formset.management_form))

    saved = admin_client.post(url, {**body, "name": "Shut down"})

    assert saved.status_code == 302, saved.context and saved.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.name == "Shut down"
    assert tenant.models_restricted is True
    assert not tenant.allowed_models.exists()
