"""/api/alert-channels/ seen by an operator, acme's admin, and globex's admin, who must never see acme's (404)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from notifications.models import AlertChannel
from notifications.tests.factories import SECRET, make_email_channel, make_webhook_channel
from providers.credentials import decrypt_credential
from tenants.models import Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import IssuedKey, management_token_headers

pytestmark = pytest.mark.django_db

URL = "/api/alert-channels/"


def admin_of(tenant: Tenant, name: str) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=name)
    membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return management_token_headers(user)


@pytest.fixture
def acme_admin(tenant: Tenant) -> dict[str, str]:
    return admin_of(tenant, "acme-admin")


@pytest.fixture
def globex_admin(outsider: IssuedKey) -> dict[str, str]:
    return admin_of(outsider.api_key.tenant, "globex-admin")


@pytest.fixture
def operator(db: None) -> dict[str, str]:
    return management_token_headers(get_user_model().objects.create_user(username="operator", is_staff=True))


def post(client: Client, headers: dict[str, str], **body: Any) -> Any:
    return client.post(URL, body, content_type="application/json", headers=headers)


def test_a_tenant_admin_adds_a_webhook_whose_secret_is_stored_encrypted_and_never_shown(
    client: Client, tenant: Tenant, acme_admin: dict[str, str]
) -> None:
    answer = post(
        client,
        acme_admin,
        tenant=tenant.pk,
        name="acme on-call",
        kind="webhook",
        url="https://hooks.example.com/acme",
        secret=SECRET,
        events=["budget_soft", "budget_hard"],
    )

    assert answer.status_code == 201, answer.content
    assert "secret" not in answer.json()
    assert answer.json()["has_secret"] is True
    channel = AlertChannel.objects.get(pk=answer.json()["id"])
    assert SECRET not in channel.secret_encrypted
    assert decrypt_credential(channel.secret_encrypted) == SECRET
    assert SECRET not in client.get(f"{URL}{channel.pk}/", headers=acme_admin).content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "webhook", "url": "https://hooks.example.com/x"}, "secret"),
        ({"kind": "webhook", "url": "https://hooks.example.com/x", "secret": "short"}, "secret"),
        ({"kind": "email", "emails": []}, "emails"),
        ({"kind": "email", "emails": ["not an address"]}, "emails"),
        ({"kind": "email", "emails": ["a@acme.example"], "events": ["breaker_open"]}, "events"),
        ({"kind": "email", "emails": ["a@acme.example"], "events": []}, "events"),
    ],
)
def test_a_channel_that_could_not_deliver_is_refused_naming_the_field(
    client: Client, tenant: Tenant, acme_admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    answer = post(client, acme_admin, **{"tenant": tenant.pk, "name": "x", "events": ["budget_soft"], **body})

    assert answer.status_code == 400
    assert field in answer.json()
    assert not AlertChannel.objects.exists()


def test_another_tenants_admin_sees_nothing_of_acmes_channels_and_cannot_add_one_for_it(
    client: Client, tenant: Tenant, globex_admin: dict[str, str]
) -> None:
    channel = make_email_channel(tenant=tenant)

    assert client.get(URL, headers=globex_admin).json()["results"] == []
    assert client.get(f"{URL}{channel.pk}/", headers=globex_admin).status_code == 404
    assert client.delete(f"{URL}{channel.pk}/", headers=globex_admin).status_code == 404
    answer = post(
        client, globex_admin, tenant=tenant.pk, name="x", kind="email", emails=["a@b.io"], events=["budget_soft"]
    )
    assert answer.status_code == 400
    assert AlertChannel.objects.count() == 1


def test_a_tenant_admin_sees_their_own_channels_and_an_operator_sees_every_one(
    client: Client, tenant: Tenant, outsider: IssuedKey, acme_admin: dict[str, str], operator: dict[str, str]
) -> None:
    acme = make_email_channel(tenant=tenant)
    globex = make_email_channel(tenant=outsider.api_key.tenant)
    operators = make_webhook_channel(url="https://hooks.example.com/ops")

    def ids(headers: dict[str, str]) -> list[int]:
        return sorted(row["id"] for row in client.get(URL, headers=headers).json()["results"])

    assert ids(acme_admin) == [acme.pk]
    assert ids(operator) == sorted([acme.pk, globex.pk, operators.pk])


def patch(client: Client, channel: AlertChannel, headers: dict[str, str], **body: Any) -> Any:
    return client.patch(f"{URL}{channel.pk}/", body, content_type="application/json", headers=headers)


def test_a_change_keeps_the_stored_secret(client: Client, tenant: Tenant, acme_admin: dict[str, str]) -> None:
    channel = make_webhook_channel(tenant=tenant, url="https://hooks.example.com/old")

    answer = patch(client, channel, acme_admin, url="https://hooks.example.com/new")

    assert answer.status_code == 200, answer.content
    channel.refresh_from_db()
    assert channel.url == "https://hooks.example.com/new"
    assert decrypt_credential(channel.secret_encrypted) == SECRET


def test_a_channels_tenant_is_fixed_once_created(
    client: Client, tenant: Tenant, outsider: IssuedKey, operator: dict[str, str]
) -> None:
    channel = make_email_channel(tenant=tenant)

    answer = patch(client, channel, operator, tenant=outsider.api_key.tenant_id, name="renamed")

    assert answer.status_code == 200, answer.content
    channel.refresh_from_db()
    assert (channel.tenant, channel.name) == (tenant, "renamed")
