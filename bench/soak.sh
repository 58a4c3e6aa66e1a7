#!/usr/bin/env bash
# A soak: Portico production-like (Postgres, Redis, `portico serve`, the limited key: key and tenant
# limits, a budget and the ledger) under 32 clients for DURATION, half the requests streamed, against
# the shared harness's fake upstream. Every SAMPLE seconds it records the server processes' RSS and
# open file descriptors and the database's connections (CSV); at the end it waits for the ledger and
# checks that it holds exactly one row per answer served, and that every reservation the limiter made
# came back: no slot in flight is still held, and the key's budget counter holds what the ledger charged.
#
#   bench/soak.sh                       10 minutes
#   DURATION=60s WORKERS=2 bench/soak.sh
#
# Environment: DURATION (default 10m), CLIENTS (32), WORKERS (1), SAMPLE (10 s),
# PORTICO_BENCH_HARNESS (../shared/bench), BENCH_TMP (/tmp/portico-soak).
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
cd "$PROJECT"
die() { echo "soak: $*" >&2; exit 2; }

HARNESS=${PORTICO_BENCH_HARNESS:-../shared/bench}
[ -x "$HARNESS/nginx.sh" ] || die "the shared harness is not at $HARNESS; set PORTICO_BENCH_HARNESS"
HARNESS=$(cd "$HARNESS" && pwd)
for tool in nginx wrk psql curl ss redis-cli; do command -v "$tool" >/dev/null || die "$tool is missing (see bench/README.md)"; done
PY=$PROJECT/.venv/bin/python
[ -x "$PY" ] || die "no virtualenv at $PROJECT/.venv; install Portico first"

DURATION=${DURATION:-10m} CLIENTS=${CLIENTS:-32} WORKERS=${WORKERS:-1} SAMPLE=${SAMPLE:-10}
export BENCH_TMP=${BENCH_TMP:-/tmp/portico-soak}
DB=portico_soak PORT=8000
for port in 18080 $PORT; do
    ! ss -ltn "sport = :$port" | grep -q LISTEN || die "port $port is already taken"
done
mkdir -p "$BENCH_TMP"
CSV=$BENCH_TMP/soak-$(date +%Y%m%d-%H%M%S).csv

