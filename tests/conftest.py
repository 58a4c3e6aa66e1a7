"""Fixtures of the end-to-end tests: real servers for the session, fresh committed rows for each test.

The fake upstream and Portico start once per session. A test's rows must be
committed for the servers to see them, so tests use `committed_db` rather than
pytest-django's `transactional_db`: that one empties the tables with a TRUNCATE
after each test, and a TRUNCATE (which locks table after table exclusively)
deadlocks with a server's snapshot reload (whose joins lock table after table
in another order), costing a second of deadlock detection and now and then a
failed teardown. `committed_db` removes the rows with plain DELETEs instead,
which take row locks only.

Either way no signal announces the clean-up, so the servers do not forget old
rows until their next reload: every test makes rows with names of its own
(`tag`), and once it has written them calls `settle()`, which returns as soon
as the servers' snapshots hold them.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, transaction
from django.test.utils import override_settings, setup_databases, teardown_databases
from openai import OpenAI
from pytest_django import DjangoDbBlocker

from billing.models import (
    Budget,
    BudgetAlert,
    DailyDeploymentRollup,
    DailyUsageRollup,
    DeploymentPrice,
    HourlyDeploymentRollup,
    HourlyUsageRollup,
    Price,
    RateLimit,
    UsageRecord,
)
from caching.models import CachePolicy
from gateway.models import BreakerTransition
from notifications.models import AlertChannel, AlertDelivery
from providers.models import ModelRoute, Provider, PublicModel
from providers.tests.factories import make_provider, make_route
from tenants.models import ApiKey, Tenant, TenantMembership
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.browser import browser, browser_context, browser_errors, page  # noqa: F401 - fixtures for every test
from tests.celery_processes import celery_env, start_beat, start_worker  # noqa: F401 - fixtures for every test
from tests.fakes.fleet import FakeFleet
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import MAX_BODY_BYTES, PorticoServer, Settle, configured_database_name, database_url_for, serving

SERVER_REDIS_PREFIX = f"{settings.PORTICO_REDIS_PREFIX}-e2e"
# How long a change committed here may take to reach a server's snapshot before a test gives up.
SETTLE_TIMEOUT = 5.0


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def upstreams() -> Iterator[FakeFleet]:
    """Three fake upstreams, `fake-1` to `fake-3`, for public models served by several deployments."""
    with FakeFleet(3) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def test_database(django_db_setup: None, django_db_blocker: DjangoDbBlocker, django_db_keepdb: bool) -> Iterator[str]:
    """The name of the test database that this process and the servers share.

    pytest-django creates it only for a session that holds tests marked with
    `django_db` (or using its `db` fixtures); a run of these tests alone has
    none, so it is created here then, the way pytest-django would.
    """
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end tests need a database that a server process can share (Postgres)")
    if connection.settings_dict["NAME"] != configured_database_name():
        yield connection.settings_dict["NAME"]
        return
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={DEFAULT_DB_ALIAS}, keepdb=django_db_keepdb)
    yield connection.settings_dict["NAME"]
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def server_env(test_database: str) -> dict[str, str]:
    """What the servers need besides this process's environment."""
    return {
        "DATABASE_URL": database_url_for(test_database),
        # A channel of their own: other tests' commits (outside `committed_db`) must not make them reload.
        "PORTICO_REDIS_PREFIX": SERVER_REDIS_PREFIX,
        "PORTICO_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "PORTICO_LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="session")
def portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    yield from serving(server_env, tmp_path_factory.mktemp("portico") / "server.log")


@pytest.fixture(scope="session")
def second_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    """Another worker process of the same deployment, for what must hold across processes."""
    yield from serving(server_env, tmp_path_factory.mktemp("portico-2") / "server.log")


