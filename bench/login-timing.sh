#!/usr/bin/env bash
# Login timing on PostgreSQL: does a wrong password for a known address cost
# what an unknown address costs? (CONTRACT §4: "Login with an unknown e-mail
# costs the same time as with a known one"; see docs/BENCHMARKS.md.)
#
# Starts the release binary on a database of its own on BENCH_DATABASE_URL's
# server, then times BENCH_LOGINS (300) logins of each kind, interleaved one
# by one over one keep-alive connection so that both see the same machine,
# and prints the median and the 10th/90th percentiles of each and the
# difference of the medians. Needs python3 and a PostgreSQL server.
#
# Variables: BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres),
# BENCH_LOGINS (300), BENCH_SERVICE_BIN (another build of convosphere-auth,
# e.g. one of an earlier commit).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/convosphere-target}"
SERVER_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
LOGINS="${BENCH_LOGINS:-300}"
pg_isready -q -d "$SERVER_URL" || { echo "$SERVER_URL does not answer" >&2; exit 1; }

cargo build --release -q --bin convosphere-auth -p convosphere-auth
DATA=$(mktemp -d)
DB="bench_login_timing_$$"
SERVICE=""
cleanup() {
  [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null
  psql -q -d "$SERVER_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT
cp "$CARGO_TARGET_DIR/release/convosphere-auth" "$DATA/"
SERVICE_BIN="${BENCH_SERVICE_BIN:-$DATA/convosphere-auth}"
psql -q -d "$SERVER_URL" -c "CREATE DATABASE $DB" >/dev/null
PORT=18085
# No limit or lockout may answer instead of the password check.
export AUTH_DATA_DIR="$DATA" AUTH_BIND="127.0.0.1:$PORT" AUTH_PUBLIC_URL="http://127.0.0.1:$PORT" \
  AUTH_DATABASE_URL="${SERVER_URL%/*}/$DB" AUTH_IP_RATE_LIMIT=1000000000 AUTH_LOCKOUT_THRESHOLD=1000000000 \
  AUTH_LOG_FORMAT=json RUST_LOG=warn
"$SERVICE_BIN" serve 2>"$DATA/service.log" &
SERVICE=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"name":"Bench","email":"known@example.com","password":"correct horse battery staple"}' >/dev/null
"$SERVICE_BIN" user verify-email known@example.com >/dev/null

python3 - "$PORT" "$LOGINS" <<'EOF'
import http.client, json, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
def login(email):
    body = json.dumps({"email": email, "password": "not the password at all"})
    start = time.perf_counter()
    conn.request("POST", "/v1/auth/login", body, {"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    assert response.status == 401, response.status
    return elapsed * 1000
for _ in range(10):  # warm up both paths
    login("known@example.com"); login("nobody@example.com")
times = {"known address, wrong password": [], "unknown address": []}
for i in range(n):
    times["known address, wrong password"].append(login("known@example.com"))
    times["unknown address"].append(login(f"nobody{i}@example.com"))
medians = {}
for kind, values in times.items():
    deciles = statistics.quantiles(values, n=10)
    medians[kind] = statistics.median(values)
    print(f"login, {kind}: median {medians[kind]:.2f} ms (p10 {deciles[0]:.2f}, p90 {deciles[-1]:.2f}; {n} logins)")
known, unknown = medians.values()
print(f"login timing: medians differ by {known - unknown:+.2f} ms ({(known / unknown - 1) * 100:+.1f} %)")
EOF
