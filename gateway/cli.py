"""The `portico` command: `quickstart`, `serve`, `worker`, `beat`, and every Django management command.

`quickstart` is the embedded default: SQLite under PORTICO_DATA_DIR, no Redis,
a demo tenant and key and the built-in mock provider, then the server. `serve`
is the production server and changes nothing. `worker` and `beat` run Celery
with a broker (docs/background-jobs.md). Any other subcommand goes to
Django's management (`portico migrate`, `portico createkey`, ...).

Django is imported inside the functions, not at the top: the settings module
has to be chosen before Django loads, and `--help` should not need a database.
The module runs past 400 lines because it is the whole `portico` command, each
subcommand's options next to what it runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tenants.models import Tenant

SETTINGS = "gateway.settings"
APP = "gateway.asgi:application"
DEMO_TENANT = "demo"
DEMO_PROVIDER = "Portico mock"
DEMO_MODEL = "mock-echo"
DEMO_PROMPT = "Hello, Portico!"

_DESCRIPTION = """\
Portico, a multi-tenant OpenAI-compatible LLM gateway.

commands:
  quickstart    set up the embedded default (SQLite, a demo tenant, key and mock provider) and serve it
  serve         run the production server (uvicorn); run `portico migrate` first
  worker        run background jobs from the broker (PORTICO_CELERY_BROKER_URL, else REDIS_URL)
  beat          send the periodic jobs to the workers (one per deployment, with a broker)

Every Django management command works too, e.g.:
  portico migrate                                   create or update the database
  portico createsuperuser                           add an admin user
  portico createkey --tenant demo --name laptop     issue an API key (printed once)
  portico help                                      list all of them
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        sys.stdout.write(_DESCRIPTION)
        return 0
    if argv[0] in {"quickstart", "serve", "worker", "beat"}:
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        args.celery_options = extra
        if extra and argv[0] not in {"worker", "beat"}:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.run(args))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    from django.core.management import execute_from_command_line

    from audit.context import cli_scope

    if not argv[0].startswith("-"):  # `portico rotate-credential-key` runs rotate_credential_key
        argv[0] = argv[0].replace("-", "_")
    with cli_scope():  # what the command changes is recorded as this OS user's (docs/audit.md)
        execute_from_command_line(["portico", *argv])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portico", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(required=True, metavar="command")
    quick = commands.add_parser("quickstart", help="set up the embedded default on first run, then serve")
    quick.add_argument("--host", default="127.0.0.1")
    quick.add_argument("--port", type=int, default=8000)
    quick.set_defaults(run=_quickstart)
    serve = commands.add_parser("serve", help="run the production server")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server in a container listens on every interface
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes (default: 1)")
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    serve.set_defaults(run=_serve)
    _celery_parsers(commands)
    return parser


def _celery_parsers(commands: Any) -> None:
    from gateway.env import env_int, env_str

    passed_on = "Options not listed here go to `celery {0}` (see `celery {0} --help`)."
    worker = commands.add_parser("worker", help="run background jobs", description=passed_on.format("worker"))
    worker.add_argument("-c", "--concurrency", type=_positive, default=2, help="processes running jobs (default: 2)")
    queues = "interactive,default,batch"
    worker.add_argument("-Q", "--queues", type=_queues, default=queues, help=f"first served first (default: {queues})")
    worker.add_argument("-l", "--loglevel", default=env_str("PORTICO_LOG_LEVEL", "INFO"))
    worker.add_argument("--max-tasks-per-child", type=_positive, default=100, help="jobs a process runs (default: 100)")
    worker.add_argument(
        "--db-pool-size",
        type=int,
        default=env_int("PORTICO_WORKER_DB_POOL_SIZE", 2, minimum=0),
        help="database connections per process (default: PORTICO_WORKER_DB_POOL_SIZE, else 2)",
    )
    worker.set_defaults(run=_worker)
    beat = commands.add_parser("beat", help="send the periodic jobs to workers", description=passed_on.format("beat"))
    beat.add_argument("--schedule", help="its last-run times (default: PORTICO_DATA_DIR/celerybeat-schedule)")
    beat.add_argument("-l", "--loglevel", default=env_str("PORTICO_LOG_LEVEL", "INFO"))
    beat.set_defaults(run=_beat)


