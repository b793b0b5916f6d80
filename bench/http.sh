#!/usr/bin/env bash
# HTTP benchmarks against the release binary, each next to its baseline
# measured in the same run (see docs/BENCHMARKS.md):
# - GET /v1/me and GET /v1/authz (API key, access token) against a bare
#   actix-web handler: same load generator, threads and connections; in
#   rounds, each next to the bare handler measured before and after it;
# - p99 latency of /v1/authz at half its peak rate (open loop, loadgen `rate`),
#   next to the bare handler at the same rate;
# - POST /v1/auth/login against cores / one argon2id hash (and against the
#   hashes per second all cores manage together, measured here too);
# - POST /v1/auth/refresh (refresh-token chains);
# - the service's RSS at the start and end of a soak run of /v1/authz;
# - the API key cache-miss path against a primary-key SELECT on PostgreSQL
#   (skipped when BENCH_DATABASE_URL does not answer).
# Needs wrk (Debian package `wrk`). Prints one line per figure.
#
# Variables: BENCH_SECONDS (10) per run, BENCH_ROUNDS (3) of the throughput
# figures, BENCH_CONNECTIONS (32),
# BENCH_SOAK_SECONDS (60), BENCH_RUST_LOG (info, the service's default),
# BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres),
# BENCH_KEYS (1000, for the cache-miss figure), BENCH_SERVICE_BIN (another
# build of convosphere-auth to measure, e.g. one of an earlier commit).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/convosphere-target}"
DURATION="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
SOAK="${BENCH_SOAK_SECONDS:-60}"
LOG_LEVEL="${BENCH_RUST_LOG:-info}"
DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
KEYS="${BENCH_KEYS:-1000}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q --bin convosphere-auth --example bare --example loadgen --example keymiss -p convosphere-auth
cargo build --release -q --example argon2_time -p convosphere-crypto
DATA=$(mktemp -d)
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$DATA"; }
PIDS=()
trap cleanup EXIT
# The target directory may be shared with other work trees, whose builds
# replace target/release/convosphere-auth: run copies taken right after the build.
mkdir "$DATA/bin"
for program in convosphere-auth examples/bare examples/loadgen examples/keymiss examples/argon2_time; do
  cp "$CARGO_TARGET_DIR/release/$program" "$DATA/bin/"
done
BIN="$DATA/bin"
SERVICE_BIN="${BENCH_SERVICE_BIN:-$BIN/convosphere-auth}"
PORT=18080; BARE_PORT=18090
for port in $PORT $BARE_PORT; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then echo "port $port is taken: stop what listens there" >&2; exit 1; fi
done

# Every limit far above what two cores can serve: the benchmark must never see a 429.
HUGE=1000000000
AUTH_DATA_DIR="$DATA" AUTH_BIND="127.0.0.1:$PORT" AUTH_PUBLIC_URL="http://localhost:$PORT" \
  AUTH_IP_RATE_LIMIT=$HUGE AUTH_MAX_SESSIONS=16 \
  AUTH_RATE_LIMIT_FREE=$HUGE AUTH_RATE_LIMIT_STARTER=$HUGE AUTH_RATE_LIMIT_BUSINESS=$HUGE AUTH_RATE_LIMIT_PRO=$HUGE \
  AUTH_LOG_FORMAT=json RUST_LOG="$LOG_LEVEL" "$SERVICE_BIN" serve 2>"$DATA/service.log" &
SERVICE=$!
PIDS+=($SERVICE)
"$BIN/bare" "127.0.0.1:$BARE_PORT" &
BARE_PID=$!
PIDS+=($BARE_PID)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$BARE_PORT/" >/dev/null && break; sleep 0.1; done

BASE="http://127.0.0.1:$PORT"
BARE_URL="http://127.0.0.1:$BARE_PORT/"
PASSWORD='correct horse battery staple'
# Four accounts: one for reads, one whose logins evict each other, one for
# refresh chains, one for passkey sign-ins.
for who in bench login refresh passkey; do
  curl -sf "$BASE/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"Bench\",\"email\":\"$who@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null
