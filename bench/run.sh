#!/usr/bin/env bash
# Portico's benchmark: Portico production-like (Postgres, Redis, an ASGI server)
# in front of the shared fake upstream, next to the upstream alone and to the
# bare Python proxy floor, all in one sitting. See bench/README.md.
#
#   bench/run.sh
#   DURATION=3s WARMUP=1s ROUNDS=1 MODES="uvicorn:http1 uvicorn:aiohttp" bench/run.sh
#
# Environment:
#   MODES     Portico configurations to compare, as SERVER:TRANSPORT[:VARIANT] words. With no
#             variant, the limited key (limits and a budget checked on every request) calls the
#             OpenAI-kind route with the ledger on. Variants:
#               plain      the key without limits, and the ledger off (PORTICO_USAGE_LEDGER=false)
#               anthropic  as the default, on the Anthropic-kind route (translated both ways)
#               django     /v1/ through Django's standard handler (PORTICO_FAST_PATH=false)
#               failover   as the default, on bench-failover: its first deployment, the flaky
#                          upstream (127.0.0.1:18084), fails every other call with a 500, and
#                          Portico moves those calls on to the fast upstream
#             (default "$SERVER:$PORTICO_HTTP_TRANSPORT $SERVER:$PORTICO_HTTP_TRANSPORT:plain
#             $SERVER:$PORTICO_HTTP_TRANSPORT:anthropic", i.e. uvicorn:http1 in the three variants)
#   SERVER    uvicorn | granian            (default uvicorn; used when MODES is unset)
#   PORTICO_HTTP_TRANSPORT http1 | aiohttp | httpx (default http1; used when MODES is unset)
#   WORKERS   server worker processes      (default 1)
#   ROUNDS    rounds of every target       (default 2)
#   DURATION, WARMUP, CASES                passed to the harness's run.sh
#   PORTICO_BENCH_HARNESS  the shared harness (default ../shared/bench, from the project root)
#   BENCH_TMP where logs and results go    (default /tmp/portico-bench)
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
cd "$PROJECT"

die() { echo "bench: $*" >&2; exit 2; }

HARNESS=${PORTICO_BENCH_HARNESS:-../shared/bench}
[ -x "$HARNESS/run.sh" ] && [ -x "$HARNESS/nginx.sh" ] && [ -f "$HARNESS/pyproxy.py" ] ||
    die "the shared harness is not at $HARNESS (looked for run.sh, nginx.sh, pyproxy.py); set PORTICO_BENCH_HARNESS"
HARNESS=$(cd "$HARNESS" && pwd)

missing=()
for tool in nginx wrk; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: missing ${missing[*]}; install them with:" >&2
    echo "    apt-get update && apt-get install -y nginx-light libnginx-mod-http-lua wrk" >&2
    exit 2
fi
for tool in psql curl ss; do command -v "$tool" >/dev/null || die "$tool is missing"; done
PY=$PROJECT/.venv/bin/python
[ -x "$PY" ] || die "no virtualenv at $PROJECT/.venv; install Portico first"

export BENCH_TMP=${BENCH_TMP:-/tmp/portico-bench}
ROUNDS=${ROUNDS:-2}
WORKERS=${WORKERS:-1}
BASE_MODE=${SERVER:-uvicorn}:${PORTICO_HTTP_TRANSPORT:-http1}
MODES=${MODES:-$BASE_MODE $BASE_MODE:plain $BASE_MODE:anthropic}
MODEL=bench-model
CLAUDE_MODEL=bench-claude
FAILOVER_MODEL=bench-failover
UPSTREAM=http://127.0.0.1:18080/v1
ANTHROPIC_PORT=18083
FLAKY_PORT=18084
PYPROXY_PORT=18082
PORTICO_PORT=8000
DB=portico_bench

