"""An alert delivered by a real `portico worker`: raised here, taken from the broker, POSTed to a loopback receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator

import pytest

from notifications.models import AlertChannel, AlertDelivery, AlertEvent
from notifications.services import notify
from notifications.tests.factories import SECRET, make_webhook_channel
from notifications.tests.receiver import WebhookReceiver
from tests.celery_processes import StartWorker

pytestmark = [pytest.mark.integration]

DEADLINE = 30.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def channel_rows(committed_db: None) -> Iterator[None]:
    yield
    AlertChannel.objects.all().delete()  # with their deliveries


def until(condition: Callable[[], object], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}"
        time.sleep(0.05)


@pytest.mark.usefixtures("channel_rows")
def test_a_worker_delivers_the_alert_once_signed(
    start_worker: StartWorker, receiver: WebhookReceiver, tag: str
) -> None:
    receiver.answer(502, 200)
    make_webhook_channel(url=receiver.url, events=[AlertEvent.BREAKER_OPEN])
    start_worker(PORTICO_ALERT_RETRY_BACKOFF="0.2")

    [delivery_id] = notify(
        event=AlertEvent.BREAKER_OPEN,
        tenant_id=None,
        key=f"breaker:7:{tag}",
        subject="Portico: deployment fake/gpt is out of rotation",
        text="Its circuit breaker opened.",
        payload={"deployment": {"id": 7, "name": "fake/gpt"}},
    )
    until(lambda: AlertDelivery.objects.get(pk=delivery_id).status == AlertDelivery.Status.SENT, "delivered")

    failed, delivered = receiver.received()
    assert failed.body == delivered.body
    fields = dict(part.split("=", 1) for part in delivered.headers["x-portico-signature"].split(","))
    signed = fields["t"].encode() + b"." + delivered.body
    assert fields["v1"] == hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert json.loads(delivered.body)["portico"]["data"] == {"deployment": {"id": 7, "name": "fake/gpt"}}
    assert AlertDelivery.objects.get(pk=delivery_id).attempts == 2
