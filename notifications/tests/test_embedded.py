"""Without a broker (the embedded default) alerts go out from the server's own background threads, retries and
backoff included: the same task, run by gateway.background's runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from notifications.models import AlertDelivery, AlertEvent
from notifications.services import notify
from notifications.tests.factories import make_webhook_channel
from notifications.tests.receiver import WebhookReceiver

# The runner's threads read the rows on connections of their own: they must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 10.0
Status = AlertDelivery.Status


@pytest.fixture(autouse=True)
def embedded(settings: Any) -> None:
    settings.PORTICO_CELERY_BROKER_URL = ""
    settings.PORTICO_ALERT_ATTEMPTS = 3
    settings.PORTICO_ALERT_RETRY_BACKOFF = 0.2


def until(condition: Callable[[], object], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}"
        time.sleep(0.02)


def raise_alert() -> int:
    [made] = notify(
        event=AlertEvent.BUDGET_HARD, tenant_id=None, key="budget:9:all:hard", subject="s", text="t", payload={}
    )
    return made


def status_of(delivery_id: int) -> str:
    return AlertDelivery.objects.get(pk=delivery_id).status


def test_the_servers_threads_deliver_the_alert_and_wait_out_the_backoff_between_tries(
    receiver: WebhookReceiver,
) -> None:
    receiver.answer(500, 204)
    make_webhook_channel(url=receiver.url)

    delivery_id = raise_alert()
    until(lambda: status_of(delivery_id) == Status.SENT, "the alert was delivered")

    first, second = receiver.received()
    assert first.body == second.body
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert delivery.attempts == 2
    # The first retry waits between half and all of PORTICO_ALERT_RETRY_BACKOFF.
    assert delivery.sent_at is not None
    assert (delivery.sent_at - delivery.created_at).total_seconds() >= 0.1


def test_a_webhook_that_keeps_failing_is_marked_failed_after_its_tries(receiver: WebhookReceiver) -> None:
    receiver.answer(500)
    make_webhook_channel(url=receiver.url)

    delivery_id = raise_alert()
    until(lambda: status_of(delivery_id) == Status.FAILED, "the delivery gave up")

    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.attempts, delivery.last_error) == (3, "webhook: HTTP 500")
    assert len(receiver.received()) == 3
