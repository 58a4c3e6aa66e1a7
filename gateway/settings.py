"""Django settings for Portico, read from the environment (see the README's table).

With nothing set, Portico runs on the embedded default: a SQLite file under
PORTICO_DATA_DIR, no Redis, Celery tasks run in-process.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    path.touch(mode=0o600)
    path.write_text(value, encoding="utf-8")
    return value


SECRET_KEY = _secret_key()
DEBUG = env_bool("PORTICO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
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
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    DATA_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite file lives there
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portico.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Every Redis key and channel Portico uses starts with this, so several
# deployments (or test runs) can share one Redis.
PORTICO_REDIS_PREFIX = env_str("PORTICO_REDIS_PREFIX", "portico")

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
# "aiohttp" (default, measured faster under concurrency) or "httpx" (httpx's own pool).
PORTICO_HTTP_TRANSPORT = env_str("PORTICO_HTTP_TRANSPORT", "aiohttp")
if PORTICO_HTTP_TRANSPORT not in {"aiohttp", "httpx"}:
    raise ImproperlyConfigured(f"PORTICO_HTTP_TRANSPORT must be 'aiohttp' or 'httpx', got {PORTICO_HTTP_TRANSPORT!r}")
PORTICO_UPSTREAM_MAX_CONNECTIONS = env_int("PORTICO_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
# Keys hashing and credential encryption: both default to material derived
# from SECRET_KEY; set them explicitly to rotate SECRET_KEY without losing keys.
PORTICO_KEY_HASH_SECRET = env_str("PORTICO_KEY_HASH_SECRET", SECRET_KEY)
PORTICO_CREDENTIAL_KEY = env_str("PORTICO_CREDENTIAL_KEY", SECRET_KEY)
# Seconds between flushes of API keys' last-used timestamps (kept off the request path).
PORTICO_LAST_USED_FLUSH = env_float("PORTICO_LAST_USED_FLUSH", 30.0, minimum=0.1)

# Uploads (audio transcriptions) are streamed to the provider, never held whole; this caps their size.
PORTICO_MAX_UPLOAD_BYTES = env_int("PORTICO_MAX_UPLOAD_BYTES", 26 * 1024 * 1024, minimum=1024)

# --- Limits, budgets and the ledger ------------------------------------------
# What to do when Redis (the shared limiter) is unreachable: "open" serves with a per-process
# limiter and logs loudly; "closed" refuses requests with 503 until Redis is back.
PORTICO_LIMITS_ON_REDIS_ERROR = env_str("PORTICO_LIMITS_ON_REDIS_ERROR", "open")
if PORTICO_LIMITS_ON_REDIS_ERROR not in {"open", "closed"}:
    raise ImproperlyConfigured(
        f"PORTICO_LIMITS_ON_REDIS_ERROR must be 'open' or 'closed', got {PORTICO_LIMITS_ON_REDIS_ERROR!r}"
    )
# Record every request in the usage ledger. Off only to measure what the ledger costs (bench/run.sh) or
# where another system does the billing: budgets then see no spend.
PORTICO_USAGE_LEDGER = env_bool("PORTICO_USAGE_LEDGER", True)
# Where served requests are spooled, durably, before their ledger rows reach the database.
PORTICO_LEDGER_DIR = env_str("PORTICO_LEDGER_DIR", str(DATA_DIR / "ledger"))
# Seconds between ledger flushes to the database (rows are also flushed once this many are waiting).
PORTICO_LEDGER_FLUSH = env_float("PORTICO_LEDGER_FLUSH", 0.5, minimum=0.01)
PORTICO_LEDGER_BATCH = env_int("PORTICO_LEDGER_BATCH", 500, minimum=1)

# --- Management API (/api/) ------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Portico management API",
    "DESCRIPTION": "Keys, usage, rate limits and budgets of Portico's tenants.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
# Without a broker, tasks run in the calling process (the embedded default).
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", CELERY_BROKER_URL == "memory://")
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90, minimum=1)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PORTICO_LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: too costly, and too chatty, on the hot path.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