def _queues(value: str) -> str:
    from gateway.celery import QUEUES

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"queues are {', '.join(QUEUES)}; got {value!r}")
    return ",".join(names)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _setup_django(*, force_settings: bool = False) -> None:
    if force_settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


# --- serve -------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    _setup_django()
    problem = database_problem()
    if problem:
        sys.stderr.write(problem + "\n")
        return 1
    release_database()
    from django.conf import settings

    from gateway.observability.rundir import metrics_run

    # Every worker writes its metrics to files in one directory, so any worker's /metrics adds them all up.
    with metrics_run(settings.PORTICO_METRICS_DIR):
        return run_server(APP, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log)


def _migration_plan() -> tuple[Any, list[Any]]:
    """The migration executor and the migrations it has yet to apply."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return executor, executor.migration_plan(executor.loader.graph.leaf_nodes())


def database_problem() -> str | None:
    """Why the server cannot start on this database, or None if it is reachable and migrated."""
    from django.db import DatabaseError

    try:
        _, pending = _migration_plan()
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return f"Cannot reach the database ({_where()}): {first_line}\nCheck DATABASE_URL."
    if pending:
        return (
            f"The database ({_where()}) is missing {len(pending)} migration(s).\n"
            "Run `portico migrate` first (once per upgrade), then `portico serve` again."
        )
    return None


def release_database() -> None:
    """Close this process's connections and its pool: the server's threads open their own.

    A pool left open here would keep its connections for as long as the server runs,
    in a parent process that serves nothing when there are several workers.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        if getattr(connection, "pool", None) is not None:  # only PostgreSQL has one
            connection.close_pool()


def _where() -> str:
    """The database, described without its credentials."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return f"SQLite file {name}"
    host = connection.settings_dict.get("HOST") or "localhost"
    return f"{connection.vendor} database {name!s} on {host}"


def run_server(app: str, *, host: str, port: int, workers: int, access_log: bool) -> int:
    """uvicorn as Portico runs in production, with its bounds on client input (see gateway.server)."""
    from gateway.server import run_server as serve

    return serve(app, host=host, port=port, workers=workers, access_log=access_log)


# --- worker and beat ---------------------------------------------------------

_NO_BROKER = """\
portico {command}: no broker is configured, so there is nothing for it to do.

Without a broker ({why}), background jobs run inside each
`portico serve` process, and so does their schedule: no worker or beat is needed.

To run them in workers instead, give every Portico process (servers, workers and beat) a broker:
    export PORTICO_CELERY_BROKER_URL=redis://127.0.0.1:6379/0    # or just REDIS_URL; RabbitMQ: amqp://...
