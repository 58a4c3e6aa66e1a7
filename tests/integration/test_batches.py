"""The Files and Batch APIs through the official SDK, against a real Portico and real Celery workers.

Lines run in a `portico worker` (a child process, on the test database and
Redis) through the same pipeline as live requests, to the fake OpenAI upstream
of the session, which records every request it gets: that is how a test knows
no line was sent twice. The workers share the servers' Redis prefix, so they
take the jobs a server queues and reload their snapshots when a test commits.

Every tenant-facing test has its three personas: the owner, another key of the
same tenant (sees the tenant's files and batches), and an outsider (404).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import openai
import orjson
import pytest
from openai import OpenAI
from openai.types import Batch

from batches.models import Batch as BatchRow
from batches.models import BatchLine, File
from batches.services.files import file_delete
from billing.models import UsageRecord
from billing.services import rate_limit_set
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.celery_processes import CeleryWorker, StartBeat, StartWorker, worker_command
from tests.conftest import SERVER_REDIS_PREFIX
from tests.fakes.openai_upstream import Echo, FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

CHAT = "/v1/chat/completions"
# A worker of the servers' deployment, with lines in flight 16 at a time and a lease short enough that a worker
# killed mid-batch is replaced within seconds.
WORKER_ENV = {
    "PORTICO_REDIS_PREFIX": SERVER_REDIS_PREFIX,
    "PORTICO_BATCH_CONCURRENCY": "16",
    "PORTICO_BATCH_CHUNK_SECONDS": "5",
    "PORTICO_BATCH_LINE_TIMEOUT": "10",
    "PORTICO_BATCH_LEASE_SECONDS": "2",
    "PORTICO_BATCH_RETRY_MAX_SECONDS": "2",
    "PORTICO_LOG_LEVEL": "WARNING",
}
SMALL_FILES_MAX_BYTES = 4096
RUN_TIMEOUT = 60.0  # seconds a batch here may take to finish; a thousand lines take well under that


# --- fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _remove_batches(committed_db: None) -> Iterator[None]:
    """Files (and their bytes) and batches go before the tenants they belong to (committed_db removes those)."""
    yield
    BatchLine.objects.all().delete()
    BatchRow.objects.all().delete()
    for file in File.objects.all():
        file_delete(file=file)


@pytest.fixture(scope="module")
def worker(celery_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    """One worker for the tests of this module that need one (but the one that kills its own)."""
    hostname = f"batches-{time.monotonic_ns()}@localhost"
    command = worker_command(
        hostname=hostname, concurrency=1, queues="interactive,default,batch", include=(), options=()
    )
    log_path = tmp_path_factory.mktemp("batch-worker") / "worker.log"
    process = CeleryWorker(command, env={**celery_env, **WORKER_ENV}, log_path=log_path, hostname=hostname)
    process.start()
    try:
        process.wait_until_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def small_files_portico(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PorticoServer]:
    env = {**server_env, "PORTICO_FILES_MAX_BYTES": str(SMALL_FILES_MAX_BYTES)}
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("portico-small-files") / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Personas:
    def __init__(self, tag: str) -> None:
        tenant = make_tenant(slug=f"batches-{tag}")
        self.owner = make_key(tenant=tenant, name="owner")
        self.teammate = make_key(tenant=tenant, name="teammate")
        self.outsider = make_key(tenant=make_tenant(slug=f"outsider-{tag}"), name="outsider")


@pytest.fixture
def personas(committed_db: None, tag: str) -> Personas:
    return Personas(tag)


@pytest.fixture
def route(upstream_route: ModelRoute, upstream: FakeUpstream) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Echo())
    return upstream_route


def chat_line(custom_id: str, model: str, content: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 5}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: Iterable[dict[str, Any] | bytes]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines)


def upload(sdk: OpenAI, lines: Iterable[dict[str, Any] | bytes]) -> str:
    return sdk.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch").id


def start(sdk: OpenAI, lines: Iterable[dict[str, Any] | bytes], endpoint: str = CHAT) -> Batch:
    return sdk.batches.create(input_file_id=upload(sdk, lines), endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]


def wait_for(sdk: OpenAI, batch_id: str, *statuses: str, timeout: float = RUN_TIMEOUT) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} is still {batch.status} ({batch.request_counts}) after {timeout} s")
        time.sleep(0.1)


def rows_of(sdk: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [orjson.loads(line) for line in sdk.files.content(file_id).content.splitlines()]


def ledger_of(batch_id: str, expected: int, timeout: float = 10.0) -> list[UsageRecord]:
    """The batch's ledger rows, once `expected` of them are in (the writers flush twice a second)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.filter(batch_id=batch_id))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def bearer(key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.plaintext}"}


