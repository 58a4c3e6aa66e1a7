# Portico's developer and operator entry points. `make` alone lists them.
#
# The README's two commands are `make quickstart` and `make test`; CI runs
# `make test` through .ci/run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so pip runs again only when pyproject.toml changes. Two of them:
# quickstart and run need Portico alone (RUNTIME); test, lint and the other developer targets add its dev
# tools (DEV), which also counts as the runtime install.
RUNTIME_STAMP := $(VENV)/.portico-runtime
DEV_STAMP := $(VENV)/.portico-dev
# --no-compile: byte-compiling every installed file took a third of the runtime install; Python compiles what
# it imports, once, on first use.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile
# The suite starts a hundred Python processes (servers, workers, CLI runs). Where PYTHONDONTWRITEBYTECODE is set,
# as CI machines and images often set it, none of them may keep what it compiles, and each compiled Django and
# the rest from source again: two of its four seconds to start. compileall writes the caches all the same, in
# parallel, once: the dev tools' install compiles the virtualenv, and `make test` Portico's own code (only what
# changed since its last run). A package file that does not compile (some ship test data as .py) costs the install
# nothing: the caches only save time.
BYTE_COMPILE := $(BIN)/python -m compileall -q -j 0

HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each with its own test database, Redis prefix and servers; a file's tests
# stay in one process. Much of the suite waits on servers and browsers: two halve it on two cores.
TEST_WORKERS ?= 2
# The apps' own tests run first, then the end-to-end ones in tests/, each run on fresh test databases: the
# migration tests take a database's schema back in time, which a server of tests/ must never be serving.
APP_TESTS := gateway tenants providers billing batches queueing portal notifications audit caching

.DEFAULT_GOAL := help
# The steps of `make test` must run in order, even under `make -j`.
.NOTPARALLEL:
.PHONY: help install quickstart run test lint fmt migrations-check services bench clean

help: ## List the targets
	@echo "Usage: make TARGET [HOST=127.0.0.1] [PORT=8000] [WORKERS=N] [PYTEST_ARGS=...]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

install: $(DEV_STAMP) ## Create .venv (python3 >= 3.11) and install Portico with its dev tools

# Makes .venv unless it has a pip already.
define MAKE_VENV
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "Portico needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) -V 2>&1)." >&2; \
		echo "Install a newer python3, or point at one: make install PYTHON=python3.12" >&2; exit 1; }
	@if [ ! -x $(BIN)/pip ]; then \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 && [ -x $(BIN)/pip ] || { rm -rf $(VENV); \
			echo "Could not create a virtual environment with '$(PYTHON) -m venv'." >&2; \
			echo "On Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2; exit 1; }; \
	fi
endef

$(RUNTIME_STAMP): pyproject.toml
	$(MAKE_VENV)
	@echo "Installing Portico into $(VENV)..."
	$(PIP_INSTALL) -e .
	@touch $(RUNTIME_STAMP)

$(DEV_STAMP): pyproject.toml
	$(MAKE_VENV)
	@echo "Installing Portico and its dev tools into $(VENV) (the first run takes a minute or two)..."
	$(PIP_INSTALL) -e '.[dev]'
	@$(BYTE_COMPILE) $(VENV)/lib >/dev/null || echo "note: some installed files could not be byte-compiled; Python compiles them as it imports them"
	@touch $(RUNTIME_STAMP) $(DEV_STAMP)

quickstart: $(RUNTIME_STAMP) ## Install Portico alone (no dev tools), set up the embedded default (SQLite, no Redis) on first run, serve
	$(BIN)/portico quickstart --host $(HOST) --port $(PORT)

run: $(RUNTIME_STAMP) ## Serve with the production server (portico serve)
	$(BIN)/portico serve --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

test: install lint migrations-check services ## Lint, check migrations, then run the whole test suite on Postgres and Redis
	@$(BYTE_COMPILE) $(APP_TESTS) tests conftest.py manage.py >/dev/null
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(APP_TESTS)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile tests
else
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
endif

lint: install ## ruff check, ruff format --check, import contracts, mypy on the hot path, compose file validation
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	@if command -v docker-compose >/dev/null 2>&1; then \
		echo "docker-compose -f docker/compose.yaml config -q"; \
		SECRET_KEY=compose-validation-only docker-compose -f docker/compose.yaml config -q; \
	else \
		echo "note: docker-compose is not on PATH, so docker/compose.yaml was not validated (apt-get install docker-compose)"; \
	fi

fmt: install ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# An in-memory database and a fixed key: the check needs no service and leaves no file behind.
migrations-check: install ## Fail if a model change has no migration
	SECRET_KEY=migrations-check-only DATABASE_URL=sqlite://:memory: \
		$(BIN)/python manage.py makemigrations --check --dry-run

# tests/testenv.py holds the suite's DATABASE_URL and REDIS_URL defaults; importing it keeps one source of truth.
define CHECK_SERVICES
import os, sys
import tests.testenv
import psycopg, redis
from urllib.parse import urlsplit

def where(url, port):
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or port}"

down = []
try:
    psycopg.connect(os.environ["DATABASE_URL"], dbname="postgres", connect_timeout=3).close()
except psycopg.Error as exc:
    down.append(f"Postgres at {where(os.environ['DATABASE_URL'], 5432)}: {str(exc).strip().splitlines()[0]}")
try:
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3, socket_timeout=3).ping()
except redis.RedisError as exc:
    down.append(f"Redis at {where(os.environ['REDIS_URL'], 6379)}: {exc}")
if down:
    print("The test suite runs against real Postgres and Redis, and these do not answer:", file=sys.stderr)
    for line in down:
        print("  - " + line, file=sys.stderr)
    print("""
On Debian 12, install and start them, then give the postgres user a password:
    sudo apt-get install -y postgresql redis-server
    sudo service postgresql start && sudo service redis-server start
    sudo -u postgres psql -c "ALTER USER postgres PASSWORD 'postgres'"
    export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/portico
Elsewhere, point DATABASE_URL (a user allowed to create databases) and REDIS_URL at
your own servers. Then run make test again.""", file=sys.stderr)
    sys.exit(1)
endef
export CHECK_SERVICES

services: install ## Check that the test suite's Postgres and Redis answer
	@$(BIN)/python -c "$$CHECK_SERVICES"

bench: install ## Run the benchmark (bench/run.sh): Portico against the upstream directly
	bash bench/run.sh

clean: ## Remove the install stamps, caches and build files (keeps .venv's packages and the .portico data dir)
	rm -f $(RUNTIME_STAMP) $(DEV_STAMP)
	rm -rf .pytest_cache .ruff_cache .import_linter_cache .mypy_cache .portico-test build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
