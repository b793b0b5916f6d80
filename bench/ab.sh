#!/usr/bin/env bash
# Two builds of convosphere-auth side by side in one run: CPU per request of
# GET /v1/authz (API key, access token) and GET /v1/me, the two services
# measured in turns (A B A B …, BENCH_AB_ROUNDS times each), so that a
# neighbour's load falls on both alike. Prints each run and, per figure, the
# median CPU µs per request of A and of B and B ÷ A. See docs/BENCHMARKS.md.
#
# `bash bench/ab.sh OLD_BINARY NEW_BINARY` — e.g. a build of an earlier commit
# and target/release/convosphere-auth. Variables: BENCH_AB_ROUNDS (5),
# BENCH_SECONDS (6) per run, BENCH_CONNECTIONS (32), BENCH_RUST_LOG (info).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 A_BINARY B_BINARY" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
ROUNDS="${BENCH_AB_ROUNDS:-5}"
DURATION="${BENCH_SECONDS:-6}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
LOG_LEVEL="${BENCH_RUST_LOG:-info}"
HUGE=1000000000
PASSWORD='correct horse battery staple'
TICKS=$(getconf CLK_TCK)
DATA=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

declare -A PORT PID KEY ACCESS
PORT[A]=18180; PORT[B]=18181
for side in A B; do
  bin=$1; [ "$side" = B ] && bin=$2
  mkdir "$DATA/$side"
  AUTH_DATA_DIR="$DATA/$side" AUTH_BIND="127.0.0.1:${PORT[$side]}" AUTH_PUBLIC_URL="http://127.0.0.1:${PORT[$side]}" \
    AUTH_IP_RATE_LIMIT=$HUGE AUTH_RATE_LIMIT_FREE=$HUGE AUTH_LOG_FORMAT=json RUST_LOG="$LOG_LEVEL" \
    "$bin" serve 2>"$DATA/$side.log" &
  PID[$side]=$!; PIDS+=("${PID[$side]}")
done
for side in A B; do
  base="http://127.0.0.1:${PORT[$side]}"
  for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$base/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"Bench\",\"email\":\"ab@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null
  AUTH_DATA_DIR="$DATA/$side" "$([ "$side" = A ] && echo "$1" || echo "$2")" user verify-email ab@example.com >/dev/null
  ACCESS[$side]=$(curl -sf "$base/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"ab@example.com\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  KEY[$side]=$(curl -sf "$base/v1/api-keys" -H "Authorization: Bearer ${ACCESS[$side]}" -H 'content-type: application/json' \
    -d '{"name":"bench","scopes":["agents:read"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
done

cpu_s() { awk -v t="$TICKS" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# `run SIDE FIGURE`: one wrk run; prints the CPU µs per request.
run() {
  local side=$1 figure=$2 base="http://127.0.0.1:${PORT[$1]}" before after out requests
  local credential=${ACCESS[$side]} path="/v1/authz?scope=agents:read"
  [ "$figure" = key ] && credential=${KEY[$side]}
  [ "$figure" = me ] && path="/v1/me"
  before=$(cpu_s "${PID[$side]}")
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $credential" "$base$path")
  after=$(cpu_s "${PID[$side]}")
  if echo "$out" | grep -q 'Non-2xx'; then echo "!! $side $figure: $(echo "$out" | grep 'Non-2xx')" >&2; fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print(round(($after - $before) * 1e6 / $requests, 2))"
}

echo "A: $1"
echo "B: $2"
echo "cores: $(nproc); wrk -t2 -c$CONNECTIONS -d${DURATION}s; $ROUNDS runs of each; RUST_LOG=$LOG_LEVEL"
for figure in key token me; do
  declare -a a=() b=()
  for round in $(seq 1 "$ROUNDS"); do
    # The first of a pair turns each round.
    if [ $((round % 2)) -eq 1 ]; then a+=("$(run A $figure)"); b+=("$(run B $figure)"); else b+=("$(run B $figure)"); a+=("$(run A $figure)"); fi
  done
  python3 - "$figure" "${a[*]}" "${b[*]}" <<'EOF'
import statistics, sys
figure, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
title = {"key": "GET /v1/authz (API key)", "token": "GET /v1/authz (access token)", "me": "GET /v1/me"}[figure]
ma, mb = statistics.median(a), statistics.median(b)
print(f"{title}: CPU µs per request, median A {ma:.2f} (runs {', '.join(map(str, a))}), B {mb:.2f} (runs {', '.join(map(str, b))}); B / A {mb / ma:.3f}")
EOF
  unset a b
done
