"""Files past their expiry are deleted, row and bytes, oldest first and a bounded number at a time; the others stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from batches.models import File
from batches.services.files import files_expire
from batches.tests.factories import make_file
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)  # bytes go once the row's deletion is committed


def expiring(owner: IssuedKey, name: str, *, in_seconds: float | None) -> File:
    file = make_file(owner.api_key, f"{name}\n".encode())
    if in_seconds is not None:
        File.objects.filter(pk=file.pk).update(expires_at=timezone.now() + timedelta(seconds=in_seconds))
    return file


def test_files_past_their_expiry_go_with_their_bytes_and_the_rest_stay(owner: IssuedKey, files_dir: Path) -> None:
    gone = expiring(owner, "gone", in_seconds=-60)
    later = expiring(owner, "later", in_seconds=3600)
    kept = expiring(owner, "kept", in_seconds=None)  # no expiry: kept until deleted

    assert files_expire() == 1

    assert set(File.objects.values_list("pk", flat=True)) == {later.pk, kept.pk}
    assert not (files_dir / gone.storage_key).exists()
    assert (files_dir / later.storage_key).read_bytes() == b"later\n"
    assert files_expire() == 0


def test_files_expire_as_of_the_time_given_the_soonest_first_up_to_the_limit(owner: IssuedKey) -> None:
    first = expiring(owner, "first", in_seconds=10)
    second = expiring(owner, "second", in_seconds=20)
    third = expiring(owner, "third", in_seconds=30)
    in_a_minute = timezone.now() + timedelta(minutes=1)

    assert files_expire(now=in_a_minute, limit=2) == 2
    assert list(File.objects.values_list("pk", flat=True)) == [third.pk]
    assert not File.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert files_expire(now=in_a_minute, limit=2) == 1
