#!/usr/bin/env bash
# HTTP benchmarks against the release binary, each next to its baseline measured
# in the same run: /v1/me against a bare actix-web handler (same load generator,
# threads and connections), login against cores / one argon2id hash, refresh.
# Needs wrk (Debian package `wrk`). Prints one line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/convosphere-target}"
DURATION="${BENCH_SECONDS:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q --bin convosphere-auth --example bare --example loadgen -p convosphere-auth
cargo build --release -q --example argon2_time -p convosphere-crypto
BIN="$CARGO_TARGET_DIR/release"
DATA=$(mktemp -d)
PORT=18080; BARE_PORT=18090
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$DATA"; }
PIDS=()
trap cleanup EXIT

AUTH_DATA_DIR="$DATA" AUTH_BIND="127.0.0.1:$PORT" AUTH_PUBLIC_URL="http://127.0.0.1:$PORT" \
  AUTH_IP_RATE_LIMIT=100000000 AUTH_MAX_SESSIONS=16 AUTH_RATE_LIMIT_FREE=100000000 \
  AUTH_LOG_FORMAT=json RUST_LOG=warn "$BIN/convosphere-auth" serve 2>"$DATA/service.log" &
PIDS+=($!)
"$BIN/examples/bare" "127.0.0.1:$BARE_PORT" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$BARE_PORT/" >/dev/null && break; sleep 0.1; done

BASE="http://127.0.0.1:$PORT"
PASSWORD='correct horse battery staple'
# Three accounts: one for reads, one whose logins evict each other, one for refresh chains.
for who in bench login refresh; do
  curl -sf "$BASE/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"Bench\",\"email\":\"$who@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null
done
for _ in $(seq 1 50); do [ "$(ls "$DATA"/outbox/*.eml 2>/dev/null | wc -l)" -ge 3 ] && break; sleep 0.1; done
for TOKEN in $(cat "$DATA"/outbox/*.eml | tr -d '\r' | sed -e ':a;/=$/{N;s/=\n//;ba}' -e 's/=3D/=/g' | grep -o 'verify-email?token=[A-Za-z0-9_-]*' | sort -u | cut -d= -f2); do
  curl -sf "$BASE/v1/auth/verify-email" -H 'content-type: application/json' -d "{\"token\":\"$TOKEN\"}" >/dev/null
done
login() {
  curl -sf "$BASE/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1@example.com\",\"password\":\"$PASSWORD\"}"
}
ACCESS=$(login bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

rps() { grep 'Requests/sec' | awk '{print $2}'; }
latency() { grep -A4 'Latency Distribution' | grep ' 99%' | awk '{print $2}'; }
run_wrk() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@"; }

echo "cores: $(nproc); wrk -t2 -c$CONNECTIONS -d${DURATION}s"
BARE_OUT=$(run_wrk "http://127.0.0.1:$BARE_PORT/")
ME_OUT=$(run_wrk -H "Authorization: Bearer $ACCESS" "$BASE/v1/me")
BARE=$(echo "$BARE_OUT" | rps); ME=$(echo "$ME_OUT" | rps)
echo "bare actix-web handler: $BARE req/s (p99 $(echo "$BARE_OUT" | latency))"
echo "GET /v1/me (access token): $ME req/s (p99 $(echo "$ME_OUT" | latency)), ratio $(python3 -c "print(round($ME/$BARE, 2))")"

HASH_MS=$("$BIN/examples/argon2_time" 20)
BOUND=$(python3 -c "print(round($(nproc) * 1000 / $HASH_MS, 1))")
cat > "$DATA/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"login@example.com","password":"$PASSWORD"}'
LUA
LOGIN_OUT=$(wrk -t2 -c8 -d"${DURATION}s" --latency -s "$DATA/login.lua" "$BASE/v1/auth/login")
LOGIN=$(echo "$LOGIN_OUT" | rps)
echo "one argon2id hash (m=19456 KiB, t=2, p=1): $HASH_MS ms; bound cores/hash = $BOUND logins/s"
echo "POST /v1/auth/login: $LOGIN req/s (p99 $(echo "$LOGIN_OUT" | latency)), ratio to bound $(python3 -c "print(round($LOGIN/$BOUND, 2))")"
echo "$LOGIN_OUT" | grep -i 'non-2xx' || true

"$BIN/examples/loadgen" refresh "$BASE" refresh@example.com "$PASSWORD" 8 "$DURATION"
