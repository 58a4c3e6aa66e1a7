"""Django settings for Portico, read from the environment (see the README's table).

With nothing set, Portico runs on the embedded default: a SQLite file under
PORTICO_DATA_DIR, no Redis, Celery tasks run in-process.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured

from gateway.database import database_settings, private_sqlite_file
from gateway.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("PORTICO_DATA_DIR", str(Path.cwd() / ".portico"))).resolve()


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data directory."""
    value = env_str("SECRET_KEY")
    if value:
        return value
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    path.touch(mode=0o600)
    path.write_text(value, encoding="utf-8")
    return value


SECRET_KEY = _secret_key()
DEBUG = env_bool("PORTICO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "gateway.apps.PorticoAdminConfig",  # django.contrib.admin, with Portico's console as its site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "gateway",
    "tenants",
    "providers",
    "billing",
    "batches",
    "queueing",
    "portal",
    "notifications",
    "audit",
    "caching",
    "rest_framework",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "gateway.null_characters.NullCharacterMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "gateway.csp.AdminContentSecurityPolicyMiddleware",
    "audit.middleware.AuditScopeMiddleware",
]

ROOT_URLCONF = "gateway.urls"
ASGI_APPLICATION = "gateway.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if not env_str("DATABASE_URL"):
    private_sqlite_file(DATA_DIR / "portico.sqlite3")  # the embedded default
