"""A script sets up a working gateway through the management API alone, and a tenant's SDK is served.

Providers, a public model with two deployments and a key are created with
plain HTTP calls to /api/ on a real server; the official SDK then calls
/v1/chat/completions against the fake upstream.
"""

from __future__ import annotations

from typing import Any

import pytest

from billing.tests.factories import make_user, token_headers
from providers.models import PublicModel
from tenants.services import tenant_set_models
from tenants.tests.factories import make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]


def _post(portico: PorticoServer, headers: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = portico.http.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_script_sets_up_providers_a_model_and_a_key_and_the_sdk_is_served(
    portico: PorticoServer, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    operator = token_headers(make_user(staff=True))
    for name, credential in ((f"primary-{tag}", f"sk-primary-{tag}"), (f"backup-{tag}", f"sk-backup-{tag}")):
        provider = {"name": name, "kind": "openai", "base_url": upstream.base_url, "credential": credential}
        assert _post(portico, operator, "/api/providers/", provider)["has_credential"] is True
    model = _post(
        portico,
        operator,
        "/api/models/",
        {
            "public_id": f"house-{tag}",
            "owned_by": "acme-labs",
            "capabilities": ["chat", "streaming"],
            "deployments": [
                {"provider": f"primary-{tag}", "upstream_model": f"house-a-{tag}", "priority": 0},
                {"provider": f"backup-{tag}", "upstream_model": f"house-b-{tag}", "priority": 1},
            ],
        },
    )
    tenant = make_tenant(slug=f"acme-{tag}")  # tenants are made in the console or the shell; keys by the API
    key = _post(
        portico, operator, "/api/keys/", {"tenant": tenant.pk, "name": "ci", "allowed_models": [model["public_id"]]}
    )
    upstream.script(f"house-a-{tag}", Reply("Served by the first deployment."))
    settle()

    with portico.client(key["key"]) as client:
        listed = [m.id for m in client.models.list()]
        completion = client.chat.completions.create(
            model=model["public_id"], messages=[{"role": "user", "content": "hello"}]
        )

    assert listed == [model["public_id"]]
    assert completion.model == model["public_id"]
    assert completion.choices[0].message.content == "Served by the first deployment."
    [received] = upstream.received(f"house-a-{tag}")
    assert received.headers["authorization"] == f"Bearer sk-primary-{tag}"
    assert not upstream.received(f"house-b-{tag}")


def test_a_tenant_admin_reads_their_models_from_the_server_without_provider_details(
    portico: PorticoServer, upstream: FakeUpstream, tag: str
) -> None:
    operator = token_headers(make_user(staff=True))
    provider = {"name": f"secret-provider-{tag}", "kind": "openai", "base_url": upstream.base_url}
    _post(portico, operator, "/api/providers/", provider)
    for public_id in (f"theirs-{tag}", f"kept-{tag}"):
        deployment = {"provider": provider["name"], "upstream_model": f"up-{public_id}"}
        _post(portico, operator, "/api/models/", {"public_id": public_id, "deployments": [deployment]})
    tenant = make_tenant(slug=f"acme-{tag}")
    tenant_set_models(tenant=tenant, model_ids=[PublicModel.objects.get(public_id=f"theirs-{tag}").pk])
    admin = token_headers(make_user(admin_of=[tenant]))

    listed = portico.http.get("/api/models/", headers=admin)
    providers = portico.http.get("/api/providers/", headers=admin)

    assert listed.status_code == 200
    assert [row["public_id"] for row in listed.json()["results"]] == [f"theirs-{tag}"]
    assert provider["name"] not in listed.text
    assert providers.status_code == 403
