"""Channels in the console (the webhook's secret write-only), deliveries read-only with "send again" for failed ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from notifications.models import AlertChannel, AlertDelivery
from notifications.services import notify
from notifications.tests.factories import SECRET, make_email_channel, make_webhook_channel
from providers.credentials import decrypt_credential

pytestmark = pytest.mark.django_db

CHANNELS = "/admin/notifications/alertchannel/"
DELIVERIES = "/admin/notifications/alertdelivery/"


def channel_form(**fields: Any) -> dict[str, Any]:
    return {"name": "on call", "tenant": "", "kind": "webhook", "emails": "", "url": "", "active": "on", **fields}


def test_an_operator_adds_a_webhook_whose_secret_is_never_shown_again(admin_client: Client) -> None:
    form = channel_form(url="https://hooks.example.com/ops", secret=SECRET, events=["breaker_open", "budget_hard"])

    answer = admin_client.post(f"{CHANNELS}add/", form)

    assert answer.status_code == 302, answer.content
    channel = AlertChannel.objects.get()
    assert (channel.tenant, channel.events) == (None, ["breaker_open", "budget_hard"])
    assert decrypt_credential(channel.secret_encrypted) == SECRET
    page = admin_client.get(f"{CHANNELS}{channel.pk}/change/").content.decode()
    assert SECRET not in page
    assert channel.secret_encrypted not in page


def test_a_webhook_without_a_secret_is_refused(admin_client: Client) -> None:
    answer = admin_client.post(
        f"{CHANNELS}add/", channel_form(url="https://hooks.example.com/x", events=["budget_soft"])
    )

    assert answer.status_code == 200
    assert "needs a signing secret" in answer.content.decode()
    assert not AlertChannel.objects.exists()


def test_email_addresses_are_taken_one_a_line_or_separated_by_commas(admin_client: Client) -> None:
    form = channel_form(
        kind="email", emails="ops@acme.example\ncfo@acme.example, cto@acme.example", events="budget_soft"
    )

    assert admin_client.post(f"{CHANNELS}add/", form).status_code == 302

    assert AlertChannel.objects.get().emails == ["ops@acme.example", "cfo@acme.example", "cto@acme.example"]


def test_a_change_without_a_new_secret_keeps_the_stored_one(admin_client: Client) -> None:
    channel = make_webhook_channel(url="https://hooks.example.com/old", events=["budget_soft"])
    form = channel_form(url="https://hooks.example.com/new", events=["budget_soft"])

    assert admin_client.post(f"{CHANNELS}{channel.pk}/change/", form).status_code == 302

    channel.refresh_from_db()
    assert (channel.url, decrypt_credential(channel.secret_encrypted)) == ("https://hooks.example.com/new", SECRET)


def test_deliveries_are_read_only(admin_client: Client) -> None:
    make_email_channel()
    [made] = notify(event="budget_soft", tenant_id=None, key="k", subject="80 % spent", text="t", payload={})

    assert "80 % spent" in admin_client.get(DELIVERIES).content.decode()
    assert admin_client.get(f"{DELIVERIES}{made}/change/").status_code == 200  # a view, no form
    assert admin_client.post(f"{DELIVERIES}{made}/change/", {"status": "sent"}).status_code == 403
    assert admin_client.get(f"{DELIVERIES}add/").status_code == 403
    assert AlertDelivery.objects.get().status == AlertDelivery.Status.PENDING


def test_send_again_queues_the_failed_deliveries_and_leaves_the_others(
    admin_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    make_email_channel(name="a")
    make_email_channel(name="b")
    failed, sent = notify(event="budget_soft", tenant_id=None, key="k", subject="s", text="t", payload={})
    AlertDelivery.objects.filter(pk=failed).update(status="failed", attempts=5, last_error="webhook: HTTP 500")
    AlertDelivery.objects.filter(pk=sent).update(status="sent", attempts=1)

    with django_capture_on_commit_callbacks() as queued:
        answer = admin_client.post(
            DELIVERIES, {"action": "send_again", "_selected_action": [failed, sent]}, follow=True
        )

    assert "1 delivery queued to be sent again. 1 not failed, left as they were." in answer.content.decode()
    assert len(queued) == 1
    assert dict(AlertDelivery.objects.values_list("pk", "status")) == {failed: "pending", sent: "sent"}