done
for _ in $(seq 1 50); do [ "$(ls "$DATA"/outbox/*.eml 2>/dev/null | wc -l)" -ge 4 ] && break; sleep 0.1; done
for TOKEN in $(cat "$DATA"/outbox/*.eml | tr -d '\r' | sed -e ':a;/=$/{N;s/=\n//;ba}' -e 's/=3D/=/g' | grep -o 'verify-email?token=[A-Za-z0-9_-]*' | sort -u | cut -d= -f2); do
  curl -sf "$BASE/v1/auth/verify-email" -H 'content-type: application/json' -d "{\"token\":\"$TOKEN\"}" >/dev/null
done
login() {
  curl -sf "$BASE/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1@example.com\",\"password\":\"$PASSWORD\"}"
}
ACCESS=$(login bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
API_KEY=$(curl -sf "$BASE/v1/api-keys" -H "Authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["agents:read","chat:write"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

rps() { grep 'Requests/sec' | awk '{print $2}'; }
latency() { grep -A4 'Latency Distribution' | grep ' 99%' | awk '{print $2}'; }
# wrk counts 4xx/5xx as "Non-2xx": any of them would make the figure meaningless.
check_2xx() { if echo "$1" | grep -q 'Non-2xx'; then echo "!! $2: $(echo "$1" | grep 'Non-2xx')" >&2; fi; }
run_wrk() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@"; }
ratio() { python3 -c "print(round($1 / $2, 2))"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVICE/status"; }
# CPU seconds (user + system) a process has used so far.
TICKS=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TICKS" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# `measured PID OUTVAR wrk-args…`: runs wrk and sets OUTVAR to its output and
# CPU_US to the CPU time PID spent per request, in µs. On a shared machine CPU
# per request moves far less than requests per second when others load it.
measured() {
  local pid=$1 var=$2; shift 2
  local before after out
  before=$(cpu_s "$pid"); out=$(run_wrk "$@"); after=$(cpu_s "$pid")
  printf -v "$var" '%s' "$out"
  CPU_US=$(python3 -c "print(round(($after - $before) * 1e6 / $(echo "$out" | awk '/requests in/ {print $1}'), 2))")
}

echo "cores: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); wrk -t2 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds; service RUST_LOG=$LOG_LEVEL"

# Throughput: ROUNDS rounds, each of the bare handler then the three
# endpoints, in an order that turns by one every round (so that no endpoint
# always runs first); a last bare run closes the last round. A figure's ratio
# in a round is its req/s over the mean of the bare runs before and after
# that round; the median round is reported, next to every round's ratio.
AUTHZ="$BASE/v1/authz?scope=agents:read"
FIGURES=(me key token)
declare -A RPS CPU P99 TITLE GOAL
TITLE[bare]="bare actix-web handler"
TITLE[me]="GET /v1/me (access token)"; GOAL[me]=0.6
TITLE[key]="GET /v1/authz (API key)"; GOAL[key]=0.7
TITLE[token]="GET /v1/authz (access token)"; GOAL[token]=0.7
# `measure FIGURE`: one wrk run; appends its req/s, CPU µs per request and p99.
measure() {
  local figure=$1 result
  case $figure in
    bare) measured "$BARE_PID" result "$BARE_URL" ;;
    me) measured "$SERVICE" result -H "Authorization: Bearer $ACCESS" "$BASE/v1/me" ;;
    key) measured "$SERVICE" result -H "Authorization: Bearer $API_KEY" "$AUTHZ" ;;
    token) measured "$SERVICE" result -H "Authorization: Bearer $ACCESS" "$AUTHZ" ;;
  esac
  check_2xx "$result" "${TITLE[$figure]}"
  RPS[$figure]+="$(echo "$result" | rps) "; CPU[$figure]+="$CPU_US "; P99[$figure]+="$(echo "$result" | latency) "
}
for round in $(seq 0 $((ROUNDS - 1))); do
  measure bare
  for i in 0 1 2; do measure "${FIGURES[$(((round + i) % 3))]}"; done
done
measure bare
median() { python3 -c "import statistics, sys; m = statistics.median(map(float, sys.argv[1:])); print(round(m, $2) if $2 else round(m))" $1; }
listed() { echo $1 | sed 's/ /, /g'; }
# `summary FIGURE`: its median req/s, its ratio to bare in every round and
# their median, its median CPU per request and the bare handler's over it.
summary() {
  python3 - "${RPS[bare]}" "${CPU[bare]}" "${RPS[$1]}" "${CPU[$1]}" <<'PY'
import statistics, sys
bare, bare_cpu, rps, cpu = (list(map(float, a.split())) for a in sys.argv[1:])
base = [(a + b) / 2 for a, b in zip(bare, bare[1:])]
ratios = [r / b for r, b in zip(rps, base)]
print(f"{statistics.median(rps):.0f} req/s, ratio to bare {statistics.median(ratios):.2f} "
      f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
      f"{statistics.median(cpu):.2f} µs CPU per request, bare/this {statistics.median(bare_cpu) / statistics.median(cpu):.2f}")
PY
}
echo "bare actix-web handler: median $(median "${RPS[bare]}" 0) req/s (runs: $(listed "${RPS[bare]}"); p99 $(listed "${P99[bare]}")); $(median "${CPU[bare]}" 2) µs CPU per request"
for figure in "${FIGURES[@]}"; do
  echo "${TITLE[$figure]}: $(summary "$figure") (goal >= ${GOAL[$figure]}; p99 per round $(listed "${P99[$figure]}"))"
done
KEY=$(median "${RPS[key]}" 0)

# Latency at half the peak rate, open loop (no coordinated omission).
HALF=$(python3 -c "print(int($KEY / 2))")
# Next to each client-side figure, what the service's own histogram
# (/metrics) saw of the same requests: from the parsed request entering
# the middleware to its answer leaving it. The rest of the client's latency
# is parsing and writing, the kernel's network stack and waiting for a core.
authz_buckets() { curl -sf "$BASE/metrics" | grep 'request_duration_seconds_bucket{method="GET",route="/v1/authz"'; }
served() {
  python3 - "$1" "$2" <<'PY'
import re, sys
def counts(text):
    return {float(m.group(1)): int(m.group(2)) for m in re.finditer(r'le="([0-9.]+|\+Inf)"\} (\d+)', text)}
before, after = counts(sys.argv[1]), counts(sys.argv[2])
delta = sorted((le, after[le] - before.get(le, 0)) for le in after)
total = max(n for _, n in delta)
p99 = next(le for le, n in delta if n >= 0.99 * total)
print(f"in the service: p99 <= {p99 * 1000:g} ms, {delta[0][1] * 100 / total:.3f}% within {delta[0][0] * 1000:g} ms")
PY
}
rate_authz() {
  local before out
  before=$(authz_buckets)
  out=$("$BIN/loadgen" rate "$AUTHZ" "$HALF" "$DURATION" "$CONNECTIONS" "Authorization: Bearer $1")
  echo "$out (goal p99 < 2 ms); $(served "$before" "$(authz_buckets)")"
}
echo "fixed rate $HALF req/s (half the API-key peak), $CONNECTIONS connections, ${DURATION}s:"
echo "  bare:               $("$BIN/loadgen" rate "$BARE_URL" "$HALF" "$DURATION" "$CONNECTIONS")"
echo "  authz (API key):    $(rate_authz "$API_KEY")"
echo "  authz (access token): $(rate_authz "$ACCESS")"

# Logins: bounded by argon2id. One hash alone, then one per core at once:
# wall time per hash, and CPU time per hash (the example computes 22 hashes:
# a dummy, a warm-up and the 20 it times). The hash alone is timed again
# after the logins and the faster of the two makes the bound: a neighbour
# slowing one of them down must not lower the bar.
TIMEFORMAT='%U %S'
argon2() { { time "$BIN/argon2_time" 20 >"$DATA/argon2.$1"; } 2>"$DATA/argon2.$1.cpu"; }
argon2 alone
ARGON2_PIDS=()
for i in $(seq 1 "$(nproc)"); do argon2 "par$i" & ARGON2_PIDS+=($!); done
wait "${ARGON2_PIDS[@]}"
PAR_MS=$(cat "$DATA"/argon2.par? | awk '{s += $1; n++} END {printf "%.2f", s / n}')
PAR_CPU_MS=$(cat "$DATA"/argon2.par?.cpu | awk '{s += $1 + $2; n++} END {printf "%.2f", s * 1000 / 22 / n}')
PAR_BOUND=$(python3 -c "print(round($(nproc) * 1000 / $PAR_MS, 1))")
cat > "$DATA/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"login@example.com","password":"$PASSWORD"}'
LUA
LOGIN_CPU0=$(cpu_s "$SERVICE")
LOGIN_OUT=$(wrk -t2 -c8 -d"${DURATION}s" --latency -s "$DATA/login.lua" "$BASE/v1/auth/login")
LOGIN_CPU1=$(cpu_s "$SERVICE")
check_2xx "$LOGIN_OUT" "login"
LOGIN=$(echo "$LOGIN_OUT" | rps)
LOGIN_CPU_MS=$(python3 -c "print(round(($LOGIN_CPU1 - $LOGIN_CPU0) * 1000 / $(echo "$LOGIN_OUT" | awk '/requests in/ {print $1}'), 2))")
argon2 again
FASTER=$(awk 'NR == FNR {a = $1; next} {print ($1 < a) ? "again" : "alone"}' "$DATA/argon2.alone" "$DATA/argon2.again")
HASH_MS=$(cat "$DATA/argon2.$FASTER")
HASH_CPU_MS=$(awk '{printf "%.2f", ($1 + $2) * 1000 / 22}' "$DATA/argon2.$FASTER.cpu")
BOUND=$(python3 -c "print(round($(nproc) * 1000 / $HASH_MS, 1))")
echo "one argon2id hash (m=19456 KiB, t=2, p=1): $HASH_MS ms alone ($HASH_CPU_MS ms CPU; the faster of $(cat "$DATA/argon2.alone") and $(cat "$DATA/argon2.again") ms, before and after the logins), $PAR_MS ms with $(nproc) at once ($PAR_CPU_MS ms CPU); bound cores/hash = $BOUND logins/s, measured all-core rate = $PAR_BOUND hashes/s"
echo "POST /v1/auth/login: $LOGIN req/s (p99 $(echo "$LOGIN_OUT" | latency)), ratio to cores/hash $(ratio "$LOGIN" "$BOUND") (goal >= 0.9), to the all-core hash rate $(ratio "$LOGIN" "$PAR_BOUND"); $LOGIN_CPU_MS ms CPU per login, hash (with $(nproc) at once)/login $(ratio "$PAR_CPU_MS" "$LOGIN_CPU_MS")"

"$BIN/loadgen" refresh "$BASE" refresh@example.com "$PASSWORD" 8 "$DURATION"
PASSKEY_CPU0=$(cpu_s "$SERVICE")
PASSKEY_OUT=$("$BIN/loadgen" passkey "$BASE" "http://localhost:$PORT" passkey@example.com "$PASSWORD" 8 "$DURATION")
PASSKEY_CPU1=$(cpu_s "$SERVICE")
echo "$PASSKEY_OUT"
PASSKEY=$(echo "$PASSKEY_OUT" | awk '{for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1)}')
PASSKEY_N=$(echo "$PASSKEY_OUT" | awk '{for (i = 1; i <= NF; i++) if ($i == "ok,") print $(i - 1)}')
echo "passkey sign-ins: $PASSKEY/s against $LOGIN password logins/s: ratio $(ratio "$PASSKEY" "$LOGIN") (goal >= 10); $(python3 -c "print(round(($PASSKEY_CPU1 - $PASSKEY_CPU0) * 1000 / max($PASSKEY_N, 1), 3))") ms CPU per sign-in (two requests)"

# Memory over a soak run of /v1/authz, alternating the API key and the access token.
cat > "$DATA/soak.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local credential = (n % 2 == 0) and "$API_KEY" or "$ACCESS"
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. credential })
end
LUA
RSS_START=$(rss_kib)
wrk -t2 -c"$CONNECTIONS" -d"${SOAK}s" -s "$DATA/soak.lua" "$AUTHZ" >"$DATA/soak.out" &
WRK=$!
sleep $((SOAK / 2)); RSS_MID=$(rss_kib)
wait $WRK; RSS_END=$(rss_kib)
SOAK_OUT=$(cat "$DATA/soak.out")
check_2xx "$SOAK_OUT" "soak"
echo "RSS over a ${SOAK}s authz run ($(echo "$SOAK_OUT" | rps) req/s): start $RSS_START KiB, middle $RSS_MID KiB, end $RSS_END KiB, end/start $(ratio "$RSS_END" "$RSS_START") (goal: flat)"

# The API key cache-miss path, on PostgreSQL.
if command -v pg_isready >/dev/null && pg_isready -q -d "$DATABASE_URL"; then
  "$BIN/keymiss" "$DATABASE_URL" "$KEYS"
else
  echo "API key cache miss: skipped ($DATABASE_URL does not answer)"
fi

ERRORS=$(grep -c '"level":"ERROR"' "$DATA/service.log" || true)
echo "service log: $(wc -l <"$DATA/service.log") lines, $ERRORS errors"
