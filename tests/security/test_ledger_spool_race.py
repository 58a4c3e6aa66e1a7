"""The ledger spool loses no row and breaks no answer: not to another process's drain, not to a failing disk.

Two processes append to one spool directory, each sealing its file and
draining the directory every few rows, as two Portico workers on one host do,
only far more often: every rotation opens a new spool file while the other
process may be listing and claiming files, the window in which rows were lost.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING

import django
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

if TYPE_CHECKING:  # the spawned workers import this module before Django is set up: no models at import time
    from providers.models import ModelRoute
    from tenants.tests.factories import IssuedKey

ROWS = 50_000  # per process: 100,000 appends in all
SEAL_EVERY = 5  # rows per spool file: 20,000 files opened, sealed and claimed
DRAIN_EVERY = 5
DEADLINE = 120.0  # seconds; the run takes under 15 on two busy cores
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


def _sink(path: Path) -> tuple[int, Callable[[list[bytes]], None]]:
    """An insert function that appends the drained lines to `path` instead of a database, and its descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def insert(lines: list[bytes]) -> None:
        os.write(fd, b"".join(line + b"\n" for line in lines))

    return fd, insert


def _spool_and_drain(directory: str, name: str, start_line: Barrier) -> None:
    """One worker: append ROWS rows, sealing and draining often; an append that raises loses its row."""
    django.setup()
    from billing.ledger import Spool, drain  # needs the settings set up above

    spool = Spool(Path(directory))
    fd, insert = _sink(Path(directory).parent / f"{name}.drained")
    start_line.wait()
    for n in range(1, ROWS + 1):
        try:
            spool.append({"request_id": f"{name}-{n}"})
        except OSError:
            continue  # the row is lost: the assertion counts it
        if n % SEAL_EVERY == 0:
            spool.seal()
        if n % DRAIN_EVERY == 0:
            drain(spool.directory, insert=insert)
    spool.seal()
    os.close(fd)


def _drained_ids(folder: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in folder.glob("*.drained"):
        counts.update(line.split(b'"')[3].decode() for line in path.read_bytes().splitlines())
    return counts


def test_two_processes_spooling_and_draining_one_directory_lose_and_repeat_no_row(tmp_path: Path) -> None:
    from billing.ledger import drain

    directory = tmp_path / "ledger"
    directory.mkdir()
    context = multiprocessing.get_context("spawn")
    start_line = context.Barrier(2)
    workers = [context.Process(target=_spool_and_drain, args=(str(directory), name, start_line)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE)
    assert [worker.exitcode for worker in workers] == [0, 0]
    # What the workers sealed last, or left behind, is drained here.
    fd, insert = _sink(tmp_path / "rest.drained")
    drain(directory, insert=insert)
    os.close(fd)

    counts = _drained_ids(tmp_path)
    expected = {f"{name}-{n}" for name in ("a", "b") for n in range(1, ROWS + 1)}
    lost = expected - counts.keys()
    repeated = {request_id for request_id, count in counts.items() if count > 1}
    assert (len(lost), len(repeated), len(counts)) == (0, 0, 2 * ROWS)
    assert list(directory.iterdir()) == []


@pytest.fixture
def own_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[PorticoServer]:
    """A server of this test's own with a spool directory no other process drains."""
    env = {"PORTICO_LEDGER_DIR": str(tmp_path / "spool"), "PORTICO_LEDGER_FLUSH": "0.05", "PORTICO_DB_POOL_SIZE": "2"}
    server = PorticoServer(env={**server_env, **env}, log_path=tmp_path / "portico.log")
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.usefixtures("committed_db")
def test_a_server_whose_spool_cannot_be_written_answers_and_records_the_rows_once_it_can(
    own_server: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    key: IssuedKey,
    settle: Settle,
    tmp_path: Path,
) -> None:
    from tests.integration.test_ledger import assert_once_each, ledger_rows

    upstream.script(upstream_route.upstream_model, Reply("Hello there."))
    settle()
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    spool.rmdir()
    spool.write_bytes(b"")  # a file where the directory was: no spool file can be created
    request_ids = [f"unwritable-{uuid.uuid4()}" for _ in range(3)]

    with own_server.client(key.plaintext) as client:
        for request_id in request_ids:
            completion = client.chat.completions.create(
                model=upstream_route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
            )
            assert completion.choices[0].message.content == "Hello there."
    spool.unlink()

    assert_once_each(ledger_rows(request_ids, spool=spool), request_ids)
    assert "rows are held in memory" in own_server.log()
