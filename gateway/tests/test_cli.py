from __future__ import annotations

import io
import json
import os
import queue
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from gateway.cli import Demo, instructions, main, quickstart_setup
from providers.facade import load_models
from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.keys import KEY_PREFIX
from tenants.models import ApiKey, Tenant
from tenants.services import tenant_set_models

KEY = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9]{{48}}")
PORTICO = Path(sys.executable).with_name("portico")


def _createkey(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("createkey", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- help and dispatch --------------------------------------------------------


def test_help_lists_quickstart_serve_and_the_django_commands(capsys):
    assert main(["--help"]) == 0

    shown = capsys.readouterr().out
    for words in ("quickstart", "serve", "Django management command", "portico migrate", "portico createkey"):
        assert words in shown


def test_serve_refuses_zero_workers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--workers", "0"])

    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_other_commands_go_to_django(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["createkey", "--help"])

    assert exit_info.value.code == 0
    assert "Create an API key for a tenant" in capsys.readouterr().out


@pytest.mark.django_db
def test_serve_refuses_a_database_that_is_not_migrated(capsys):
    MigrationRecorder.Migration.objects.filter(app="tenants").delete()

    assert main(["serve"]) == 1

    message = capsys.readouterr().err
    assert "missing" in message
    assert "portico migrate" in message


# --- quickstart -----------------------------------------------------------------


@pytest.mark.django_db
def test_quickstart_sets_up_the_demo_on_its_first_run():
    out = io.StringIO()

    demo = quickstart_setup(out)

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(demo.admin_password)
    assert authenticate(load_key_grants(), demo.key_plaintext, time.time()).tenant_slug == "demo"
    route = load_models()["mock-echo"].routes[0]
    assert (route.provider.name, route.provider.kind, route.upstream_model) == ("Portico mock", "mock", "mock-echo")
    assert route.owned_by == "portico"
    assert "echoes your last message" in out.getvalue()


@pytest.mark.django_db
def test_quickstart_reuses_the_demo_on_later_runs():
    first = quickstart_setup(io.StringIO())
    out = io.StringIO()

    second = quickstart_setup(out)

    assert second == Demo(admin_password=None, key_plaintext=None)
    assert ApiKey.objects.filter(tenant__slug="demo").count() == 1
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert authenticate(load_key_grants(), first.key_plaintext, time.time()) is not None
    said = out.getvalue()
    assert "reusing" in said
    assert "portico createkey --tenant demo --name laptop" in said
    assert not KEY.search(said + instructions(second, host="127.0.0.1", port=8000))


@pytest.mark.django_db
def test_quickstart_issues_a_new_demo_key_when_the_old_ones_were_revoked():
    first = quickstart_setup(io.StringIO())
    ApiKey.objects.filter(tenant__slug="demo").update(active=False)

    second = quickstart_setup(io.StringIO())

    assert second.key_plaintext not in (None, first.key_plaintext)
    assert second.admin_password is None


@pytest.mark.django_db
def test_quickstart_says_when_the_demo_tenant_is_deactivated_and_its_keys_refused():
    quickstart_setup(io.StringIO())
    Tenant.objects.filter(slug="demo").update(active=False)
    out = io.StringIO()

    quickstart_setup(out)

    assert "It is deactivated, so its keys are refused (401)" in out.getvalue()
    assert not Tenant.objects.get(slug="demo").active  # an operator's choice, left as it is


@pytest.mark.django_db
def test_quickstart_keeps_an_existing_superuser():
    get_user_model().objects.create_superuser(username="root", email="", password="pw")

    demo = quickstart_setup(io.StringIO())

    assert demo.admin_password is None
    assert not get_user_model().objects.filter(username="admin").exists()


def test_the_first_runs_instructions_carry_the_key_and_both_examples():
    demo = Demo(admin_password="s3cret", key_plaintext="pk-" + "k" * 48)

    text = instructions(demo, host="127.0.0.1", port=8123)

    assert "http://127.0.0.1:8123/v1" in text
    assert "http://127.0.0.1:8123/admin/" in text
    assert "password s3cret" in text
    assert "curl http://127.0.0.1:8123/v1/chat/completions" in text
    assert f'-H "Authorization: Bearer {demo.key_plaintext}"' in text
    assert f'OpenAI(base_url="http://127.0.0.1:8123/v1", api_key="{demo.key_plaintext}")' in text
    assert 'model="mock-echo"' in text


def test_later_runs_instructions_explain_how_to_get_a_key():
    text = instructions(Demo(admin_password=None, key_plaintext=None), host="127.0.0.1", port=8000)

    assert "export PORTICO_KEY=$(portico createkey --tenant demo --name laptop)" in text
    assert '"Authorization: Bearer $PORTICO_KEY"' in text
    assert 'api_key=os.environ["PORTICO_KEY"]' in text


def test_instructions_point_a_wildcard_host_at_loopback():
    text = instructions(Demo(None, None), host="0.0.0.0", port=8000)

    assert "http://127.0.0.1:8000/v1" in text
    assert "0.0.0.0" not in text


# --- createkey ----------------------------------------------------------------------


@pytest.mark.django_db
def test_createkey_prints_a_key_that_authenticates(tenant):
    out, err = _createkey("--tenant", "acme", "--name", "laptop")

    plaintext = out.strip()
    assert KEY.fullmatch(plaintext)
    grant = authenticate(load_key_grants(), plaintext, time.time())
    assert (grant.tenant_slug, grant.allowed_models) == ("acme", None)
    assert "will not be shown again" in err
    assert plaintext not in err


@pytest.mark.django_db
def test_createkey_limits_the_key_to_the_named_models(tenant):
    make_route(public_id="gpt-4o")
    make_route(public_id="o1")
    make_route(public_id="gpt-4o-mini")

    out, _ = _createkey("--tenant", "acme", "--name", "ci", "--models", "gpt-4o, o1")

    grant = authenticate(load_key_grants(), out.strip(), time.time())
    assert grant.allowed_models == frozenset({"gpt-4o", "o1"})


@pytest.mark.django_db
def test_createkey_sets_an_expiry(tenant):
    out, _ = _createkey("--tenant", "acme", "--name", "ci", "--expires-in-days", "7")

    grant = authenticate(load_key_grants(), out.strip(), time.time())
    assert 6.9 * 86400 < grant.expires_at - time.time() <= 7 * 86400


@pytest.mark.django_db
def test_createkey_refuses_an_unknown_tenant(tenant):
    with pytest.raises(CommandError, match=r"No tenant with slug 'nope'\. Known tenants: acme\."):
        _createkey("--tenant", "nope", "--name", "laptop")


@pytest.mark.django_db
def test_createkey_refuses_an_unknown_model_and_creates_nothing(tenant):
    make_route(public_id="gpt-4o")

    with pytest.raises(CommandError, match=r"Unknown model id\(s\): gtp-4o\."):
        _createkey("--tenant", "acme", "--name", "ci", "--models", "gtp-4o")

    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_createkey_refuses_a_model_the_tenant_may_not_use():
    allowed = make_route(public_id="gpt-4o")
    make_route(public_id="o1")
    tenant_set_models(tenant=Tenant.objects.create(name="Narrow", slug="narrow"), model_ids=[allowed.model_id])

    with pytest.raises(CommandError, match=r"Tenant narrow may not use: o1\."):
        _createkey("--tenant", "narrow", "--name", "ci", "--models", "o1")


@pytest.mark.django_db
def test_createkey_refuses_a_non_positive_expiry(tenant):
    with pytest.raises(CommandError, match="at least 1"):
        _createkey("--tenant", "acme", "--name", "ci", "--expires-in-days", "0")


# --- the real servers ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """A `portico` process whose merged output is read line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, program: str | Path = PORTICO) -> None:
        self.process = subprocess.Popen(
            [str(program), *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return "".join(self.seen)
        raise AssertionError(f"never printed {text!r}; printed:\n{''.join(self.seen)}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture
def run_portico() -> Iterator:
    started: list[Running] = []

    def start(args: list[str], env: dict[str, str], cwd: Path, program: str | Path = PORTICO) -> Running:
        started.append(Running(args, env, cwd, program))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    return {**env, "PORTICO_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


@pytest.mark.integration
def test_quickstart_serves_the_demo_it_prints(tmp_path, run_portico):
    from openai import OpenAI

    port = _free_port()
    server = run_portico(["quickstart", "--port", str(port)], _embedded_env(tmp_path / "data"), tmp_path)

    printed = server.wait_for("Application startup complete")

    key = KEY.search(printed).group()
    assert "Creating the database" in printed
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "Hello there"}])
    assert reply.choices[0].message.content == "Hello there"
    assert reply.model == "mock-echo"
    css = httpx.get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
    assert css.status_code == 200


# A tenant of one request a minute whose second request may become a job, which expires 2 s later.
_JOBS_TENANT = """\
tenants:
- slug: jobs
  name: Jobs
  allowed_models: [mock-echo]
  queue_mode: async
  queue_max_wait: 2
  rate_limits:
  - model: ''
    requests_per_minute: 1
"""


@pytest.mark.integration
def test_quickstart_runs_batches_and_queued_jobs_in_process_without_a_broker(tmp_path, run_portico):
    from openai import OpenAI

    port = _free_port()
    env = _embedded_env(tmp_path / "data")
    server = run_portico(["quickstart", "--port", str(port)], env, tmp_path)
    key = KEY.search(server.wait_for("Application startup complete")).group()
    base = f"http://127.0.0.1:{port}/v1"
    client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=10)

    lines = "".join(
        json.dumps(
            {
                "custom_id": f"line-{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "mock-echo", "messages": [{"role": "user", "content": f"line {n}"}]},
            }
        )
        + "\n"
        for n in range(3)
    )
    upload = client.files.create(file=("lines.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 30
    while (batch := client.batches.retrieve(batch.id)).status not in {"completed", "failed", "expired", "cancelled"}:
        assert time.monotonic() < deadline, f"the batch is still {batch.status}"
        time.sleep(0.2)
    assert batch.status == "completed", batch
    assert batch.output_file_id is not None
    rows = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    answers = {row["custom_id"]: row["response"]["body"]["choices"][0]["message"]["content"] for row in rows}
    assert answers == {f"line-{n}": f"line {n}" for n in range(3)}

    portico = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "check": True}
    subprocess.run([str(PORTICO), "config", "apply", "-"], input=_JOBS_TENANT, **portico)  # noqa: S603
    created = subprocess.run([str(PORTICO), "createkey", "--tenant", "jobs", "--name", "app"], **portico)  # noqa: S603
    jobs_key = KEY.search(created.stdout).group()
    ask = {"model": "mock-echo", "messages": [{"role": "user", "content": "Hello"}]}
    headers = {"Authorization": f"Bearer {jobs_key}", "Prefer": "respond-async"}
    first = httpx.post(f"{base}/chat/completions", json=ask, headers=headers, timeout=10)
    assert first.status_code == 200, first.text  # served at once: a job only when it would be refused
    second = httpx.post(f"{base}/chat/completions", json=ask, headers=headers, timeout=10)
    assert second.status_code == 202, second.text
    job = f"http://127.0.0.1:{port}{second.headers['location']}"
    deadline = time.monotonic() + 30
    while (polled := httpx.get(job, headers=headers, timeout=10)).status_code == 202:
        assert time.monotonic() < deadline, polled.text
        time.sleep(0.2)
    assert polled.status_code == 429, polled.text  # its one request a minute is spent: it expires, run in-process
    assert polled.json()["error"]["code"] == "queue_expired"


@pytest.mark.integration
def test_quickstart_keeps_its_database_and_data_directory_private(tmp_path, run_portico):
    data = tmp_path / "data"
    server = run_portico(["quickstart", "--port", str(_free_port())], _embedded_env(data), tmp_path)

    server.wait_for("Application startup complete")

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "portico.sqlite3").stat().st_mode) == 0o600


@pytest.mark.integration
def test_the_embedded_database_serves_concurrent_writers_without_refusing_any(tmp_path, run_portico):
    """Operators' writes through the management API, while calls fill the ledger: no "database is locked" 503."""
    from openai import OpenAI

    port, data = _free_port(), tmp_path / "data"
    env = {**_embedded_env(data), "PORTICO_API_THROTTLE_USER": "100000/min"}
    server = run_portico(["quickstart", "--port", str(port)], env, tmp_path)
    key = KEY.search(server.wait_for("Application startup complete")).group()
    made = subprocess.run(
        [str(PORTICO), "createapitoken", "admin"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    token = re.search(r"pt-\S+", made.stdout).group()
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}
    statuses: list[int] = []
    stop = threading.Event()

    def calls() -> None:  # each answer is a ledger row, written by the ledger writer
        client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        while not stop.is_set():
            client.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "hi"}])

    def operator(worker: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            for turn in range(12):
                slug = f"w{worker}-{turn}"
                created = http.post("/api/tenants/", json={"name": slug, "slug": slug})
                statuses.append(created.status_code)
                if created.status_code == 201:
                    changed = http.patch(f"/api/tenants/{created.json()['id']}/", json={"name": f"{slug}!"})
                    statuses.append(changed.status_code)
                statuses.append(http.get("/api/usage/totals/").status_code)

    callers = [threading.Thread(target=calls) for _ in range(2)]
    operators = [threading.Thread(target=operator, args=(worker,)) for worker in range(8)]
    for thread in callers + operators:
        thread.start()
    for thread in operators:
        thread.join()
    stop.set()
    for thread in callers:
        thread.join()

    assert len(statuses) == 8 * 12 * 3
    assert sorted(set(statuses)) == [200, 201], sorted(statuses)


@pytest.mark.integration
@pytest.mark.django_db
def test_serve_starts_the_production_server_on_a_migrated_database(tmp_path, run_portico):
    settings = connection.settings_dict
    database_url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    env = {**_embedded_env(tmp_path), "DATABASE_URL": database_url}
    port = _free_port()

    server = run_portico(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    server.wait_for("Application startup complete")

    response = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer pk-nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