def sent_contents(upstream: FakeUpstream, model: str) -> Counter[str]:
    return Counter(received.messages[-1]["content"] for received in upstream.received(model))


# --- files ------------------------------------------------------------------------------------------------


def test_files_are_the_tenants_own(portico: PorticoServer, personas: Personas, settle: Settle) -> None:
    settle()
    content = jsonl(chat_line(f"r{n}", "any-model", f"line {n}") for n in range(3))
    with (
        portico.client(personas.owner.plaintext) as owner,
        portico.client(personas.teammate.plaintext) as teammate,
        portico.client(personas.outsider.plaintext) as outsider,
    ):
        uploaded = owner.files.create(file=("requests.jsonl", content), purpose="batch")
        assert uploaded.id.startswith("file-")
        assert (uploaded.bytes, uploaded.filename, uploaded.purpose, uploaded.status) == (
            len(content),
            "requests.jsonl",
            "batch",
            "processed",
        )
        assert uploaded.expires_at is not None
        assert teammate.files.retrieve(uploaded.id).id == uploaded.id
        assert teammate.files.content(uploaded.id).content == content
        assert [file.id for file in teammate.files.list()] == [uploaded.id]
        assert list(outsider.files.list()) == []
        for attempt in (
            lambda: outsider.files.retrieve(uploaded.id),
            lambda: outsider.files.content(uploaded.id),
            lambda: outsider.files.delete(uploaded.id),
        ):
            with pytest.raises(openai.NotFoundError) as caught:
                attempt()
            assert caught.value.body == {
                "message": f"No such File object: {uploaded.id}",
                "type": "invalid_request_error",
                "param": "id",
                "code": None,
            }
        assert owner.files.delete(uploaded.id).deleted is True
        with pytest.raises(openai.NotFoundError):
            teammate.files.retrieve(uploaded.id)
    assert not File.objects.filter(pk=uploaded.id).exists()


def test_files_are_listed_newest_first_a_page_at_a_time(portico: PorticoServer, key: IssuedKey, settle: Settle) -> None:
    settle()
    with portico.client(key.plaintext) as sdk:
        ids = [upload(sdk, [chat_line(f"r{n}", "m", "x")]) for n in range(3)]
        first = sdk.files.list(limit=2)
        assert [file.id for file in first.data] == ids[:0:-1]
        assert first.has_more is True
        rest = sdk.files.list(limit=2, after=first.data[-1].id)
        assert ([file.id for file in rest.data], rest.has_more) == ([ids[0]], False)
        assert [file.id for file in sdk.files.list(order="asc")] == ids
        answer = portico.http.get("/v1/files?limit=0", headers={"Authorization": f"Bearer {key.plaintext}"})
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "limit"


def test_a_file_over_the_size_limit_is_refused_with_413_and_not_kept(
    small_files_portico: PorticoServer, key: IssuedKey, settle: Settle
) -> None:
    settle(small_files_portico)
    with small_files_portico.client(key.plaintext) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.files.create(file=("big.jsonl", b"x" * (SMALL_FILES_MAX_BYTES + 1)), purpose="batch")
        assert caught.value.status_code == 413
        assert caught.value.body == {
            "message": f"The file is larger than the {SMALL_FILES_MAX_BYTES} bytes this server accepts.",
            "type": "invalid_request_error",
            "param": "file",
            "code": "file_too_large",
        }
        assert sdk.files.create(file=("ok.jsonl", b"x" * SMALL_FILES_MAX_BYTES), purpose="batch").bytes == 4096
        assert len(list(sdk.files.list())) == 1


