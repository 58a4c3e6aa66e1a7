"""When an uploaded file expires: `expires_after` as the client asks it, else PORTICO_FILES_EXPIRE_DAYS.

Through the official SDK against real servers, one for each setting tried:
the default's 30 days, 2 days, and 0 (files kept until deleted). The expired
files themselves are deleted by the batches' sweep (batches/tests/test_files_expire.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from batches.models import File
from batches.services.files import file_delete
from tenants.tests.factories import IssuedKey
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

DAY = 86400
CONTENT = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


@pytest.fixture(autouse=True)
def _remove_files(committed_db: None) -> Iterator[None]:
    yield
    for file in File.objects.all():
        file_delete(file=file)


def _server(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, days: str) -> Iterator[PorticoServer]:
    env = {**server_env, "PORTICO_FILES_EXPIRE_DAYS": days}
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp(f"portico-expire-{days}") / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_days_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    yield from _server(server_env, tmp_path_factory, "2")


@pytest.fixture(scope="module")
def keep_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    yield from _server(server_env, tmp_path_factory, "0")


def test_a_file_expires_after_the_days_the_setting_gives_unless_the_client_asks(
    portico: PorticoServer, two_days_portico: PorticoServer, key: IssuedKey, settle: Settle
) -> None:
    settle(portico, two_days_portico)
    with portico.client(key.plaintext) as default, two_days_portico.client(key.plaintext) as short:
        thirty = default.files.create(file=("a.jsonl", CONTENT), purpose="batch")
        two = short.files.create(file=("b.jsonl", CONTENT), purpose="batch")
        asked = short.files.create(
            file=("c.jsonl", CONTENT), purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200}
        )
        assert short.files.retrieve(asked.id).expires_at == asked.expires_at
    for file, seconds in ((thirty, 30 * DAY), (two, 2 * DAY), (asked, 7200)):
        assert file.expires_at is not None
        assert abs(file.expires_at - file.created_at - seconds) <= 1
        stored = File.objects.get(pk=file.id).expires_at
        assert stored is not None
        assert int(stored.timestamp()) == file.expires_at


def test_with_the_setting_at_0_a_file_is_kept_until_deleted_unless_the_client_asks(
    keep_portico: PorticoServer, key: IssuedKey, settle: Settle
) -> None:
    settle(keep_portico)
    with keep_portico.client(key.plaintext) as sdk:
        kept = sdk.files.create(file=("a.jsonl", CONTENT), purpose="batch")
        asked = sdk.files.create(
            file=("b.jsonl", CONTENT), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600}
        )
    assert kept.expires_at is None
    assert File.objects.get(pk=kept.id).expires_at is None
    assert asked.expires_at is not None
    assert abs(asked.expires_at - asked.created_at - 3600) <= 1


@pytest.mark.parametrize(
    ("expires_after", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "expires_after[seconds]"),  # under OpenAI's hour
        ({"anchor": "created_at", "seconds": 30 * DAY + 1}, "expires_after[seconds]"),  # over its 30 days
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after[anchor]"),
        ({"anchor": "created_at", "seconds": "²"}, "expires_after[seconds]"),  # a digit to isdigit(), not to int()
    ],
)
def test_an_expiry_outside_openais_bounds_is_refused_and_nothing_kept(
    portico: PorticoServer, key: IssuedKey, settle: Settle, expires_after: dict, param: str
) -> None:
    settle()
    with portico.client(key.plaintext) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("a.jsonl", CONTENT), purpose="batch", expires_after=expires_after)  # type: ignore[arg-type]
    assert caught.value.body["param"] == param
    assert caught.value.body["code"] == "invalid_value"
    assert not File.objects.exists()
