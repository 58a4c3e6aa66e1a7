"""A revoked key stops working on every server process within a second (Redis pub/sub invalidation)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from tenants.services import api_key_revoke
from tenants.tests.factories import IssuedKey, make_key
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

WITHIN = 1.0


@pytest.fixture
def servers(portico: PorticoServer, second_portico: PorticoServer) -> tuple[PorticoServer, PorticoServer]:
    if not settings.REDIS_URL:
        pytest.skip("cross-process invalidation within a second needs REDIS_URL")
    return portico, second_portico


def test_a_revoked_key_is_refused_by_every_server_within_a_second(
    servers: tuple[PorticoServer, PorticoServer], key: IssuedKey, settle: Settle
) -> None:
    settle(*servers)
    assert [server.status_with(key.plaintext) for server in servers] == [200, 200]

    revoked_at = time.monotonic()
    api_key_revoke(api_key=key.api_key)
    refused_at = [server.wait_for_status(key.plaintext, 401, deadline=revoked_at + WITHIN) for server in servers]

    assert max(refused_at) - revoked_at < WITHIN


def test_revoking_one_key_leaves_the_others_working(
    servers: tuple[PorticoServer, PorticoServer], key: IssuedKey, settle: Settle
) -> None:
    teammate = make_key(tenant=key.api_key.tenant, name="teammate")
    settle(*servers)

    api_key_revoke(api_key=key.api_key)
    for server in servers:
        server.wait_for_status(key.plaintext, 401, deadline=time.monotonic() + WITHIN)

    assert [server.status_with(teammate.plaintext) for server in servers] == [200, 200]


def test_a_new_key_works_on_every_server_within_a_second(servers: tuple[PorticoServer, PorticoServer]) -> None:
    created_at = time.monotonic()
    issued = make_key(name="fresh")
    accepted_at = [server.wait_for_status(issued.plaintext, 200, deadline=created_at + WITHIN) for server in servers]

    assert max(accepted_at) - created_at < WITHIN