@pytest.fixture
def committed_db(test_database: str, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """Database access in autocommit mode, announced to the servers; the rows are deleted afterwards."""
    with django_db_blocker.unblock(), override_settings(PORTICO_REDIS_PREFIX=SERVER_REDIS_PREFIX):
        try:
            yield
        finally:
            _delete_rows()


def _delete_rows() -> None:
    tables: list[str] = []
    children_first = (
        AlertDelivery,
        AlertChannel,
        HourlyUsageRollup,
        DailyUsageRollup,
        HourlyDeploymentRollup,
        DailyDeploymentRollup,
        TenantMembership,
        CachePolicy,
        BudgetAlert,
        Budget,
        RateLimit,
        Price,
        DeploymentPrice,
        UsageRecord,
        BreakerTransition,
        ApiKey,
        Tenant,
        ModelRoute,
        PublicModel,
        Provider,
    )
    for model in children_first:
        tables += [field.remote_field.through._meta.db_table for field in model._meta.local_many_to_many]
        tables.append(model._meta.db_table)
    # A server's ledger writer may be recording budget alerts for the rows being deleted: Postgres then
    # breaks the deadlock by failing one side, and this side simply tries again.
    for attempt in range(3):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for table in tables:
                    cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own tables
            return
        except OperationalError:
            if attempt == 2:
                raise


@pytest.fixture
def settle(committed_db: None, portico: PorticoServer) -> Settle:
    """Return once the servers' snapshots hold every row committed so far.

    Each call commits a new probe key and waits until a server accepts it. A
    snapshot that holds the probe was read, every query of it, after the probe
    was committed, so it holds everything committed before too: new routes,
    revocations, inactive tenants.
    """

    def settle(*servers: PorticoServer) -> None:
        probe = make_key(name="snapshot probe")
        for server in servers or (portico,):
            server.wait_for_status(probe.plaintext, 200, deadline=time.monotonic() + SETTLE_TIMEOUT)

    return settle


@pytest.fixture
def tag() -> str:
    """A suffix that makes this test's names its own."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def key(committed_db: None, tag: str) -> IssuedKey:
    return make_key(tenant=make_tenant(slug=f"tenant-{tag}"), name="integration")


@pytest.fixture
def mock_provider(committed_db: None, tag: str) -> Provider:
    return make_provider(kind="mock", name=f"mock-{tag}")


@pytest.fixture
def echo_route(mock_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=mock_provider, public_id=f"mock-echo-{tag}", upstream_model="mock-echo")


@pytest.fixture
def upstream_credential(tag: str) -> str:
    return f"sk-fake-{tag}-{secrets.token_hex(12)}"


@pytest.fixture
def upstream_provider(committed_db: None, upstream: FakeUpstream, upstream_credential: str, tag: str) -> Provider:
    return make_provider(kind="openai", name=f"fake-{tag}", base_url=upstream.base_url, credential=upstream_credential)


@pytest.fixture
def upstream_route(upstream_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=upstream_provider, public_id=f"gpt-e2e-{tag}", upstream_model=f"fake-model-{tag}")


# deploy(public_id, upstream_model, urls=..., priorities=..., **model_fields): one deployment per base URL
Deploy = Callable[..., list[ModelRoute]]


@pytest.fixture
def deploy(committed_db: None, upstreams: FakeFleet, upstream_credential: str, tag: str) -> Deploy:
    """A public model served by one deployment per base URL (by default the fleet's three, in priority order).

    Each base URL gets one provider for the test, named after the fleet member (`fake-2-<tag>`) or `down-<tag>`
    for any other URL, so several models of a test share their providers as real deployments do.
    """
    providers: dict[str, Provider] = {}
    labels = {upstream.base_url: str(upstream.label) for upstream in upstreams}

    def provider_at(url: str) -> Provider:
        if url not in providers:
            name = f"{labels.get(url, 'down')}-{tag}"
            providers[url] = make_provider(kind="openai", name=name, base_url=url, credential=upstream_credential)
        return providers[url]

    def deploy(
        public_id: str, upstream_model: str, *, urls: Sequence[str] | None = None, **model_fields: Any
    ) -> list[ModelRoute]:
        urls = urls or [upstream.base_url for upstream in upstreams]
        return [
            make_route(
                provider=provider_at(url),
                public_id=public_id,
                upstream_model=upstream_model,
                priority=index,
                **(model_fields if index == 0 else {}),
            )
            for index, url in enumerate(urls)
        ]

    return deploy


@pytest.fixture
def client(portico: PorticoServer, key: IssuedKey) -> Iterator[OpenAI]:
    with portico.client(key.plaintext) as sdk:
        yield sdk
