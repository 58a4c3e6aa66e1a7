#!/usr/bin/env bash
# Instructions per request: Portico under valgrind's callgrind, counting only while a fixed number of
# requests is served. A count, not a time: other work on the machine leaves it alone, where CPU time per
# request moves 10-20 % between rounds on a shared 2-core machine.
#
#   bench/instructions.sh                         # the limited key, not streamed, 1,000 requests
#   KEY=plain STREAM=1 N=500 bench/instructions.sh
#
# It starts the harness's fast upstream, seeds its own database (portico_instructions), starts Portico
# under callgrind with counting off (`python -m gateway.server`, the production server), warms it up
# with 300 requests, counts N requests from C connections (bench/exact_load.py), and prints the
# instructions per request of the whole process, its writer threads included. Callgrind runs Python
# about fifty times slower: 1,000 requests take about a minute. To compare two commits, run it in a
# clone of each.
set -euo pipefail
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
cd "$PROJECT"
HARNESS=$(cd "${PORTICO_BENCH_HARNESS:-../shared/bench}" && pwd)
PY=$PROJECT/.venv/bin/python
command -v valgrind >/dev/null || { echo "instructions: valgrind is missing: apt-get install valgrind" >&2; exit 2; }
KEY=${KEY:-limited}
STREAM=${STREAM:-0}
N=${N:-1000}
C=${C:-8}
export BENCH_TMP=${BENCH_TMP:-/tmp/portico-instructions}
mkdir -p "$BENCH_TMP"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/portico_instructions REDIS_URL=redis://127.0.0.1:6379/0
export PORTICO_REDIS_PREFIX=portico-instructions PORTICO_DATA_DIR=$BENCH_TMP/data PORTICO_LOG_LEVEL=WARNING
export SECRET_KEY=portico-bench-secret-key-not-for-production-use-0123456789 DJANGO_SETTINGS_MODULE=gateway.settings
export PORTICO_USAGE_LEDGER=$([ "$KEY" = plain ] && echo false || echo true) PORTICO_HTTP_TRANSPORT=${PORTICO_HTTP_TRANSPORT:-http1}

portico_pid=
cleanup() {
    if [ -n "$portico_pid" ]; then
        kill -9 "$portico_pid" 2>/dev/null || true
        wait "$portico_pid" 2>/dev/null || true
    fi
    "$HARNESS/nginx.sh" stop upstream >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$HARNESS/nginx.sh" start upstream >/dev/null
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS portico_instructions" >/dev/null 2>&1
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE portico_instructions" >/dev/null
.venv/bin/portico migrate -v0 >/dev/null
read -r PLAIN_KEY LIMITED_KEY < <("$PY" bench/seed.py)
[ "$KEY" = plain ] && key=$PLAIN_KEY || key=$LIMITED_KEY

out=$BENCH_TMP/callgrind.out
rm -f "$out"*
valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no --callgrind-out-file="$out" \
    "$PY" -m gateway.server --host 127.0.0.1 --port 8000 >"$BENCH_TMP/portico.log" 2>&1 &
portico_pid=$!
for _ in $(seq 600); do
    curl -sf -o /dev/null -H "Authorization: Bearer $key" http://127.0.0.1:8000/v1/models && break
    sleep 0.5
done
"$PY" bench/exact_load.py 300 "$C" "$STREAM" "$key"  # warm up: caches filled, code paths taken once
callgrind_control -i on "$portico_pid" >/dev/null
"$PY" bench/exact_load.py "$N" "$C" "$STREAM" "$key"
sleep 1  # the writer threads' share of these requests: the ledger flushes and the request log
callgrind_control -i off "$portico_pid" >/dev/null
callgrind_control -d "$portico_pid" >/dev/null
# The dump is written once the process next wakes (a request wakes it; counting is off by now), after
# callgrind_control has returned: its last line says it is whole.
for _ in $(seq 240); do
    grep -qs "^totals:" "$out".1-01 && break
    curl -s -o /dev/null "http://127.0.0.1:8000/health/ready" || true
    sleep 0.5
done
# One file per thread (callgrind.out.1-01 is the main thread's, the event loop's).
count_of() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'; }  # reads to the end: no SIGPIPE
total=0
for part in "$out".1-*; do
    [ -s "$part" ] || continue
    count=$(count_of "$part")
    [[ $count =~ ^[0-9]+$ ]] || count=0  # callgrind_annotate prints "." for a thread that ran no instruction
    total=$((total + count))
done
loop=$(count_of "$out".1-01)
echo "instructions per request: $((total / N)) (key $KEY, stream $STREAM, $N requests from $C connections)"
# The event loop's share is the request path's. Much of the other threads' work comes by the clock (a ledger
# flush every 0.5 s, a budget-alert check every 2 s, a snapshot reload every 5 s), and under callgrind fifty times
# fewer requests share each of those: their share per request comes out far larger here than at full speed.
echo "  of which the event loop: $((${loop:-0} / N)), the other threads: $(((total - ${loop:-0}) / N))"
