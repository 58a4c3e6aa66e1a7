"""Setup changes reach a running server: a setup file applied with `portico config apply`, and a tenant created
and deactivated through the management API, are served and refused as they say, to the official SDK.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import openai
import pytest
from django.core.management import call_command

from billing.tests.factories import make_user, token_headers
from tenants.models import Tenant
from tenants.tests.factories import make_key
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

SETTLE_TIMEOUT = 10.0


def _file(upstream: FakeUpstream, tag: str, *, with_tenant: bool) -> str:
    tenant = (
        f"""
tenants:
  - slug: team-{tag}
    name: Team {tag}
    allowed_models: [house-{tag}]
"""
        if with_tenant
        else "\ntenants: []\n"
    )
    return (
        f"""
providers:
  - name: primary-{tag}
    kind: openai
    base_url: {upstream.base_url}
    credential: ${{PRIMARY_{tag.upper()}}}
models:
  - public_id: house-{tag}
    capabilities: [chat, streaming]
    prices:
      - {{effective_from: "2026-01-01T00:00:00Z", input_per_million: 1, output_per_million: 2}}
    deployments:
      - {{provider: primary-{tag}, upstream_model: house-up-{tag}}}
"""
        + tenant
    )


def _apply(tmp_path: Path, text: str, *options: str) -> str:
    path = tmp_path / "portico.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("config", "apply", str(path), *options, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_setup_file_is_served_with_its_secret_then_pruned_away(
    portico: PorticoServer, upstream: FakeUpstream, settle: Settle, tag: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(f"PRIMARY_{tag.upper()}", f"sk-primary-{tag}")
    _apply(tmp_path, _file(upstream, tag, with_tenant=True))
    key = make_key(tenant=Tenant.objects.get(slug=f"team-{tag}"), name="ci")
    upstream.script(f"house-up-{tag}", Reply("Served from the file."))
    settle()

    with portico.client(key.plaintext) as client:
        listed = [model.id for model in client.models.list()]
        completion = client.chat.completions.create(
            model=f"house-{tag}", messages=[{"role": "user", "content": "hello"}]
        )

    assert listed == [f"house-{tag}"]
    assert completion.choices[0].message.content == "Served from the file."
    [received] = upstream.received(f"house-up-{tag}")
    assert received.headers["authorization"] == f"Bearer sk-primary-{tag}"

    printed = _apply(tmp_path, _file(upstream, tag, with_tenant=False), "--prune")

    assert f"  - team-{tag}: deactivated" in printed
    portico.wait_for_status(key.plaintext, 401, deadline=time.monotonic() + SETTLE_TIMEOUT)


def test_a_tenant_created_through_the_api_is_served_and_refused_once_deactivated(
    portico: PorticoServer, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    operator = token_headers(make_user(staff=True))
    provider = {"name": f"api-{tag}", "kind": "openai", "base_url": upstream.base_url, "credential": "sk-api"}
    assert portico.http.post("/api/providers/", json=provider, headers=operator).status_code == 201
    model = {
        "public_id": f"api-model-{tag}",
        "deployments": [{"provider": f"api-{tag}", "upstream_model": f"up-{tag}"}],
    }
    assert portico.http.post("/api/models/", json=model, headers=operator).status_code == 201
    created = portico.http.post(
        "/api/tenants/",
        json={"name": "Initech", "slug": f"initech-{tag}", "allowed_models": [f"api-model-{tag}"]},
        headers=operator,
    )
    assert created.status_code == 201, created.text
    key = portico.http.post("/api/keys/", json={"tenant": created.json()["id"], "name": "ci"}, headers=operator).json()
    upstream.script(f"up-{tag}", Reply("Served to a tenant the API made."))
    settle()

    with portico.client(key["key"]) as client:
        completion = client.chat.completions.create(
            model=f"api-model-{tag}", messages=[{"role": "user", "content": "hello"}]
        )
    deactivated = portico.http.delete(f"/api/tenants/{created.json()['id']}/", headers=operator)
    portico.wait_for_status(key["key"], 401, deadline=time.monotonic() + SETTLE_TIMEOUT)

    assert completion.choices[0].message.content == "Served to a tenant the API made."
    assert deactivated.status_code == 204
    with portico.client(key["key"]) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()