def test_an_upload_needs_a_purpose_portico_keeps_files_for(
    portico: PorticoServer, key: IssuedKey, settle: Settle
) -> None:
    settle()
    with portico.client(key.plaintext) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    assert caught.value.body["param"] == "purpose"
    assert not File.objects.exists()


# --- creating, listing, refusing ----------------------------------------------------------------------------


def test_a_batch_is_refused_in_openais_words(portico: PorticoServer, personas: Personas, settle: Settle) -> None:
    settle()
    with portico.client(personas.owner.plaintext) as owner, portico.client(personas.outsider.plaintext) as outsider:
        file_id = upload(owner, [chat_line("a", "m", "x")])
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"input_file_id": file_id, "endpoint": "/v1/edits", "completion_window": "24h"}, 400, "endpoint"),
            ({"input_file_id": file_id, "endpoint": CHAT, "completion_window": "1h"}, 400, "completion_window"),
            ({"endpoint": CHAT, "completion_window": "24h"}, 400, "input_file_id"),
            (
                {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", "metadata": {"k": 1}},
                400,
                "metadata",
            ),
            ({"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"}, 404, "input_file_id"),
        ]
        for body, status, param in cases:
            response = portico.http.post("/v1/batches", json=body, headers=bearer(personas.owner))
            assert (response.status_code, response.json()["error"]["param"]) == (status, param), body
        # Another tenant's file does not exist for this key.
        response = portico.http.post(
            "/v1/batches",
            json={"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"},
            headers=bearer(personas.outsider),
        )
        assert response.status_code == 404
        with pytest.raises(openai.NotFoundError):
            outsider.batches.retrieve("batch_nope")
    assert not BatchRow.objects.exists()


def test_batches_are_listed_newest_first_with_a_cursor(
    portico: PorticoServer, personas: Personas, settle: Settle
) -> None:
    settle()
    with (
        portico.client(personas.owner.plaintext) as owner,
        portico.client(personas.teammate.plaintext) as teammate,
        portico.client(personas.outsider.plaintext) as outsider,
    ):
        file_id = upload(owner, [chat_line("a", "m", "x")])
        made = [
            owner.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata={"n": str(n)}
            ).id
            for n in range(3)
        ]
        page = teammate.batches.list(limit=2)
        assert [batch.id for batch in page.data] == made[:0:-1]
        assert page.has_more is True
        assert [batch.id for batch in teammate.batches.list(limit=2, after=page.data[-1].id).data] == [made[0]]
        assert [batch.id for batch in teammate.batches.list(limit=2)] == made[::-1]  # the SDK follows the cursor
        assert list(outsider.batches.list()) == []
        batch = teammate.batches.retrieve(made[0])
        assert (batch.status, batch.input_file_id, batch.metadata) == ("validating", file_id, {"n": "0"})
        with pytest.raises(openai.NotFoundError):
            outsider.batches.retrieve(made[0])
        with pytest.raises(openai.NotFoundError):
            outsider.batches.cancel(made[0])
        assert teammate.batches.cancel(made[0]).status == "cancelling"