portico_pid= sampler_pid=
cleanup() {
    trap - EXIT INT TERM
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$portico_pid" ]; then kill -TERM "$portico_pid" 2>/dev/null || true; wait "$portico_pid" 2>/dev/null || true; fi
    "$HARNESS/nginx.sh" stop upstream >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

"$HARNESS/nginx.sh" start upstream

export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB REDIS_URL=redis://127.0.0.1:6379/0
export PORTICO_REDIS_PREFIX=portico-soak SECRET_KEY=portico-soak-secret-key-not-for-production-use-0123456789
export PORTICO_DATA_DIR=$BENCH_TMP/data PORTICO_LOG_LEVEL=WARNING PORTICO_REQUEST_LOG=false
export DJANGO_SETTINGS_MODULE=gateway.settings BENCH_UPSTREAM_URL=http://127.0.0.1:18080/v1
psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
rm -rf "$PORTICO_DATA_DIR"
redis-cli --scan --pattern "$PORTICO_REDIS_PREFIX:*" | xargs -r redis-cli del >/dev/null  # an earlier soak's counters
.venv/bin/portico migrate --verbosity 0
read -r _PLAIN LIMITED < <("$PY" bench/seed.py)

.venv/bin/portico serve --host 127.0.0.1 --port $PORT --workers "$WORKERS" >"$BENCH_TMP/portico.log" 2>&1 &
portico_pid=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null -H "Authorization: Bearer $LIMITED" "http://127.0.0.1:$PORT/v1/models" && break
    sleep 0.1
done

sample() {  # seconds, RSS (KiB, all server processes), open descriptors, database connections
    local start=$SECONDS pids rss fds conns
    echo "seconds,rss_kib,fds,db_connections" >"$CSV"
    while true; do
        pids="$portico_pid $(pgrep -P "$portico_pid" | tr '\n' ' ' || true)"
        rss=0 fds=0
        for pid in $pids; do
            rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
            fds=$((fds + $( (ls "/proc/$pid/fd" 2>/dev/null || true) | wc -l)))
        done
        conns=$(psql -qtA -h 127.0.0.1 -U postgres -d postgres \
            -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB'")
        echo "$((SECONDS - start)),$rss,$fds,$conns" >>"$CSV"
        sleep "$SAMPLE"
    done
}
sample &
sampler_pid=$!

echo "soak: $CLIENTS clients for $DURATION, half of the requests streamed; samples in $CSV"
out=$(wrk -t2 -c"$CLIENTS" -d"$DURATION" --timeout 30s -s bench/soak/mixed.lua "http://127.0.0.1:$PORT" \
    -- "$LIMITED" bench-model)
echo "$out"
served=$(sed -n 's/^ok=\([0-9]*\) .*/\1/p' <<<"$out")
other=$(sed -n 's/^ok=[0-9]* other=\([0-9]*\) .*/\1/p' <<<"$out")
errors=$(sed -n 's/.* errors=\([0-9]*\)$/\1/p' <<<"$out")

# The ledger is written off the request path: wait until its count stops moving.
rows=-1
for _ in $(seq 60); do
    sleep 1
    now=$(psql -qtA -h 127.0.0.1 -U postgres -d $DB -c "SELECT count(*) FROM billing_usagerecord")
    [ "$now" = "$rows" ] && break
    rows=$now
done
distinct=$(psql -qtA -h 127.0.0.1 -U postgres -d $DB -c "SELECT count(DISTINCT request_id) FROM billing_usagerecord")
# What Portico itself says it answered (its /metrics, summed over the workers): wrk stops with up to CLIENTS
# requests in flight, which Portico still answers and records but wrk never counts.
answered=$(curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk '/^portico_requests_total\{.*model="bench-model"/ {sum += $NF} END {printf "%d", sum}')
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=

# Every reservation came back once the last one held ready for the key has been given back (within 0.5 s):
# its slots in flight are all free, and its budget's counter (nano-USD, each call's cost rounded up) holds
# what the ledger charged, within the nano-dollar a row's stored cost may have been rounded by.
sleep 1
held=0
for key in $(redis-cli --scan --pattern "$PORTICO_REDIS_PREFIX:*:cc"); do held=$((held + $(redis-cli zcard "$key"))); done
counter=$(redis-cli --scan --pattern "$PORTICO_REDIS_PREFIX:budget:key:*" | head -n 1 | xargs -r redis-cli get)
charged=$(psql -qtA -h 127.0.0.1 -U postgres -d $DB \
    -c "SELECT coalesce(sum(ceil(cost * 1000000000)), 0)::bigint FROM billing_usagerecord")

echo
echo "samples (first, middle, last):"
{ sed -n 2p "$CSV"; sed -n "$(( ($(wc -l <"$CSV") + 1) / 2 ))p" "$CSV"; tail -n 1 "$CSV"; } | column -t -s,
echo "wrk: 200 $served, other statuses $other, socket errors $errors"
echo "Portico: answered $answered; ledger rows $rows ($distinct request ids)"
echo "Redis: slots in flight still held $held; budget counter ${counter:-none} nano-USD, ledger charged $charged"
if [ "$rows" = "$answered" ] && [ "$distinct" = "$rows" ] && [ "$other" = 0 ] && [ "$errors" = 0 ] &&
    [ "$rows" -ge "$served" ] && [ "$rows" -le $((served + CLIENTS)) ]; then
    echo "soak: the ledger holds exactly one row per answer served"
else
    echo "soak: the ledger does not match what was served" >&2
    exit 1
fi
if [ "$held" = 0 ] && [ -n "$counter" ] && [ $((counter - charged)) -ge "-$rows" ] && [ $((counter - charged)) -le "$rows" ]; then
    echo "soak: every reservation came back; the budget counter matches the ledger"
else
    echo "soak: the limiter's counters do not match the ledger" >&2
    exit 1
fi