for mode in $MODES; do
    case $mode in
    uvicorn:http1 | uvicorn:aiohttp | uvicorn:httpx | granian:http1 | granian:aiohttp | granian:httpx) ;;
    uvicorn:http1:* | uvicorn:aiohttp:* | uvicorn:httpx:* | granian:http1:* | granian:aiohttp:* | granian:httpx:*)
        case ${mode##*:} in
        django | plain | anthropic | failover) ;;
        *) die "unknown variant in '$mode': use django, plain, anthropic or failover" ;;
        esac ;;
    *) die "unknown mode '$mode' in MODES: use SERVER:TRANSPORT[:VARIANT], SERVER uvicorn|granian, TRANSPORT http1|aiohttp|httpx" ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer"
for port in 18080 $ANTHROPIC_PORT $FLAKY_PORT $PYPROXY_PORT $PORTICO_PORT; do
    ! ss -ltn "sport = :$port" | grep -q LISTEN || die "port $port is already taken; stop whatever listens there"
done

mkdir -p "$BENCH_TMP"
RESULTS=$BENCH_TMP/results-$(date +%Y%m%d-%H%M%S).md

# --- cleanup: everything started here is stopped here, whatever happens ------
upstream_started=0
anthropic_started=0
flaky_started=0
pyproxy_pid=
portico_pid=
suite_pid=

alive() {  # $1 = pid; a child that exited but is not reaped yet (a zombie) is not alive
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st:0:1}" != Z ]
}

stop_pid() {  # $1 = pid: SIGTERM, up to 10 s for a graceful stop, then SIGKILL
    local pid=$1 _
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "bench: pid $pid ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_portico() {
    if [ -n "$portico_pid" ]; then
        stop_pid "$portico_pid"
        portico_pid=
    fi
}

# The nginx servers of bench/nginx/: $1 = name, with its config bench/nginx/$1.conf and its
# prefix (pid file, logs, the Lua files it loads) $BENCH_TMP/$1.
start_nginx() {  # $1 = name, $2 = port, $3... = Lua files to link into the prefix
    local name=$1 port=$2 prefix=$BENCH_TMP/$1 lua _
    shift 2
    mkdir -p "$prefix"
    for lua in "$@"; do ln -sf "$lua" "$prefix/$(basename "$lua")"; done
    nginx -p "$prefix" -e "$prefix/error.log" -c "$PROJECT/bench/nginx/$name.conf"
    for _ in $(seq 50); do
        ss -ltn "sport = :$port" | grep -q LISTEN && return 0
        sleep 0.1
    done
    die "the fake upstream $name did not start on port $port; see $prefix/error.log"
}

stop_nginx() {  # $1 = name
    local pidfile=$BENCH_TMP/$1/$1.pid
    [ -f "$pidfile" ] || return 0
    stop_pid "$(cat "$pidfile")"
}

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$suite_pid" ]; then
        # setsid made the suite its process group's leader: this stops the harness and its wrk.
        kill -TERM -- "-$suite_pid" 2>/dev/null || true
        wait "$suite_pid" 2>/dev/null || true
        suite_pid=
    fi
    stop_portico
    if [ -n "$pyproxy_pid" ]; then
        stop_pid "$pyproxy_pid"
        pyproxy_pid=
    fi
    if [ "$upstream_started" = 1 ]; then
        "$HARNESS/nginx.sh" stop upstream >/dev/null || true
        upstream_started=0
    fi
    if [ "$anthropic_started" = 1 ]; then
        stop_nginx anthropic
        anthropic_started=0
    fi
    if [ "$flaky_started" = 1 ]; then
        stop_nginx flaky
        flaky_started=0
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

