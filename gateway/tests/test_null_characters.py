"""A NUL in a page's path or query string is a 400 before any view: Postgres would refuse it in a query (a 500)."""

from __future__ import annotations

import pytest
from django.http import HttpResponse

from gateway.null_characters import NullCharacterMiddleware

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/admin/batches/file/", {"status__exact": "\x00"}),  # a list filter on a text column
        ("/admin/billing/usagerecord/", {"model": "gpt\x00"}),
        ("/admin/batches/batch/", {"q\x00": "x"}),
        ("/admin/batches/batch/batch_\x00/change/", {}),  # an object whose id is text
        ("/admin/queueing/queuedjob/\x00/change/", {}),
    ],
)
def test_a_nul_in_an_admin_address_is_a_bad_request(admin_client, url, query, caplog):
    response = admin_client.get(url, query)

    assert response.status_code == 400
    assert not any(record.exc_info for record in caplog.records)  # a client's bad address, logged as no error


def test_the_management_api_answers_it_in_its_own_shape(admin_client):
    response = admin_client.get("/api/tenants/", {"search": "a\x00b"})  # a search its serializers do not check

    assert response.status_code == 400
    assert "detail" in response.json()


def test_an_address_without_one_is_served_as_before(admin_client):
    assert admin_client.get("/admin/batches/file/", {"status__exact": "processed"}).status_code == 200


async def test_the_asgi_handler_refuses_it_as_well(async_client):
    response = await async_client.get("/api/tenants/", {"search": "a\x00b"})

    assert response.status_code == 400


def test_v1_is_left_to_its_own_views(rf):
    # With the fast path off, /v1/ runs on Django's handler: its ids are looked up knowing a NUL names nothing,
    # and its 404 is in OpenAI's words.
    served = HttpResponse("served")
    middleware = NullCharacterMiddleware(lambda request: served)

    assert middleware(rf.get("/v1/files/file-\x00")) is served
    assert middleware(rf.get("/api/files/file-\x00")).status_code == 400
