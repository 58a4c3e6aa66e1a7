"""A key created since this process's snapshot was built is served at once, by one rate-limited reload."""

from __future__ import annotations

import pytest

from gateway import auth
from gateway import snapshot as snapshot_module
from gateway.snapshot import Snapshot, SnapshotStore, build_snapshot
from gateway.tests.test_snapshot import in_worker_thread
from tenants.models import Tenant
from tenants.tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    built: list[Snapshot] = []

    def build() -> Snapshot:
        built.append(build_snapshot())
        return built[-1]

    monkeypatch.setattr(snapshot_module, "build_snapshot", build)
    monkeypatch.setattr(auth, "store", SnapshotStore())
    monkeypatch.setattr(auth, "unknown_key_reloads", auth._UnknownKeyReloads(gap=60.0))
    return built


async def test_a_key_created_after_the_snapshot_is_granted_by_one_reload(tenant: Tenant, builds: list[Snapshot]):
    await auth.store.get()
    issued = await in_worker_thread(lambda: make_key(tenant=tenant, name="new"))
    grant = await auth.grant_for(issued.plaintext)
    assert grant is not None
    assert grant.key_id == issued.api_key.pk
    assert len(builds) == 2


async def test_made_up_keys_reload_at_most_once_per_gap(tenant: Tenant, builds: list[Snapshot]):
    await auth.store.get()
    made_up = "pk-" + "A" * 48
    for _ in range(5):
        assert await auth.grant_for(made_up) is None
    assert len(builds) == 2  # the first load, then one reload for the whole burst


async def test_a_wrong_secret_for_a_known_prefix_does_not_reload(tenant: Tenant, builds: list[Snapshot]):
    issued = await in_worker_thread(lambda: make_key(tenant=tenant, name="known"))
    await auth.store.get()
    wrong = issued.plaintext[:-4] + ("AAAA" if not issued.plaintext.endswith("AAAA") else "BBBB")
    assert await auth.grant_for(wrong) is None
    assert len(builds) == 1