wait_for() {  # $1 = name, $2 = pid, $3 = log, $4... = curl arguments that succeed once it serves
    local name=$1 pid=$2 log=$3 _
    shift 3
    for _ in $(seq 300); do
        alive "$pid" || { echo "bench: $name exited; the end of $log:" >&2; tail -n 30 "$log" >&2; exit 1; }
        curl -sf -o /dev/null --max-time 2 "$@" && return 0
        sleep 0.1
    done
    echo "bench: $name did not answer within 30 s; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

# --- the fake upstream ---------------------------------------------------------
# Port 18080 was free above, so whatever nginx.sh leaves behind, even on a failed start, is ours to stop.
upstream_started=1
"$HARNESS/nginx.sh" start upstream
upstream_pid=$(cat "$BENCH_TMP/upstream/upstream.pid")

# The fake Anthropic upstream: the same answer in the Messages API's format.
anthropic_started=1
start_nginx anthropic $ANTHROPIC_PORT "$PROJECT/bench/nginx/fake_anthropic.lua"
# The flaky upstream: the fast one's answers (it loads the shared fake_openai.lua), every other call a 500.
flaky_started=1
start_nginx flaky $FLAKY_PORT "$PROJECT/bench/nginx/fake_flaky.lua" "$HARNESS/nginx/fake_openai.lua"

# --- Portico's database and its rows ------------------------------------------
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export REDIS_URL=redis://127.0.0.1:6379/0
export PORTICO_REDIS_PREFIX=portico-bench
# A fixed, public value: the database is thrown away at the next run.
export SECRET_KEY=portico-bench-secret-key-not-for-production-use-0123456789
export PORTICO_DATA_DIR=$BENCH_TMP/data
export PORTICO_LOG_LEVEL=WARNING
export DJANGO_SETTINGS_MODULE=gateway.settings

echo "bench: recreating database $DB"
psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
.venv/bin/portico migrate --verbosity 0
read -r PLAIN_KEY LIMITED_KEY < <("$PY" bench/seed.py)
[[ $PLAIN_KEY == pk-* && $LIMITED_KEY == pk-* ]] || die "bench/seed.py did not print two keys"

# --- the bare Python proxy floor -----------------------------------------------
PYPROXY_CLIENT=aiohttp "$PY" -m uvicorn --app-dir "$HARNESS" pyproxy:app \
    --host 127.0.0.1 --port $PYPROXY_PORT --loop uvloop --http httptools \
    --no-access-log --log-level warning >"$BENCH_TMP/pyproxy.log" 2>&1 &
pyproxy_pid=$!
wait_for pyproxy "$pyproxy_pid" "$BENCH_TMP/pyproxy.log" "http://127.0.0.1:$PYPROXY_PORT/v1/models"

# --- Portico -------------------------------------------------------------------
start_portico() {  # $1 = server, $2 = transport, $3 = variant (django, plain, anthropic, failover or empty)
    local server=$1 log=$BENCH_TMP/portico-$1-$2${3:+-$3}.log
    local fast=true ledger=true
    [ "${3:-}" = django ] && fast=false
    [ "${3:-}" = plain ] && ledger=false
    export PORTICO_FAST_PATH=$fast PORTICO_USAGE_LEDGER=$ledger
    # Half the flaky deployment's calls fail, which opens its breaker within ten calls by default, and the
    # variant would then measure the fast deployment alone: kept closed, every call tries the flaky one first.
    # The latency rule is off too: against upstreams that answer in microseconds, the gateway's own queueing
    # at c=32 is many times their baseline.
    local breaker=()
    [ "${3:-}" = failover ] && breaker=(PORTICO_BREAKER_ERROR_RATIO=1 PORTICO_BREAKER_CONSECUTIVE_FAILURES=0
        PORTICO_BREAKER_LATENCY_MULTIPLE=0)
    case $server in
    uvicorn)
        # `portico serve`, as production runs it: uvicorn with Portico's bounded HTTP protocol.
        env "${breaker[@]}" PORTICO_HTTP_TRANSPORT="$2" PORTICO_LOG_LEVEL=WARNING .venv/bin/portico serve \
            --host 127.0.0.1 --port $PORTICO_PORT --workers "$WORKERS" >"$log" 2>&1 &
        ;;
    granian)
        # --interface asgi sends lifespan events (asginl would not); the access log is off by default.
        env "${breaker[@]}" PORTICO_HTTP_TRANSPORT="$2" .venv/bin/granian --interface asgi \
            --host 127.0.0.1 --port $PORTICO_PORT --workers "$WORKERS" --loop uvloop --no-ws \
            --no-access-log --log-level warning gateway.asgi:application >"$log" 2>&1 &
        ;;
    esac
    portico_pid=$!
    wait_for "Portico ($1, $2)" "$portico_pid" "$log" \
        -H "Authorization: Bearer $PLAIN_KEY" "http://127.0.0.1:$PORTICO_PORT/v1/models"
}