@pytest.mark.parametrize("odd", ["file-\x00", "batch_é", "\t"])
def test_an_id_or_filter_portico_never_issues_names_nothing_and_is_not_a_server_error(
    portico: PorticoServer, personas: Personas, settle: Settle, odd: str
) -> None:
    """Postgres refuses a NUL in any text: such a value was a database error, a 503 the SDK retried."""
    settle()
    with portico.client(personas.owner.plaintext) as owner:
        file_id = upload(owner, [chat_line("a", "m", "x")])
        for attempt in (
            lambda: owner.files.retrieve(odd),
            lambda: owner.files.content(odd),
            lambda: owner.files.delete(odd),
            lambda: owner.batches.retrieve(odd),
            lambda: owner.batches.cancel(odd),
            lambda: owner.batches.create(input_file_id=odd, endpoint=CHAT, completion_window="24h"),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()
        assert [file.id for file in owner.files.list(after=odd).data] == [file_id]  # an unknown cursor: from the top
        assert owner.files.list(purpose=odd).data == []
        assert owner.batches.list(after=odd).data == []


@pytest.mark.parametrize(("sent", "kept"), [(b"a\x00b.jsonl", "a\ufffdb.jsonl"), (b"a\xffb.jsonl", "a\ufffdb.jsonl")])
def test_a_file_name_no_database_can_keep_is_kept_with_a_replacement_character(
    portico: PorticoServer, key: IssuedKey, settle: Settle, sent: bytes, kept: str
) -> None:
    """A NUL was a database error (503), bytes that are not UTF-8 a 500."""
    settle()
    body = (
        b'--X\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--X\r\nContent-Disposition: form-data; name="file"; filename="'
        + sent
        + b'"\r\n\r\n'
        + jsonl([chat_line("a", "m", "x")])
        + b"\r\n--X--\r\n"
    )
    headers = {"Authorization": f"Bearer {key.plaintext}", "Content-Type": "multipart/form-data; boundary=X"}

    response = portico.http.post("/v1/files", content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["filename"] == File.objects.get(pk=response.json()["id"]).filename == kept


def test_batch_metadata_with_a_nul_is_refused_naming_it(portico: PorticoServer, key: IssuedKey, settle: Settle) -> None:
    settle()
    with portico.client(key.plaintext) as sdk:
        file_id = upload(sdk, [chat_line("a", "m", "x")])
        for metadata in ({"run": "a\x00b"}, {"a\x00": "b"}):
            with pytest.raises(openai.BadRequestError) as refused:  # a database error (503) before
                sdk.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata=metadata)
            assert refused.value.body["param"] == "metadata"  # type: ignore[index]


# --- running, with a real worker ------------------------------------------------------------------------------


def test_a_batch_runs_in_a_worker_and_its_results_come_back_as_openai_writes_them(
    portico: PorticoServer,
    worker: CeleryWorker,
    personas: Personas,
    route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    settle()
    model = route.public_id
    lines: list[dict[str, Any] | bytes] = [
        chat_line("first", model, "line one"),
        b"{this is not json",
        {**chat_line("elsewhere", model, "x"), "url": "/v1/embeddings"},
        chat_line("first", model, "a second first"),
        {"custom_id": "no-body", "method": "POST", "url": CHAT},
        chat_line("unknown-model", "no-such-model", "y"),
        chat_line("last", model, "line seven"),
    ]
    with portico.client(personas.owner.plaintext) as owner, portico.client(personas.teammate.plaintext) as teammate:
        created = start(owner, lines)
        assert created.status == "validating"
        batch = wait_for(teammate, created.id, "completed")
        assert batch.request_counts is not None
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (7, 2, 5)
        assert batch.model == model
        for stamp in (batch.in_progress_at, batch.finalizing_at, batch.completed_at):
            assert stamp is not None
        assert batch.usage is not None
        assert batch.usage.total_tokens > 0
        output = rows_of(teammate, batch.output_file_id)
        errors = rows_of(owner, batch.error_file_id)
        assert teammate.files.retrieve(batch.output_file_id or "").purpose == "batch_output"
    assert [(row["custom_id"], row["response"]["status_code"]) for row in output] == [("first", 200), ("last", 200)]
    assert [row["response"]["body"]["choices"][0]["message"]["content"] for row in output] == ["line one", "line seven"]
    assert all(row["id"].startswith("batch_req_") and row["error"] is None for row in output)
    by_id = {row["custom_id"]: row for row in errors}
    assert [row["error"]["code"] for row in errors if row["error"]] == [
        "invalid_json_line",
        "invalid_url",
        "duplicate_custom_id",
        "missing_required_parameter",
    ]
    assert by_id["unknown-model"]["response"]["status_code"] == 404
    assert by_id["unknown-model"]["response"]["body"]["error"]["code"] == "model_not_found"
    # Only what reached the pipeline was sent, once, and is one ledger row naming the batch.
    assert sent_contents(upstream, route.upstream_model) == Counter({"line one": 1, "line seven": 1})
    ledger = ledger_of(created.id, 2)
    assert sorted(row.request_id for row in ledger) == sorted(row["response"]["request_id"] for row in output)
    assert {(row.api_key_id, row.status, row.client_request_id) for row in ledger} == {
        (personas.owner.api_key.pk, 200, "first"),
        (personas.owner.api_key.pk, 200, "last"),
    }
    with portico.client(personas.outsider.plaintext) as outsider:
        with pytest.raises(openai.NotFoundError):
            outsider.batches.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            outsider.files.content(batch.output_file_id or "")
    response = portico.http.post(f"/v1/batches/{created.id}/cancel", headers=bearer(personas.owner))
    assert (response.status_code, response.json()["error"]["param"]) == (400, "batch_id")


def test_an_embeddings_batch_runs_too(
    portico: PorticoServer, worker: CeleryWorker, key: IssuedKey, upstream_embedding_route: ModelRoute, settle: Settle
) -> None:
    settle()
    model = upstream_embedding_route.public_id
    lines = [
        {"custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings", "body": {"model": model, "input": f"t {n}"}}
        for n in range(3)
    ]
    with portico.client(key.plaintext) as sdk:
        batch = wait_for(sdk, start(sdk, lines, endpoint="/v1/embeddings").id, "completed")
        output = rows_of(sdk, batch.output_file_id)
    assert [row["custom_id"] for row in output] == ["e0", "e1", "e2"]
    assert all(row["response"]["body"]["object"] == "list" for row in output)
    assert batch.error_file_id is None


def test_a_thousand_lines_complete_each_sent_once_and_each_one_ledger_row(
    portico: PorticoServer,
    worker: CeleryWorker,
    key: IssuedKey,
    route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    settle()
    lines = [chat_line(f"r{n}", route.public_id, f"line {n}") for n in range(1000)]
    with portico.client(key.plaintext) as sdk:
        began = time.monotonic()
        created = start(sdk, lines)
        batch = wait_for(sdk, created.id, "completed")
        took = time.monotonic() - began
        output = rows_of(sdk, batch.output_file_id)
    print(f"\n1,000 lines: created to completed in {took:.1f} s")  # noqa: T201 - the figure this test measures
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 1000
    assert [row["custom_id"] for row in output] == [f"r{n}" for n in range(1000)]
    sent = sent_contents(upstream, route.upstream_model)
    assert len(sent) == 1000
    assert max(sent.values()) == 1
    assert len(ledger_of(created.id, 1000)) == 1000


def test_cancelling_stops_the_lines_not_yet_sent(
    portico: PorticoServer,
    worker: CeleryWorker,
    key: IssuedKey,
    upstream_route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    upstream.script(upstream_route.upstream_model, Reply(first_byte=0.2))
    settle()
    lines = [chat_line(f"r{n}", upstream_route.public_id, f"line {n}") for n in range(200)]
    with portico.client(key.plaintext) as sdk:
        created = start(sdk, lines)
        wait_for(sdk, created.id, "in_progress")
        deadline = time.monotonic() + RUN_TIMEOUT
        while not upstream.received(upstream_route.upstream_model) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sdk.batches.cancel(created.id).status == "cancelling"
        batch = wait_for(sdk, created.id, "cancelled")
        output = rows_of(sdk, batch.output_file_id)
        errors = rows_of(sdk, batch.error_file_id)
    sent = len(upstream.received(upstream_route.upstream_model))
    assert 0 < sent < 200
    assert len(output) == sent  # the lines in flight finished
    assert {row["error"]["code"] for row in errors} == {"batch_cancelled"}
    assert len(output) + len(errors) == 200
    assert batch.cancelled_at is not None


def test_lines_refused_by_the_tenants_limits_wait_and_run_later(
    portico: PorticoServer,
    worker: CeleryWorker,
    key: IssuedKey,
    upstream_route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    upstream.script(upstream_route.upstream_model, Reply(first_byte=0.3))
    rate_limit_set(api_key=key.api_key, max_concurrent=2)
    settle()
    lines = [chat_line(f"r{n}", upstream_route.public_id, f"line {n}") for n in range(5)]
    with portico.client(key.plaintext) as sdk:
        created = start(sdk, lines)
        batch = wait_for(sdk, created.id, "completed")
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 5
    assert BatchLine.objects.filter(batch_id=created.id, attempts__gt=1).exists()  # refused, then run
    assert len(upstream.received(upstream_route.upstream_model)) == 5
    # Only each line's outcome is in the ledger, not the refusals it waited out.
    assert sorted(row.status for row in ledger_of(created.id, 5)) == [200] * 5


def test_a_worker_killed_mid_batch_is_replaced_and_no_line_runs_twice(
    portico: PorticoServer,
    start_worker: StartWorker,
    start_beat: StartBeat,
    key: IssuedKey,
    upstream_route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    upstream.script(upstream_route.upstream_model, Reply(first_byte=0.05))
    settle()
    total = 300
    lines = [chat_line(f"r{n}", upstream_route.public_id, f"line {n}") for n in range(total)]
    first = start_worker(**WORKER_ENV)
    with portico.client(key.plaintext) as sdk:
        created = start(sdk, lines)
        deadline = time.monotonic() + RUN_TIMEOUT
        while len(upstream.received(upstream_route.upstream_model)) < 60:
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.02)
        first.kill()
        sent_before = len(upstream.received(upstream_route.upstream_model))
        assert sent_before < total
        # Its chunk job is lost with it: the sweep (beat) finds the batch nobody holds once the lease runs out.
        start_worker(**WORKER_ENV)
        start_beat(
            PORTICO_REDIS_PREFIX=SERVER_REDIS_PREFIX,
            PORTICO_BATCH_SWEEP_INTERVAL="1",
            PORTICO_MODEL_LIST_CHECK_INTERVAL="0",
            PORTICO_DISCOVERY_INTERVAL="0",
            PORTICO_HEALTH_CHECK_INTERVAL="0",
        )
        batch = wait_for(sdk, created.id, "completed")
        output = rows_of(sdk, batch.output_file_id)
        errors = rows_of(sdk, batch.error_file_id) if batch.error_file_id else []
    sent = sent_contents(upstream, upstream_route.upstream_model)
    assert max(sent.values()) == 1, [content for content, times in sent.items() if times > 1]
    assert sorted(row["custom_id"] for row in output + errors) == sorted(f"r{n}" for n in range(total))
    # Lines in flight when the worker died failed rather than being sent again; every other line completed.
    assert {row["error"]["code"] for row in errors} <= {"batch_line_interrupted"}
    assert len(errors) <= int(WORKER_ENV["PORTICO_BATCH_CONCURRENCY"])
    assert len(output) == total - len(errors)
    ledger = ledger_of(created.id, total)
    assert len(ledger) == total
    assert len({row.request_id for row in ledger}) == total


@pytest.fixture(scope="module")
def embedded_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    """A Portico with no broker: batches run on its own background threads and event loop."""
    env = {**server_env, "PORTICO_CELERY_BROKER_URL": "embedded", "PORTICO_INPROCESS_SCHEDULER": "false"}
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("portico-embedded") / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_without_a_broker_the_server_runs_batches_itself(
    embedded_portico: PorticoServer, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    settle(embedded_portico)
    lines = [chat_line(f"r{n}", route.public_id, f"line {n}") for n in range(20)]
    live = [{"role": "user", "content": "live"}]
    with embedded_portico.client(key.plaintext) as sdk:
        # Live requests before and after share the server's upstream connections and limiter with the lines.
        assert sdk.chat.completions.create(model=route.public_id, messages=live).choices[0].message.content == "live"
        batch = wait_for(sdk, start(sdk, lines).id, "completed")
        output = rows_of(sdk, batch.output_file_id)
        assert sdk.chat.completions.create(model=route.public_id, messages=live).choices[0].message.content == "live"
    assert [row["response"]["body"]["choices"][0]["message"]["content"] for row in output] == [
        f"line {n}" for n in range(20)
    ]
    assert sent_contents(upstream, route.upstream_model) == Counter({"live": 2, **{f"line {n}": 1 for n in range(20)}})
    assert len(ledger_of(batch.id, 20)) == 20
