"""Loaded by pytest before Django (see `addopts`): the test suite runs on the real services.

Postgres and Redis on 127.0.0.1 unless the environment says otherwise; each
xdist worker gets its own Redis key prefix so parallel runs cannot see each
other's invalidation messages.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portico")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "portico-test-secret-key-not-for-production")
# Users' passwords hashed in microseconds, not the half second PBKDF2 takes on purpose: the suite makes hundreds of
# users. The servers it starts inherit it, so a password set here signs in there; PBKDF2 stays listed, so a password
# stored by a production server still signs in.
os.environ.setdefault(
    "PORTICO_PASSWORD_HASHERS",
    "django.contrib.auth.hashers.MD5PasswordHasher,django.contrib.auth.hashers.PBKDF2PasswordHasher",
)
# No process of the suite keeps the embedded schedule (periodic jobs on its own threads) unless a test asks it to.
os.environ.setdefault("PORTICO_INPROCESS_SCHEDULER", "false")
os.environ.setdefault("PORTICO_DATA_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".portico-test"))
os.environ["PORTICO_REDIS_PREFIX"] = f"portico-test-{os.getpid()}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# The ledger spool of this process and of the servers it starts: one directory per run and worker, so no other
# run's server claims (and inserts into its own database) the rows this run's servers spooled.
os.environ["PORTICO_LEDGER_DIR"] = os.path.join(
    os.environ["PORTICO_DATA_DIR"], "ledger", f"{os.getpid()}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)
