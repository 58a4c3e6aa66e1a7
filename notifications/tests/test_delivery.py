"""Delivering one alert: a signed webhook POST to a real loopback server, or an email through Django's backend.

The task runs here with Celery's `apply()`, retries included (one after the
other, without their backoff); tests/integration/test_alerts_worker.py runs it
in a real worker, test_embedded.py on the server's own background threads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from django.core import mail

from notifications.models import AlertChannel, AlertDelivery, AlertEvent
from notifications.services import alert_deliveries_resend, notify
from notifications.signing import verify
from notifications.tasks import alert_delivery_send, backoff
from notifications.tests.factories import SECRET, make_email_channel, make_webhook_channel
from notifications.tests.receiver import WebhookReceiver
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

Status = AlertDelivery.Status
PAYLOAD = {"spent": "8.5", "tenant": {"slug": "acme"}}


@pytest.fixture(autouse=True)
def three_tries(settings: Any) -> None:
    settings.PORTICO_ALERT_ATTEMPTS = 3


def raise_alert(tenant: Tenant | None) -> AlertDelivery:
    [made] = notify(
        event=AlertEvent.BUDGET_SOFT,
        tenant_id=tenant.pk if tenant else None,
        key="budget:3:2026-11:soft",
        subject="Portico: tenant Acme has spent 80 % of its monthly budget",
        text="Spent 8.50 USD of 10.00 USD in period 2026-11.",
        payload=PAYLOAD,
    )
    return AlertDelivery.objects.get(pk=made)


def send(delivery: AlertDelivery) -> str:
    outcome: str = alert_delivery_send.apply(args=(delivery.pk,)).get()
    delivery.refresh_from_db()
    return outcome


def test_a_webhook_gets_a_slack_compatible_body_signed_with_its_channels_secret(
    tenant: Tenant, receiver: WebhookReceiver
) -> None:
    make_webhook_channel(tenant=tenant, url=receiver.url)
    delivery = raise_alert(tenant)
    before = int(time.time())

    assert send(delivery) == "sent"

    [request] = receiver.received()
    assert request.path == "/hooks/portico"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-portico-event"] == "budget_soft"
    assert request.headers["x-portico-delivery"] == str(delivery.pk)
    # The signature, computed here independently of Portico's code.
    fields = dict(part.split("=", 1) for part in request.headers["x-portico-signature"].split(","))
    assert before <= int(fields["t"]) <= time.time()
    expected = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert fields["v1"] == expected
    body = json.loads(request.body)
    assert body["text"] == (
        "Portico: tenant Acme has spent 80 % of its monthly budget\nSpent 8.50 USD of 10.00 USD in period 2026-11."
    )
    assert body["portico"]["event"] == "budget_soft"
    assert body["portico"]["key"] == "budget:3:2026-11:soft"
    assert body["portico"]["delivery"] == delivery.pk
    assert body["portico"]["data"] == PAYLOAD
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.SENT, 1, "")
    assert delivery.sent_at is not None


def test_the_verify_helper_accepts_the_signature_and_refuses_a_changed_body_or_an_old_one(
    receiver: WebhookReceiver,
) -> None:
    make_webhook_channel(url=receiver.url)
    send(raise_alert(None))
    [request] = receiver.received()
    header = request.headers["x-portico-signature"]

    assert verify(secret=SECRET, header=header, body=request.body)
    assert not verify(secret=SECRET, header=header, body=request.body + b" ")
    assert not verify(secret="another-secret-of-enough-length", header=header, body=request.body)
    assert not verify(secret=SECRET, header=header, body=request.body, now=time.time() + 3600)


def test_an_email_goes_to_every_address_of_the_channel(tenant: Tenant, settings: Any) -> None:
    settings.DEFAULT_FROM_EMAIL = "alerts@portico.example"
    make_email_channel(tenant=tenant, emails=["ops@acme.example", "cfo@acme.example"])

    delivery = raise_alert(tenant)
    assert send(delivery) == "sent"

    [message] = mail.outbox
    assert message.subject == "Portico: tenant Acme has spent 80 % of its monthly budget"
    assert message.to == ["ops@acme.example", "cfo@acme.example"]
    assert message.from_email == "alerts@portico.example"
    assert message.body == "Spent 8.50 USD of 10.00 USD in period 2026-11."
    assert delivery.status == Status.SENT


def test_a_job_run_twice_sends_once(receiver: WebhookReceiver) -> None:
    make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)

    assert send(delivery) == "sent"
    assert send(delivery) == "skipped"  # redelivered after it had run, or queued twice

    assert len(receiver.received()) == 1
    assert delivery.attempts == 1


def test_a_delivery_whose_worker_died_mid_send_is_not_sent_again(receiver: WebhookReceiver) -> None:
    make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)
    AlertDelivery.objects.filter(pk=delivery.pk).update(status=Status.SENDING, attempts=1)

    assert send(delivery) == "skipped"

    assert receiver.received() == []
    assert delivery.status == Status.SENDING


def test_a_failing_webhook_is_tried_again_then_marked_failed_with_its_error(receiver: WebhookReceiver) -> None:
    receiver.answer(500)
    make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)

    assert send(delivery) == "failed"

    assert len(receiver.received()) == 3
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.FAILED, 3, "webhook: HTTP 500")
    assert delivery.sent_at is None


def test_a_webhook_that_recovers_within_its_tries_gets_the_alert_once(receiver: WebhookReceiver) -> None:
    receiver.answer(503, 502, 200)
    make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)

    assert send(delivery) == "sent"

    assert len(receiver.received()) == 3
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.SENT, 3, "")


def test_an_unreachable_webhook_fails_with_a_reason_and_no_traceback(settings: Any) -> None:
    settings.PORTICO_ALERT_ATTEMPTS = 1
    make_webhook_channel(url="http://127.0.0.1:9/nobody-listens")  # the discard port: refused
    delivery = raise_alert(None)

    assert send(delivery) == "failed"

    assert delivery.last_error == "webhook: could not reach it (ConnectError)"


def test_a_failed_delivery_sent_again_gets_fresh_tries(receiver: WebhookReceiver) -> None:
    receiver.answer(500)
    make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)
    send(delivery)
    receiver.answer(204)

    assert alert_deliveries_resend(deliveries=AlertDelivery.objects.all()) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.PENDING, 0)
    assert send(delivery) == "sent"
    assert len(receiver.received()) == 4


def test_a_deactivated_channel_gets_nothing(receiver: WebhookReceiver) -> None:
    channel = make_webhook_channel(url=receiver.url)
    delivery = raise_alert(None)
    AlertChannel.objects.filter(pk=channel.pk).update(active=False)

    assert send(delivery) == "failed"

    assert receiver.received() == []
    assert delivery.last_error == "the channel was deactivated"


def test_the_backoff_doubles_with_each_retry_up_to_its_ceiling(settings: Any) -> None:
    settings.PORTICO_ALERT_RETRY_BACKOFF = 10
    assert 5 <= backoff(0) <= 10
    assert 20 <= backoff(2) <= 40
    assert 150 <= backoff(12) <= 300