# --- the runs ------------------------------------------------------------------
{
    echo "# Portico bench, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "rev $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores," \
        "load $(cut -d' ' -f1-3 /proc/loadavg); ROUNDS=$ROUNDS WORKERS=$WORKERS" \
        "DURATION=${DURATION:-15s} WARMUP=${WARMUP:-5s} MODES=\"$MODES\""
    echo
} >>"$RESULTS"

header=1
suite() {  # $1 = base URL, $2 = key, $3 = label, $4 = CPU pids, $5 = model (default bench-model)
    # In its own process group, waited for with `wait`: a trapped Ctrl-C interrupts
    # `wait` at once, whereas a foreground wrk would swallow it (it stops the run and
    # reports), and the script would carry on. Cleanup then stops the whole group.
    HEADER=$header CPU_PIDS=$4 RESULTS=$RESULTS setsid bash -c \
        'set -o pipefail; "$@" | tee -a "$RESULTS"' suite "$HARNESS/run.sh" "$1" "$2" "${5:-$MODEL}" "$3" &
    suite_pid=$!
    local status=0
    wait "$suite_pid" || status=$?
    suite_pid=
    header=0
    return "$status"
}

# A client error in the harness's first two requests stops its suite. In the failover variant one of them
# meets the flaky deployment, so that is the failover failing: noted in the table, and the run goes on.
failed=()
failover_failed() {  # $1 = label
    echo "bench: $1: a client got an error, the flaky deployment's 500 was not hidden; carrying on" >&2
    echo "| $1 | failed: a client got the flaky deployment's error | | | | | | | |" >>"$RESULTS"
    failed+=("$1")
}

workers_suffix=
[ "$WORKERS" = 1 ] || workers_suffix=-w$WORKERS
for round in $(seq "$ROUNDS"); do
    echo "bench: round $round of $ROUNDS" >&2
    suite "$UPSTREAM" unused "direct #$round" "$upstream_pid"
    suite "http://127.0.0.1:$PYPROXY_PORT/v1" unused "pyproxy-aiohttp #$round" "$pyproxy_pid"
    for mode in $MODES; do
        IFS=: read -r server transport variant <<<"$mode"
        start_portico "$server" "$transport" "$variant"
        label="portico-$server-$transport${variant:+-$variant}$workers_suffix"
        key=$LIMITED_KEY model=$MODEL
        [ "$variant" = plain ] && key=$PLAIN_KEY
        [ "$variant" = anthropic ] && model=$CLAUDE_MODEL
        if [ "$variant" = failover ]; then
            suite "http://127.0.0.1:$PORTICO_PORT/v1" "$key" "$label #$round" "$portico_pid" "$FAILOVER_MODEL" ||
                failover_failed "$label #$round"
        else
            suite "http://127.0.0.1:$PORTICO_PORT/v1" "$key" "$label #$round" "$portico_pid" "$model"
        fi
        stop_portico
    done
done

if [[ " $MODES " == *:failover\ * ]]; then
    # What the ledger saw of the failover runs (warm-ups included): how many calls took a second attempt.
    {
        echo
        echo "Calls to $FAILOVER_MODEL in the ledger, by the status the client got, attempts and deployment:"
        echo
        psql -h 127.0.0.1 -U postgres -d $DB -v ON_ERROR_STOP=1 -P footer=off -c "
            SELECT status, attempts, deployment, count(*) AS calls FROM billing_usagerecord
            WHERE model = '$FAILOVER_MODEL' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3" | sed 's/^/    /'
    } | tee -a "$RESULTS"
fi

echo
echo "Results: $RESULTS"
python3 "$HARNESS/summarize.py" "$RESULTS" --ref direct
[ ${#failed[@]} -eq 0 ] || die "the failover variant let errors through in: ${failed[*]}"