then start `portico worker` (as many as needed) and one `portico beat`. See docs/background-jobs.md.
"""


def _no_broker(command: str) -> int:
    from django.conf import settings

    if settings.REDIS_URL:
        why = "PORTICO_CELERY_BROKER_URL=embedded"
    else:
        why = "neither PORTICO_CELERY_BROKER_URL nor REDIS_URL is set"
    sys.stderr.write(_NO_BROKER.format(command=command, why=why))
    return 2


def _worker(args: argparse.Namespace) -> int:
    # Read by the settings, so set before Django loads them: a worker process runs one job at a time and
    # needs few connections (the README's sizing counts them).
    os.environ["PORTICO_DB_POOL_SIZE"] = str(args.db_pool_size)
    _setup_django()
    from gateway.celery import broker_configured

    if not broker_configured():
        return _no_broker("worker")
    options = ["--concurrency", str(args.concurrency), "--queues", args.queues, "--loglevel", args.loglevel]
    options += ["--max-tasks-per-child", str(args.max_tasks_per_child), "--optimization", "fair"]
    # Mingle and gossip keep workers in step on revoked jobs and results, which Portico does not use; without
    # them a worker starts a second faster and keeps quiet on the broker.
    options += ["--without-mingle", "--without-gossip"]
    return _celery("worker", options + args.celery_options)


def _beat(args: argparse.Namespace) -> int:
    _setup_django()
    from django.conf import settings

    from gateway.celery import broker_configured

    if not broker_configured():
        return _no_broker("beat")
    schedule = Path(args.schedule or settings.CELERY_BEAT_SCHEDULE_FILENAME)
    schedule.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return _celery("beat", ["--schedule", str(schedule), "--loglevel", args.loglevel, *args.celery_options])


def _celery(command: str, options: list[str]) -> int:
    import click

    from gateway.celery import app

    try:
        return int(app.start([command, *options]) or 0)
    except click.ClickException as exc:  # a bad option: said as `celery` says it, without a traceback
        exc.show()
        return exc.exit_code


# --- quickstart --------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """What quickstart set up; the secrets are there only on the run that created them."""

    admin_password: str | None
    key_plaintext: str | None


def _quickstart(args: argparse.Namespace) -> int:
    out = sys.stdout
    _setup_django(force_settings=True)
    prepare_database(out)
    portico = portico_command()
    demo = quickstart_setup(out, portico=portico)
    out.write(instructions(demo, host=args.host, port=args.port, portico=portico))
    out.flush()
    release_database()
    return run_server(APP, host=args.host, port=args.port, workers=1, access_log=False)


def prepare_database(out: TextIO) -> None:
    from django.core.management import call_command

    executor, pending = _migration_plan()
    if not pending:
        out.write(f"Database is up to date ({_where()}).\n")
        return
    fresh = not executor.loader.applied_migrations
    out.write(f"{'Creating the database' if fresh else 'Updating the database'} ({_where()})…\n")
    out.flush()
    call_command("migrate", interactive=False, verbosity=0)


def portico_command() -> str:
    """How the commands quickstart prints call this `portico`, so that they work as pasted.

    `make quickstart` runs .venv/bin/portico, which is not on PATH unless the
    virtualenv is active: the bare name would run nothing (or another install's
    portico). So the bare name only when PATH leads to this very program, else
    its path: relative to the current directory (which holds the default data
    directory) when it lies below it, else absolute.
    """
    script = _running_script()
    found = shutil.which("portico")
    if found is not None and Path(found).resolve() == script.resolve():
        return "portico"
    try:
        shown = str(script.relative_to(Path.cwd()))
    except ValueError:
        return shlex.quote(str(script))
    return shlex.quote(shown if os.sep in shown else os.path.join(".", shown))


def _running_script() -> Path:
    invoked = Path(sys.argv[0])
    if invoked.name == "portico" and invoked.is_file():
        return invoked.absolute()
    # Run some other way (python -m, a test): the console script installed with this interpreter.
    return Path(sys.executable).absolute().with_name("portico")


def quickstart_setup(out: TextIO, *, portico: str = "portico") -> Demo:
    """Create the demo's admin, tenant, mock provider, route and key, reusing whatever exists already.

    `portico` is how the commands it suggests call the program (see `portico_command`).
    """
    from django.db import transaction

    with transaction.atomic():
        password = _ensure_admin(out, portico)
        tenant = _ensure_demo_tenant(out)
        _ensure_mock_route(out)
        plaintext = _ensure_demo_key(out, tenant, portico)
    return Demo(admin_password=password, key_plaintext=plaintext)


def _ensure_admin(out: TextIO, portico: str) -> str | None:
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    if users.filter(is_superuser=True).exists():
        out.write(f"Admin user: already set up (forgot the password? `{portico} changepassword admin`).\n")
        return None
    out.write("Creating the admin user `admin`…\n")
    password = secrets.token_urlsafe(12)
    users.create_superuser(username="admin", email="", password=password)
    return password


def _ensure_demo_tenant(out: TextIO) -> Tenant:
    from tenants.models import Tenant
    from tenants.services import tenant_create

    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first()
    if tenant is not None:
        out.write(f"Tenant `{DEMO_TENANT}`: reusing it.\n")
        if not tenant.active:  # an operator turned it off: say so, rather than print a key that is refused
            out.write(
                "  It is deactivated, so its keys are refused (401): reactivate it in the admin, under Tenants,"
                " to try the demo.\n"
            )
        return tenant
    out.write(f"Creating the tenant `{DEMO_TENANT}`…\n")
    return tenant_create(name="Demo", slug=DEMO_TENANT)


def _ensure_mock_route(out: TextIO) -> None:
    from providers.models import Provider, PublicModel
    from providers.services import model_route_create, provider_create

    provider = Provider.objects.filter(name=DEMO_PROVIDER).first()
    if provider is None:
        out.write(
            f"Creating the provider “{DEMO_PROVIDER}” (kind `mock`): a built-in provider that echoes "
            "your last message, word by word when streaming. No credentials needed.\n"
        )
        provider = provider_create(name=DEMO_PROVIDER, kind="mock")
    else:
        out.write(f"Provider “{DEMO_PROVIDER}” (built-in mock): reusing it.\n")
    if PublicModel.objects.filter(public_id=DEMO_MODEL).exists():
        out.write(f"Model `{DEMO_MODEL}`: reusing it.\n")
        return
    out.write(f"Creating the model `{DEMO_MODEL}` on “{DEMO_PROVIDER}”…\n")
    model_route_create(provider=provider, public_id=DEMO_MODEL, upstream_model=DEMO_MODEL, owned_by="portico")


def _ensure_demo_key(out: TextIO, tenant: Tenant, portico: str) -> str | None:
    from tenants.services import api_key_create

    if tenant.api_keys.filter(active=True).exists():
        out.write(
            f"API key for `{DEMO_TENANT}`: one exists already, and its plaintext cannot be shown again.\n"
            f"  Make a new one with: {_createkey(portico)}\n"
        )
        return None
    out.write(f"Creating an API key for `{DEMO_TENANT}`…\n")
    _, plaintext = api_key_create(tenant=tenant, name="quickstart")
    return plaintext


def instructions(demo: Demo, *, host: str, port: int, portico: str = "portico") -> str:
    base = f"http://{_display_host(host)}:{port}"
    key = demo.key_plaintext or "$PORTICO_KEY"
    lines = ["", "Portico is ready.", "", f"  OpenAI API:  {base}/v1", f"  Admin:       {base}/admin/"]
    if demo.admin_password:
        lines.append(f"               user admin, password {demo.admin_password}  (shown once)")
    if demo.key_plaintext:
        lines += ["", f"  API key for tenant `{DEMO_TENANT}` (shown once, copy it now): {demo.key_plaintext}"]
    else:
        lines += ["", "  Get a key into $PORTICO_KEY first (in another terminal, in this directory):", ""]
        lines += [f"    export PORTICO_KEY=$({_createkey(portico)})"]
    lines += ["", "Try it with curl:", "", *_curl(base, key), "", "Or with the openai SDK (pip install openai):", ""]
    lines += [*_python(base, demo.key_plaintext), ""]
    return "\n".join(lines) + "\n" + _host_warning(host)


def _createkey(portico: str) -> str:
    # createkey prints the key alone on stdout (its note goes to stderr), so $(...) captures just the key.
    return f"{portico} createkey --tenant {DEMO_TENANT} --name laptop"


def _curl(base: str, key: str) -> list[str]:
    body = f'{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "{DEMO_PROMPT}"}}]}}'
    return [
        f"    curl {base}/v1/chat/completions \\",
        f'      -H "Authorization: Bearer {key}" \\',
        '      -H "Content-Type: application/json" \\',
        f"      -d '{body}'",
    ]


def _python(base: str, key: str | None) -> list[str]:
    api_key = f'"{key}"' if key else 'os.environ["PORTICO_KEY"]'
    return [
        *(["    import os"] if key is None else []),
        "    from openai import OpenAI",
        "",
        f'    client = OpenAI(base_url="{base}/v1", api_key={api_key})',
        "    reply = client.chat.completions.create(",
        f'        model="{DEMO_MODEL}", messages=[{{"role": "user", "content": "{DEMO_PROMPT}"}}]',
        "    )",
        "    print(reply.choices[0].message.content)",
    ]


def _display_host(host: str) -> str:
    """A host a browser on this machine can open: a wildcard address becomes loopback."""
    if host in {"0.0.0.0", ""}:  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _host_warning(host: str) -> str:
    from django.conf import settings

    shown = _display_host(host)
    if "*" in settings.ALLOWED_HOSTS or shown in settings.ALLOWED_HOSTS:
        return ""
    return f"Note: add {shown} to ALLOWED_HOSTS (comma-separated) or the admin will refuse requests for it.\n"