DATABASES = {
    "default": database_settings(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portico.sqlite3'}"),
        # Each process's PostgreSQL connections (0: no pool); see gateway/database.py and the README's sizing.
        pool_size=env_int("PORTICO_DB_POOL_SIZE", 10, minimum=0),
        # Short: a request waits this long on a database that refuses, and so does a stopping ledger writer.
        pool_timeout=env_float("PORTICO_DB_POOL_TIMEOUT", 2.0, minimum=0.1),
        # Only without a pool. Under ASGI a kept connection is never reused (each request has its own thread).
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Every Redis key and channel Portico uses starts with this, so several
# deployments (or test runs) can share one Redis.
PORTICO_REDIS_PREFIX = env_str("PORTICO_REDIS_PREFIX", "portico")
# REDIS_URL names one node of a Redis Cluster: limits, breakers, caps and the answer cache find the others
# (docs/redis-cluster.md).
PORTICO_REDIS_CLUSTER = env_bool("PORTICO_REDIS_CLUSTER", False)
# Sign-in and management API throttles count in the cache: shared by every process when Redis is set (Django's
# Redis cache cannot follow a cluster: there each process counts alone).
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": PORTICO_REDIS_PREFIX,
        }
        if REDIS_URL and not PORTICO_REDIS_CLUSTER
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("PORTICO_STATIC_ROOT", str(DATA_DIR / "static")))
# Portico serves the admin's static files itself unless a proxy in front does.
PORTICO_SERVE_STATIC = env_bool("PORTICO_SERVE_STATIC", True)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("PORTICO_BEHIND_TLS_PROXY") else None
SESSION_COOKIE_SECURE = env_bool("PORTICO_BEHIND_TLS_PROXY")
CSRF_COOKIE_SECURE = env_bool("PORTICO_BEHIND_TLS_PROXY")
# Browsers that reached Portico over HTTPS keep to HTTPS this long; sent on HTTPS requests only.
SECURE_HSTS_SECONDS = env_int(
    "PORTICO_HSTS_SECONDS", 31_536_000 if env_bool("PORTICO_BEHIND_TLS_PROXY") else 0, minimum=0
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
# Django's own list unless PORTICO_PASSWORD_HASHERS names others (dotted paths, the first hashes new passwords):
# Argon2 first, say, once its library is installed. A password stored with any hasher listed still signs in.
PASSWORD_HASHERS = env_list("PORTICO_PASSWORD_HASHERS", global_settings.PASSWORD_HASHERS)
# The admin's sign-in refuses a username from one address after this many failures, for this many seconds.
PORTICO_ADMIN_LOGIN_ATTEMPTS = env_int("PORTICO_ADMIN_LOGIN_ATTEMPTS", 5, minimum=1)
PORTICO_ADMIN_LOGIN_WINDOW = env_int("PORTICO_ADMIN_LOGIN_WINDOW", 900, minimum=1)

# --- Portico ---------------------------------------------------------------
# Largest request body the OpenAI surface accepts; larger ones get 413.
PORTICO_MAX_BODY_BYTES = env_int("PORTICO_MAX_BODY_BYTES", 20 * 1024 * 1024, minimum=1024)
# The fast path enforces PORTICO_MAX_BODY_BYTES itself; Django's own 2.5 MB cap must not undercut it.
DATA_UPLOAD_MAX_MEMORY_SIZE = PORTICO_MAX_BODY_BYTES
# /v1/ runs on the hop-free fast path (gateway/fastpath.py). Off sends it through Django's standard
# handler and middleware instead: only for comparing the two (bench/run.sh's `:django` modes) or debugging.
PORTICO_FAST_PATH = env_bool("PORTICO_FAST_PATH", True)
# Without Redis, each process reloads its snapshot of keys and routes this often.
PORTICO_SNAPSHOT_TTL = env_float("PORTICO_SNAPSHOT_TTL", 0.5, minimum=0.1)
# With Redis, every process also reloads this often, in case a change message was lost.
PORTICO_SNAPSHOT_POLL = env_float("PORTICO_SNAPSHOT_POLL", 5.0, minimum=0.1)
# The upstream client: "http1" (default: Portico's own, providers/http1.py, the least CPU per request
# measured), "aiohttp" (aiohttp's pool) or "httpx" (httpx's own pool).
PORTICO_HTTP_TRANSPORT = env_str("PORTICO_HTTP_TRANSPORT", "http1")
if PORTICO_HTTP_TRANSPORT not in {"http1", "aiohttp", "httpx"}:
    raise ImproperlyConfigured(
        f"PORTICO_HTTP_TRANSPORT must be 'http1', 'aiohttp' or 'httpx', got {PORTICO_HTTP_TRANSPORT!r}"
    )
PORTICO_UPSTREAM_MAX_CONNECTIONS = env_int("PORTICO_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
# Keys hashing and credential encryption: both default to material derived
# from SECRET_KEY; set them explicitly to rotate SECRET_KEY without losing keys.
PORTICO_KEY_HASH_SECRET = env_str("PORTICO_KEY_HASH_SECRET", SECRET_KEY)
PORTICO_CREDENTIAL_KEY = env_str("PORTICO_CREDENTIAL_KEY", SECRET_KEY)
# Seconds between flushes of API keys' last-used timestamps (kept off the request path).
PORTICO_LAST_USED_FLUSH = env_float("PORTICO_LAST_USED_FLUSH", 30.0, minimum=0.1)

# Uploads (audio transcriptions) are streamed to the provider, never held whole; this caps their size.
PORTICO_MAX_UPLOAD_BYTES = env_int("PORTICO_MAX_UPLOAD_BYTES", 26 * 1024 * 1024, minimum=1024)

# --- The HTTP server (gateway/server.py): bounds on what a client sends before it is authenticated ------------
# Request line and headers past this many bytes, or more headers than this, get 431.
PORTICO_MAX_HEADER_BYTES = env_int("PORTICO_MAX_HEADER_BYTES", 64 * 1024, minimum=1024)
PORTICO_MAX_HEADERS = env_int("PORTICO_MAX_HEADERS", 100, minimum=10)
# Seconds from a request's first byte to the end of its headers, and from there to the end of its body (408).
PORTICO_HEADER_TIMEOUT = env_float("PORTICO_HEADER_TIMEOUT", 10.0, minimum=0.1)
PORTICO_BODY_TIMEOUT = env_float("PORTICO_BODY_TIMEOUT", 120.0, minimum=0.1)
# Seconds a connection may sit idle, before its first request or between requests, before it is closed.
PORTICO_KEEPALIVE_TIMEOUT = env_int("PORTICO_KEEPALIVE_TIMEOUT", 5, minimum=1)
# Seconds `portico serve --workers N` waits for its workers after SIGTERM before it kills those still running.
PORTICO_SHUTDOWN_GRACE = env_float("PORTICO_SHUTDOWN_GRACE", 30.0, minimum=1.0)
# Client connections per process past which requests get 503; 0 derives it from the open files limit.
PORTICO_MAX_CONNECTIONS = env_int("PORTICO_MAX_CONNECTIONS", 0, minimum=0)

# --- Limits, budgets and the ledger ------------------------------------------
# What to do when Redis (the shared limiter) is unreachable: "open" serves with a per-process
# limiter and logs loudly; "closed" refuses requests with 503 until Redis is back.
PORTICO_LIMITS_ON_REDIS_ERROR = env_str("PORTICO_LIMITS_ON_REDIS_ERROR", "open")
if PORTICO_LIMITS_ON_REDIS_ERROR not in {"open", "closed"}:
    raise ImproperlyConfigured(
        f"PORTICO_LIMITS_ON_REDIS_ERROR must be 'open' or 'closed', got {PORTICO_LIMITS_ON_REDIS_ERROR!r}"
    )
# Seconds a request's slot in flight (max_concurrent, a deployment's max_in_flight) outlives a process that died
# holding it; a live process renews its slots every third of it (billing/limits/leases.py).
PORTICO_IN_FLIGHT_LEASE = env_float("PORTICO_IN_FLIGHT_LEASE", 30.0, minimum=1.0)
# Keep one reservation ready for a key whose calls come steadily, so its next call skips the limiter's round trip
# (billing/limits/spares.py). Off, every limited call waits for its own acquire.
PORTICO_LIMIT_SPARES = env_bool("PORTICO_LIMIT_SPARES", True)
# Record every request in the usage ledger. Off only to measure what the ledger costs (bench/run.sh) or
# where another system does the billing: budgets then see no spend.
PORTICO_USAGE_LEDGER = env_bool("PORTICO_USAGE_LEDGER", True)
# Where served requests are spooled, durably, before their ledger rows reach the database.
PORTICO_LEDGER_DIR = env_str("PORTICO_LEDGER_DIR", str(DATA_DIR / "ledger"))
# Seconds between ledger flushes to the database (rows are also flushed once this many are waiting).
PORTICO_LEDGER_FLUSH = env_float("PORTICO_LEDGER_FLUSH", 0.5, minimum=0.01)
PORTICO_LEDGER_BATCH = env_int("PORTICO_LEDGER_BATCH", 500, minimum=1)
# PostgreSQL's ledger is partitioned by month (docs/ledger-partitions.md): months made ahead, months kept (0: all),
# where dropped months are first written as gzip CSV (empty: not written), and seconds between upkeep runs.
PORTICO_LEDGER_PARTITIONS_AHEAD = env_int("PORTICO_LEDGER_PARTITIONS_AHEAD", 2, minimum=0)
PORTICO_LEDGER_RETENTION_MONTHS = env_int("PORTICO_LEDGER_RETENTION_MONTHS", 0, minimum=0)
PORTICO_LEDGER_ARCHIVE_DIR = env_str("PORTICO_LEDGER_ARCHIVE_DIR", "")
PORTICO_LEDGER_PARTITION_INTERVAL = env_float("PORTICO_LEDGER_PARTITION_INTERVAL", 3600.0, minimum=0.0)

# --- Routing (gateway/routing.py) ----------------------------------------------------------------------------
# Answers name the provider that served in `x-portico-provider`; true leaves it out (and `x-portico-deployment`
# then gives the deployment's id rather than its provider/model name).
PORTICO_HIDE_PROVIDER = env_bool("PORTICO_HIDE_PROVIDER", False)
# Whether a tenant may list `*` in its CORS origins: any web page could then use its keys (docs/cors.md).
PORTICO_CORS_ALLOW_ANY = env_bool("PORTICO_CORS_ALLOW_ANY", False)
# The most seconds a client may give a call with `x-portico-timeout` (every attempt included).
PORTICO_MAX_REQUEST_TIMEOUT = env_float("PORTICO_MAX_REQUEST_TIMEOUT", 600.0, minimum=1.0)
# Seconds an upstream may stay silent between two events of a stream before the stream is given up
# (a public model's `stall_timeout` takes precedence; 0: only the provider's read timeout).
PORTICO_STREAM_STALL_TIMEOUT = env_float("PORTICO_STREAM_STALL_TIMEOUT", 30.0, minimum=0.0)
# Ensembles (gateway/routing_ensembles.py): how many deployments a `vote` asks (at most those available), and
# the seconds a `hedge` waits for its first deployment before asking a second, until that deployment's recent
# p95 time to first byte is known (a model's own first_byte_timeout takes precedence).
PORTICO_VOTE_N = env_int("PORTICO_VOTE_N", 3, minimum=2)
PORTICO_HEDGE_AFTER = env_float("PORTICO_HEDGE_AFTER", 2.0, minimum=0.01)

# --- Response cache (gateway/response_cache/, docs/response-cache.md) ---------------------------------------
# Without REDIS_URL each process keeps its own cache: at most this many answers, and this many bytes of them.
PORTICO_RESPONSE_CACHE_ENTRIES = env_int("PORTICO_RESPONSE_CACHE_ENTRIES", 1000, minimum=1)
PORTICO_RESPONSE_CACHE_BYTES = env_int("PORTICO_RESPONSE_CACHE_BYTES", 64 * 1024 * 1024, minimum=1024)
# An answer larger than this is served but not stored (in Redis or in the process).
PORTICO_RESPONSE_CACHE_ENTRY_BYTES = env_int("PORTICO_RESPONSE_CACHE_ENTRY_BYTES", 1024 * 1024, minimum=1024)

# --- Circuit breakers, one per deployment (gateway/breakers/) ------------------------------------------------
# A breaker opens when PORTICO_BREAKER_ERROR_RATIO of the requests of the last PORTICO_BREAKER_WINDOW seconds
# failed (once there were PORTICO_BREAKER_MIN_REQUESTS of them), or after PORTICO_BREAKER_CONSECUTIVE_FAILURES
# failures in a row (0: off), or when the recent median latency passes PORTICO_BREAKER_LATENCY_MULTIPLE times
# the deployment's own baseline (0: off). It stays open PORTICO_BREAKER_COOLDOWN seconds, then lets
# PORTICO_BREAKER_HALF_OPEN_PROBES requests through at once: one success closes it, one failure reopens it.
PORTICO_BREAKER_WINDOW = env_float("PORTICO_BREAKER_WINDOW", 30.0, minimum=1.0)
PORTICO_BREAKER_ERROR_RATIO = env_float("PORTICO_BREAKER_ERROR_RATIO", 0.5, minimum=0.01)
if PORTICO_BREAKER_ERROR_RATIO > 1:
    raise ImproperlyConfigured(f"PORTICO_BREAKER_ERROR_RATIO must be at most 1, got {PORTICO_BREAKER_ERROR_RATIO}")
PORTICO_BREAKER_MIN_REQUESTS = env_int("PORTICO_BREAKER_MIN_REQUESTS", 10, minimum=1)
PORTICO_BREAKER_CONSECUTIVE_FAILURES = env_int("PORTICO_BREAKER_CONSECUTIVE_FAILURES", 5, minimum=0)
PORTICO_BREAKER_COOLDOWN = env_float("PORTICO_BREAKER_COOLDOWN", 30.0, minimum=0.1)
PORTICO_BREAKER_HALF_OPEN_PROBES = env_int("PORTICO_BREAKER_HALF_OPEN_PROBES", 3, minimum=1)
PORTICO_BREAKER_LATENCY_MULTIPLE = env_float("PORTICO_BREAKER_LATENCY_MULTIPLE", 4.0, minimum=0.0)
# Latencies under this many seconds never count as degraded, however far past their baseline.
PORTICO_BREAKER_LATENCY_FLOOR = env_float("PORTICO_BREAKER_LATENCY_FLOOR", 1.0, minimum=0.0)
if 0 < PORTICO_BREAKER_LATENCY_MULTIPLE <= 1:
    raise ImproperlyConfigured(
        f"PORTICO_BREAKER_LATENCY_MULTIPLE must be 0 (off) or above 1, got {PORTICO_BREAKER_LATENCY_MULTIPLE}"
    )

# --- Model-list sources, discovery and health checks (providers/model_lists/, discovery.py, probes.py) --------
# A JSON array of models to serve (docs/model-lists.md): the source named "env" follows these settings, and is
# refreshed when a worker starts. Handles are relative to PORTICO_MODEL_LIST_BASE_URL (default: the list's
# origin); the credential (or PORTICO_MODEL_LIST_CREDENTIAL_FILE) goes to the list and to its providers.
PORTICO_MODEL_LIST_URL = env_str("PORTICO_MODEL_LIST_URL")
PORTICO_MODEL_LIST_BASE_URL = env_str("PORTICO_MODEL_LIST_BASE_URL")
PORTICO_MODEL_LIST_CREDENTIAL = env_str("PORTICO_MODEL_LIST_CREDENTIAL")
PORTICO_MODEL_LIST_REFRESH_SECONDS = env_int("PORTICO_MODEL_LIST_REFRESH_SECONDS", 300, minimum=10)
# Every read of a list is bounded: seconds in all, and bytes of answer.
PORTICO_MODEL_LIST_TIMEOUT = env_float("PORTICO_MODEL_LIST_TIMEOUT", 10.0, minimum=0.1)
PORTICO_MODEL_LIST_MAX_BYTES = env_int("PORTICO_MODEL_LIST_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
# Refreshes kept in each source's history.
PORTICO_MODEL_LIST_HISTORY = env_int("PORTICO_MODEL_LIST_HISTORY", 100, minimum=1)
# Seconds a health check or a discovery waits for a provider's model list (less if the provider's own are less).
PORTICO_HEALTH_PROBE_TIMEOUT = env_float("PORTICO_HEALTH_PROBE_TIMEOUT", 5.0, minimum=0.1)
# Health checks kept per deployment.
PORTICO_HEALTH_PROBE_HISTORY = env_int("PORTICO_HEALTH_PROBE_HISTORY", 20, minimum=1)
# Failed health checks in a row that open a deployment's breaker at once (each failure also counts as one).
PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN = env_int("PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN", 2, minimum=1)
# providers sits below gateway and may not import it: the health check task hands its outcomes to this callable.
PORTICO_HEALTH_PROBE_SINK = "gateway.health_probes.breakers_feed"

# --- Files and the Batch API (batches/, gateway/batch_runner.py, docs/batches.md) -----------------------------
# Where uploaded files and batch results are kept, a directory per tenant.
PORTICO_FILES_DIR = env_str("PORTICO_FILES_DIR", str(DATA_DIR / "files"))
# The largest file a tenant may upload (413 past it); OpenAI's Batch API takes input files of up to 200 MB.
PORTICO_FILES_MAX_BYTES = env_int("PORTICO_FILES_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
# Days a batch's input and output files are kept unless the upload says otherwise (0: until deleted).
PORTICO_FILES_EXPIRE_DAYS = env_int("PORTICO_FILES_EXPIRE_DAYS", 30, minimum=0)
# Requests one batch may hold (OpenAI's limit).
PORTICO_BATCH_MAX_LINES = env_int("PORTICO_BATCH_MAX_LINES", 50_000, minimum=1)
# Lines of one batch in flight at once, and the seconds one task runs them before handing over to the next.
PORTICO_BATCH_CONCURRENCY = env_int("PORTICO_BATCH_CONCURRENCY", 8, minimum=1)
PORTICO_BATCH_CHUNK_SECONDS = env_float("PORTICO_BATCH_CHUNK_SECONDS", 20.0, minimum=0.1)
# Seconds one line may take, every attempt included, before it fails as timed out.
PORTICO_BATCH_LINE_TIMEOUT = env_float("PORTICO_BATCH_LINE_TIMEOUT", 120.0, minimum=0.1)
# A runner holds its batch this long past its last renewal: a worker that died is replaced after it.
PORTICO_BATCH_LEASE_SECONDS = env_float("PORTICO_BATCH_LEASE_SECONDS", 60.0, minimum=0.5)
# The longest wait before lines refused by the tenant's limits are tried again (the limiter's Retry-After,
# doubled while refusals go on).
PORTICO_BATCH_RETRY_MAX_SECONDS = env_float("PORTICO_BATCH_RETRY_MAX_SECONDS", 60.0, minimum=0.1)
# The part of each of its key's and tenant's rate limits (RPM, TPM, requests in flight) a batch line may fill, so
# that a batch leaves the tenant's interactive requests the rest; 1 lets batches take all of them.
PORTICO_BATCH_LIMIT_SHARE = env_float("PORTICO_BATCH_LIMIT_SHARE", 0.8, minimum=0.0)
if not 0 < PORTICO_BATCH_LIMIT_SHARE <= 1:
    raise ImproperlyConfigured(
        f"PORTICO_BATCH_LIMIT_SHARE must be above 0 and at most 1, got {PORTICO_BATCH_LIMIT_SHARE}"
    )

# --- Overflow queueing: asynchronous jobs (gateway/queueing/, queueing/, docs/queueing.md) ------------------
# Seconds one run of a queued job waits in line before handing the job back to the workers, and seconds its claim
# holds unrenewed (a run renews it every third of that; a job whose worker died is taken again once it runs out).
PORTICO_QUEUE_JOB_SLICE = env_float("PORTICO_QUEUE_JOB_SLICE", 10.0, minimum=0.1)
PORTICO_QUEUE_JOB_LEASE = env_float("PORTICO_QUEUE_JOB_LEASE", 30.0, minimum=1.0)
# Days a finished job (and its answer) is kept for its client to read before the queue sweep deletes it; 0: kept.
PORTICO_QUEUE_JOB_RETENTION_DAYS = env_float("PORTICO_QUEUE_JOB_RETENTION_DAYS", 7.0, minimum=0.0)

# --- Alerts: budgets and breakers, by email and signed webhook (notifications/, docs/alerts.md) ------------------
# Tries per delivery in all; between two, PORTICO_ALERT_RETRY_BACKOFF seconds doubled per retry (at most 5 minutes).
PORTICO_ALERT_ATTEMPTS = env_int("PORTICO_ALERT_ATTEMPTS", 5, minimum=1)
PORTICO_ALERT_RETRY_BACKOFF = env_float("PORTICO_ALERT_RETRY_BACKOFF", 10.0, minimum=0.01)
# Seconds a webhook has to take the connection, the body, and to answer.
PORTICO_ALERT_WEBHOOK_TIMEOUT = env_float("PORTICO_ALERT_WEBHOOK_TIMEOUT", 10.0, minimum=0.1)
# Email goes through the SMTP server at PORTICO_EMAIL_HOST; without one it is written to the process's output (the
# console backend of the embedded default). PORTICO_EMAIL_BACKEND names any other Django email backend.
PORTICO_EMAIL_HOST = env_str("PORTICO_EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "PORTICO_EMAIL_BACKEND",
    f"django.core.mail.backends.{'smtp' if PORTICO_EMAIL_HOST else 'console'}.EmailBackend",
)
EMAIL_HOST = PORTICO_EMAIL_HOST or "localhost"
EMAIL_PORT = env_int("PORTICO_EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("PORTICO_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("PORTICO_EMAIL_PASSWORD")
# STARTTLS on the submission port (587) by default; PORTICO_EMAIL_SSL for implicit TLS (465) instead.
EMAIL_USE_SSL = env_bool("PORTICO_EMAIL_SSL", False)
EMAIL_USE_TLS = env_bool("PORTICO_EMAIL_STARTTLS", not EMAIL_USE_SSL)
if EMAIL_USE_SSL and EMAIL_USE_TLS:
    raise ImproperlyConfigured("PORTICO_EMAIL_SSL and PORTICO_EMAIL_STARTTLS cannot both be on")
EMAIL_TIMEOUT = env_float("PORTICO_EMAIL_TIMEOUT", 10.0, minimum=0.1)
DEFAULT_FROM_EMAIL = env_str("PORTICO_EMAIL_FROM", "portico@localhost")

# --- Management API (/api/) ------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ManagementTokenAuthentication"],
    # JSON only, and no control characters in its strings (Postgres refuses NUL in text).
    "DEFAULT_PARSER_CLASSES": ["tenants.parsers.PlainTextJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttles.UserThrottle", "tenants.throttles.AnonymousThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "gateway.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # A database that cannot be reached is a JSON 503 there, not a 500.
    "EXCEPTION_HANDLER": "gateway.management_errors.exception_handler",
}


def _rate(name: str, default: str) -> str:
    value = env_str(name, default)
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must read like 600/min, got {value!r}")
    return value


# Requests per user (by token) and per address (without one) to /api/, e.g. 600/min; rates are n/s, /min, /h or /day.
PORTICO_API_THROTTLE_USER = _rate("PORTICO_API_THROTTLE_USER", "600/min")
PORTICO_API_THROTTLE_ANON = _rate("PORTICO_API_THROTTLE_ANON", "60/min")
# /v1/docs and /v1/openapi.json describe the public OpenAI surface: served to anyone unless this is off
# (then to staff signed in to the admin). /api/schema/ maps the management API: it needs a management
# token (or a staff admin session) unless PORTICO_PUBLIC_MANAGEMENT_SCHEMA is on.
PORTICO_PUBLIC_OPENAI_DOCS = env_bool("PORTICO_PUBLIC_OPENAI_DOCS", True)
PORTICO_PUBLIC_MANAGEMENT_SCHEMA = env_bool("PORTICO_PUBLIC_MANAGEMENT_SCHEMA", False)
SPECTACULAR_SETTINGS = {
    "TITLE": "Portico management API",
    "DESCRIPTION": "Providers and models, and the keys, usage, rate limits and budgets of Portico's tenants.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Background jobs: Celery (gateway/celery.py, gateway/background.py, docs/background-jobs.md) ---------------
# The broker that carries jobs to `portico worker`: PORTICO_CELERY_BROKER_URL, else REDIS_URL. Without either, or
# with the value `embedded`, there is none: jobs run on a few threads of each server process, which also keeps the
# schedule (the embedded default).
# Celery cannot use a Redis Cluster as its broker: with one, only PORTICO_CELERY_BROKER_URL names a broker.
PORTICO_CELERY_BROKER_URL = env_str("PORTICO_CELERY_BROKER_URL", "" if PORTICO_REDIS_CLUSTER else REDIS_URL)
if PORTICO_CELERY_BROKER_URL == "embedded":
    PORTICO_CELERY_BROKER_URL = ""
# Celery itself needs some broker; memory:// is never used, gateway.celery runs jobs in-process instead.
CELERY_BROKER_URL = PORTICO_CELERY_BROKER_URL or "memory://"
# Jobs report through the database and logs, never through results: nothing piles up in Redis.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A job is acknowledged once it has run, so a worker that dies mid-job leaves it to another one: jobs must be
# idempotent. Each worker process reserves one job at a time, so a long job holds back no other.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Task modules besides each app's `tasks` (which workers find themselves).
CELERY_IMPORTS = ["gateway.tasks_queue"]
# Queues by task name (the first pattern that matches; others go to `default`); a caller may name another. A
# worker takes from its queues in the order it lists them: `portico worker` lists interactive, default, batch.
CELERY_TASK_ROUTES = {
    "gateway.tasks.batch_*": {"queue": "batch"},
    "gateway.tasks.batches_run_*": {"queue": "batch"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# Handing a job to a broker that does not answer gives up after about a second, logged, rather than waiting.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 0.5}
# With Redis, a job a worker took but never acknowledged (the worker died) goes back to the queue after this
# many seconds. It must exceed the longest job plus its countdown, or a job still running is handed out twice.
PORTICO_CELERY_VISIBILITY_TIMEOUT = env_int("PORTICO_CELERY_VISIBILITY_TIMEOUT", 1800, minimum=1)
_REDIS_BROKER = PORTICO_CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://", "sentinel://"))
if _REDIS_BROKER and PORTICO_CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"PORTICO_CELERY_VISIBILITY_TIMEOUT ({PORTICO_CELERY_VISIBILITY_TIMEOUT}) must exceed CELERY_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT}): a job still running would be handed to a second worker"
    )
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "visibility_timeout": PORTICO_CELERY_VISIBILITY_TIMEOUT,
        # How often a worker looks for jobs whose visibility timeout has passed.
        "unacked_restore_interval": max(1, min(10, PORTICO_CELERY_VISIBILITY_TIMEOUT // 4)),
        "unacked_restore_throttle": 1,
        # Queues in the order a worker lists them: interactive before default before batch.
        "queue_order_strategy": "priority",
        "global_keyprefix": f"{PORTICO_REDIS_PREFIX}:celery:",
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
    }
    if _REDIS_BROKER
    else {}
)
# Builds beat's schedule from the settings below, leaving out jobs whose task does not exist.
CELERY_BEAT_SCHEDULER = "gateway.schedule:Scheduler"
# Beat's last-run times, in the data directory rather than wherever it was started.
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# No result backend, so no daily clean-up of results for beat to schedule.
CELERY_RESULT_EXPIRES = None
# The threads of each process that run jobs (without a broker) or hand them to the broker, and the most jobs
# waiting for them.
PORTICO_BACKGROUND_THREADS = env_int("PORTICO_BACKGROUND_THREADS", 2, minimum=1)
PORTICO_BACKGROUND_QUEUE_LIMIT = env_int("PORTICO_BACKGROUND_QUEUE_LIMIT", 10_000, minimum=1)
# Each server process keeps the schedule itself (one process per data directory at a time); only without a
# broker, where `portico beat` has no one to send to.
PORTICO_INPROCESS_SCHEDULER = env_bool("PORTICO_INPROCESS_SCHEDULER", not PORTICO_CELERY_BROKER_URL)
# Seconds between runs of each periodic job (gateway/schedule.py); 0 turns the job off.
PORTICO_MODEL_LIST_CHECK_INTERVAL = env_float("PORTICO_MODEL_LIST_CHECK_INTERVAL", 60.0, minimum=0.0)
PORTICO_DISCOVERY_INTERVAL = env_float("PORTICO_DISCOVERY_INTERVAL", 3600.0, minimum=0.0)
PORTICO_HEALTH_CHECK_INTERVAL = env_float("PORTICO_HEALTH_CHECK_INTERVAL", 60.0, minimum=0.0)
PORTICO_BATCH_SWEEP_INTERVAL = env_float("PORTICO_BATCH_SWEEP_INTERVAL", 30.0, minimum=0.0)
PORTICO_ROLLUP_INTERVAL = env_float("PORTICO_ROLLUP_INTERVAL", 60.0, minimum=0.0)
PORTICO_QUEUE_SWEEP_INTERVAL = env_float("PORTICO_QUEUE_SWEEP_INTERVAL", 30.0, minimum=0.0)

# --- Observability (gateway/observability/, docs/observability.md) -------------------------------------------
# GET /metrics in Prometheus' format (false: 404). Scrapes are answered for addresses in PORTICO_METRICS_ALLOW
# (CIDRs); with PORTICO_METRICS_TOKEN set they must also send `Authorization: Bearer <token>`.
PORTICO_METRICS = env_bool("PORTICO_METRICS", True)
PORTICO_METRICS_ALLOW = env_list(
    "PORTICO_METRICS_ALLOW", ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"]
)
PORTICO_METRICS_TOKEN = env_str("PORTICO_METRICS_TOKEN")
# A `tenant` label on the per-call metrics: one series per tenant and model, so off unless asked for.
PORTICO_METRICS_TENANT_LABELS = env_bool("PORTICO_METRICS_TENANT_LABELS", False)
# Seconds between two passes of the thread that updates the metrics and writes the request log lines.
PORTICO_METRICS_INTERVAL = env_float("PORTICO_METRICS_INTERVAL", 0.25, minimum=0.01)
# Where `portico serve` keeps its workers' metric files (wiped at start); default: a new temporary directory.
PORTICO_METRICS_DIR = env_str("PORTICO_METRICS_DIR")
# One `portico.requests` line per /v1/ request; every log line reads as text (default) or as JSON objects.
PORTICO_REQUEST_LOG = env_bool("PORTICO_REQUEST_LOG", True)
PORTICO_LOG_FORMAT = env_str("PORTICO_LOG_FORMAT", "text")
if PORTICO_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"PORTICO_LOG_FORMAT must be 'text' or 'json', got {PORTICO_LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "class": "gateway.observability.request_log.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "gateway.observability.request_log.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "gateway.observability.request_log.BatchedStreamHandler", "formatter": PORTICO_LOG_FORMAT}
    },
    "root": {"handlers": ["console"], "level": env_str("PORTICO_LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request at INFO: too costly, and too chatty, on the hot path.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Its own level, so a quieter PORTICO_LOG_LEVEL keeps the request lines; written off the event loop.
        "portico.requests": {"level": "INFO" if PORTICO_REQUEST_LOG else "CRITICAL"},
    },
}
