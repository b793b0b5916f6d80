# Shared by the attack scripts: build and copy the binary, pick free ports,
# start the service on a temporary data directory, make verified users.
# Source it; it sets `set -euo pipefail` and an EXIT trap that cleans up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/convosphere-target}"
PASSWORD='correct horse battery staple'
WORK="$(mktemp -d /var/tmp/convosphere-attack.XXXXXX)"
CLEANUPS=()
SERVICE_PID=""

cleanup() {
  local status=$?
  local i
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" || true; done
  if [ "$status" -ne 0 ] && [ -f "$WORK/service.log" ]; then
    echo "--- last lines of the service log ($WORK/service.log):" >&2
    tail -n 20 "$WORK/service.log" >&2 || true
  fi
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$status" -ne 0 ]; then
    echo "work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# The binary to run: $AUTH_BIN, or a fresh build of PROFILE (release or
# debug) copied out of the shared target directory at once (other
# worktrees' builds overwrite it).
binary() {
  local profile="${1:-release}"
  if [ -n "${AUTH_BIN:-}" ]; then
    cp "$AUTH_BIN" "$WORK/convosphere-auth"
  else
    local flag=""
    [ "$profile" = release ] && flag="--release"
    (cd "$ROOT" && cargo build $flag -q --bin convosphere-auth -p convosphere-auth)
    cp "$CARGO_TARGET_DIR/$profile/convosphere-auth" "$WORK/convosphere-auth"
  fi
  BIN="$WORK/convosphere-auth"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_service [VAR=VALUE…]: serves on a free port with a temporary data
# directory and limits high enough for load; sets BASE and SERVICE_PID.
start_service() {
  PORT="${PORT:-$(free_port)}"
  BASE="http://127.0.0.1:$PORT"
  mkdir -p "$WORK/data"
  env AUTH_DATA_DIR="$WORK/data" AUTH_BIND="127.0.0.1:$PORT" AUTH_PUBLIC_URL="http://127.0.0.1:$PORT" \
    AUTH_IP_RATE_LIMIT=100000000 AUTH_RATE_LIMIT_FREE=100000000 AUTH_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}" \
    "$@" "$BIN" serve >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
  CLEANUPS+=("stop_service")
  for _ in $(seq 1 200); do
    curl -sf "$BASE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVICE_PID" 2>/dev/null || fail "the service exited at start-up"
    sleep 0.1
  done
  fail "the service did not answer /healthz"
}

stop_service() {
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill -TERM "$SERVICE_PID"
    for _ in $(seq 1 100); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
  fi
  SERVICE_PID=""
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# The newest /verify-email token in the outbox written to ADDRESS.
verification_token() {
  local address="$1" file
  for _ in $(seq 1 100); do
    file=$(grep -l "^To: .*$address" "$WORK"/data/outbox/*.eml 2>/dev/null | tail -1 || true)
    if [ -n "$file" ]; then
      tr -d '\r' <"$file" | sed -e ':a;/=$/{N;s/=\n//;ba}' -e 's/=3D/=/g' |
        grep -o 'verify-email?token=[A-Za-z0-9_-]*' | tail -1 | cut -d= -f2
      return 0
    fi
    sleep 0.05
  done
  fail "no verification mail to $address"
}

# verified_user EMAIL: signs up and follows the e-mailed link.
verified_user() {
  local address="$1"
  curl -sf "$BASE/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"Attack\",\"email\":\"$address\",\"password\":\"$PASSWORD\"}" >/dev/null
  local token
  token=$(verification_token "$address")
  curl -sf "$BASE/v1/auth/verify-email" -H 'content-type: application/json' -d "{\"token\":\"$token\"}" >/dev/null
}

# access_token EMAIL: logs in, prints the access token.
access_token() {
  curl -sf "$BASE/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}" | json_field access_token
}
