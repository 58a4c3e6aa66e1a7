from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from batches.models import Batch
from batches.services.validation import batch_validate
from batches.tests.factories import jsonl, make_batch, request_line
from tenants.tests.factories import IssuedKey


def test_batches_are_listed_by_tenant_and_status_with_counts(admin_client, owner: IssuedKey, outsider: IssuedKey):
    running = batch_validate(batch_id=make_batch(owner.api_key, jsonl([request_line("a")])).id)
    make_batch(outsider.api_key, jsonl([request_line("b")]))
    listed = admin_client.get(reverse("admin:batches_batch_changelist"), {"status__exact": "in_progress"})
    assert listed.status_code == 200
    page = listed.content.decode()
    assert running.id in page
    assert "validating (1)" in page  # the filter's choices carry their counts
    assert "in_progress (1)" in page
    shown = admin_client.get(reverse("admin:batches_batch_change", args=[quote(running.id)]))
    assert shown.status_code == 200
    by_tenant = admin_client.get(
        reverse("admin:batches_batch_changelist"), {"tenant__id__exact": outsider.api_key.tenant_id}
    )
    assert running.id not in by_tenant.content.decode()


def test_a_batch_whose_id_reads_as_an_admin_escape_opens_from_its_link(
    admin_client, owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
):
    # The admin unescapes "_40" in a primary key to "@"; ids are random hex, so some batches
    # carry such a run right after "batch_", and their page must still open from the list.
    monkeypatch.setattr(Batch._meta.get_field("id"), "default", lambda: "batch_40" + "a" * 22)
    batch = make_batch(owner.api_key, jsonl([request_line("a")]))
    listed = admin_client.get(reverse("admin:batches_batch_changelist")).content.decode()
    link = reverse("admin:batches_batch_change", args=[quote(batch.id)])
    assert f'href="{link}"' in listed
    shown = admin_client.get(link)
    assert shown.status_code == 200
    assert batch.id in shown.content.decode()


def test_files_are_listed_with_their_purpose(admin_client, owner: IssuedKey):
    batch = make_batch(owner.api_key, jsonl([request_line("a")]))
    listed = admin_client.get(reverse("admin:batches_file_changelist"), {"purpose__exact": "batch"})
    assert listed.status_code == 200
    assert batch.input_file_id in listed.content.decode()


def test_the_admin_cancels_batches(admin_client, owner: IssuedKey):
    batch = batch_validate(batch_id=make_batch(owner.api_key, jsonl([request_line("a")])).id)
    answer = admin_client.post(
        reverse("admin:batches_batch_changelist"), {"action": "cancel", "_selected_action": [batch.id]}, follow=True
    )
    assert "1 batch(es) cancelling." in answer.content.decode()
    assert Batch.objects.get(pk=batch.id).status == "cancelling"
