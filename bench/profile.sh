#!/usr/bin/env bash
# CPU per request by stage: Portico under the harness's load, profiled with py-spy.
#
#   bench/profile.sh                 # the limited key, not streamed
#   KEY=plain STREAM=1 bench/profile.sh
#   C=1 bench/profile.sh             # one client: what each request pays when nothing shares a turn
#
# It starts the harness's fast upstream, seeds its own database (portico_profile),
# starts `portico serve` as bench/run.sh does, runs wrk for 14 s and records the
# middle 10 s with py-spy (`pip install py-spy`), then prints the process's CPU per
# request and bench/stages.py's table. Everything is stopped on exit.
set -euo pipefail
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
cd "$PROJECT"
HARNESS=$(cd "${PORTICO_BENCH_HARNESS:-../shared/bench}" && pwd)
PY=$PROJECT/.venv/bin/python
SPY=${PY_SPY:-$(command -v py-spy || echo "$PROJECT/.venv/bin/py-spy")}
[ -x "$SPY" ] || { echo "profile: py-spy is missing: .venv/bin/pip install py-spy" >&2; exit 2; }
KEY=${KEY:-limited}
STREAM=${STREAM:-0}
C=${C:-32}
RATE=400
export BENCH_TMP=${BENCH_TMP:-/tmp/portico-profile}
mkdir -p "$BENCH_TMP"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/portico_profile REDIS_URL=redis://127.0.0.1:6379/0
export PORTICO_REDIS_PREFIX=portico-profile PORTICO_DATA_DIR=$BENCH_TMP/data PORTICO_LOG_LEVEL=WARNING
export SECRET_KEY=portico-bench-secret-key-not-for-production-use-0123456789 DJANGO_SETTINGS_MODULE=gateway.settings
export PORTICO_USAGE_LEDGER=$([ "$KEY" = plain ] && echo false || echo true) PORTICO_HTTP_TRANSPORT=${PORTICO_HTTP_TRANSPORT:-http1}

portico_pid=
cleanup() {
    [ -n "$portico_pid" ] && kill "$portico_pid" 2>/dev/null || true
    "$HARNESS/nginx.sh" stop upstream >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$HARNESS/nginx.sh" start upstream >/dev/null
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS portico_profile" >/dev/null 2>&1
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE portico_profile" >/dev/null
.venv/bin/portico migrate -v0 >/dev/null
read -r PLAIN_KEY LIMITED_KEY < <("$PY" bench/seed.py)
[ "$KEY" = plain ] && key=$PLAIN_KEY || key=$LIMITED_KEY

.venv/bin/portico serve --host 127.0.0.1 --port 8000 --workers 1 >"$BENCH_TMP/portico.log" 2>&1 &
portico_pid=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null -H "Authorization: Bearer $key" http://127.0.0.1:8000/v1/models && break
    sleep 0.2
done
load() {  # seconds
    wrk -t"$((C < 2 ? 1 : 2))" -c"$C" -d"$1" -s "$HARNESS/wrk/chat.lua" http://127.0.0.1:8000/v1/chat/completions -- bench-model "$STREAM" "$key"
}
load 3s >/dev/null  # warm up
ticks() { awk '{print $14 + $15}' "/proc/$portico_pid/stat"; }
before=$(ticks)
load 14s >"$BENCH_TMP/wrk.txt" &
load_pid=$!
sleep 2
"$SPY" record -p "$portico_pid" -r $RATE -d 10 -f raw -o "$BENCH_TMP/profile.txt" --nonblocking >/dev/null 2>&1
wait "$load_pid"
after=$(ticks)
result=$(grep RESULT "$BENCH_TMP/wrk.txt")
requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
rps=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$result")
echo "$result"
echo "process CPU per request over the whole run: $("$PY" -c "print(f'{($after - $before) * 10000 / $requests:.1f}')") µs (key $KEY, stream $STREAM, $C connections)"
"$PY" bench/stages.py "$BENCH_TMP/profile.txt" "$rps" 10 $RATE
