#!/usr/bin/env bash
# Fault test: the service on a private PostgreSQL cluster that is stopped
# under load and started again, without restarting the service.
#
#   1. initdb a throw-away cluster (as the postgres user when run as root),
#      start it on a free port (55432 if free), start the service on it;
#   2. drive load from five loops (signups, logins, refresh chains,
#      /v1/authz with an API key, key creation), each request logged with
#      its status, Content-Type and problem code;
#   3. `pg_ctl stop -m fast`: /readyz must answer 503 problem+json
#      `unavailable`, and every request that needs the database too — never
#      a 500, never a hang past the pool's 5 s checkout timeout;
#   4. `pg_ctl start`: /readyz back to 200 and every kind of request
#      succeeding, with the same service process;
#   5. nothing half-written: a signup refused during the outage left no
#      account (or a whole one: signup event and verification mail); one
#      answered 202 has both; every key answered 201 is listed, none other;
#      every refresh chain goes on (a refused refresh did not spend its token).
#
#   bash tests/attack/pg-fault.sh          # ~1 minute after the build
#
# PROFILE=debug|release (debug), FAULT_DOWN_SECONDS (12), AUTH_BIN,
# PG_BIN (/usr/lib/postgresql/15/bin).
source "$(dirname "$0")/lib.sh"

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
DOWN_SECONDS="${FAULT_DOWN_SECONDS:-12}"
[ -x "$PG_BIN/initdb" ] || fail "no initdb in PG_BIN=$PG_BIN"

# The cluster directory must belong to the user that runs postgres.
PGDIR="$(mktemp -d /var/tmp/convosphere-pgfault.XXXXXX)"
CLEANUPS+=("rm -rf '$PGDIR'")
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
PGPORT=55432
python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $PGPORT))" 2>/dev/null || PGPORT=$(free_port)
pg() { as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" "$@"; }
as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync -E UTF8 >"$WORK/initdb.log" 2>&1 ||
  { cat "$WORK/initdb.log"; fail "initdb failed"; }
PG_OPTS="-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
pg -o "$PG_OPTS" -w start >/dev/null
CLEANUPS+=("pg -m immediate stop >/dev/null 2>&1")
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
log "private PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PGPORT in $PGDIR"

binary "${PROFILE:-debug}"
start_service AUTH_DATABASE_URL="$DATABASE_URL"
# One account per loop that logs in: six logins would end the fifth-oldest session.
for who in fault logins refresh; do verified_user "$who@example.com"; done
ACCESS=$(access_token fault@example.com)
KEY=$(curl -sf "$BASE/v1/api-keys" -H "Authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d '{"name":"fault","scopes":["chat:read"]}' | json_field key)

# --- load: each loop logs "ms phase op status content-type code [detail]".
# The phase is replaced whole (rename), never read half-written.
phase() { echo "$1" >"$WORK/phase.new" && mv "$WORK/phase.new" "$WORK/phase"; }
phase up
: >"$WORK/requests.log"
now_ms() { date +%s%3N; }
# request OP CURL_ARGS…: one request; its answer body goes to $WORK/body.$BASHPID.
request() {
  local op="$1" phase started out status ctype code body="$WORK/body.$BASHPID"
  shift
  phase=$(cat "$WORK/phase")
  started=$(now_ms)
  out=$(curl -s --max-time 15 -o "$body" -w '%{http_code} %{content_type}' "$@" || echo "000 none")
  status=${out%% *}
  ctype=${out#* }
  code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("code","-"))' "$body" 2>/dev/null || echo -)
  echo "$started $phase $op $status ${ctype:-none} $code $(($(now_ms) - started)) ${DETAIL:-}" >>"$WORK/requests.log"
  LAST_STATUS=$status
}
loop_signups() {
  local n=0 email
  set +e
  while [ ! -f "$WORK/stop" ]; do
    n=$((n + 1))
    email="s$n@fault.example"
    DETAIL=$email request signup "$BASE/v1/auth/signup" -H 'content-type: application/json' \
      -d "{\"name\":\"Fault\",\"email\":\"$email\",\"password\":\"$PASSWORD\"}"
    sleep 0.2
  done
}
loop_logins() {
  set +e
  while [ ! -f "$WORK/stop" ]; do
    request login "$BASE/v1/auth/login" -H 'content-type: application/json' \
      -d "{\"email\":\"logins@example.com\",\"password\":\"$PASSWORD\"}"
    sleep 0.2
  done
}
loop_refresh() {
  local refresh body="$WORK/body.$BASHPID"
  set +e
  refresh=$(curl -sf "$BASE/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"refresh@example.com\",\"password\":\"$PASSWORD\"}" | json_field refresh_token)
  while [ ! -f "$WORK/stop" ]; do
    request refresh "$BASE/v1/auth/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$refresh\"}"
    if [ "$LAST_STATUS" = 200 ]; then refresh=$(json_field refresh_token <"$body"); fi
    sleep 0.2
  done
}
loop_authz() {
  set +e
  while [ ! -f "$WORK/stop" ]; do
    request authz_key "$BASE/v1/authz?scope=chat:read" -H "Authorization: Bearer $KEY"
    request me_token "$BASE/v1/me" -H "Authorization: Bearer $ACCESS"
    sleep 0.1
  done
}
loop_keys() {
  local body="$WORK/body.$BASHPID"
  set +e
  while [ ! -f "$WORK/stop" ]; do
    request key_create "$BASE/v1/api-keys" -H "Authorization: Bearer $ACCESS" -H 'content-type: application/json' \
      -d '{"name":"fault","scopes":["chat:read"]}'
    if [ "$LAST_STATUS" = 201 ]; then json_field id <"$body" >>"$WORK/keys-created"; fi
    sleep 0.2
  done
}
: >"$WORK/keys-created"
LOOPS=()
for loop in loop_signups loop_logins loop_refresh loop_authz loop_keys; do
  $loop &
  LOOPS+=($!)
done
CLEANUPS+=("touch '$WORK/stop'; kill ${LOOPS[*]} 2>/dev/null")

probe() { curl -s --max-time 15 -o "$WORK/probe" -w '%{http_code} %{content_type}' "$@" || echo "000 none"; }
wait_for_ready() {
  local want="$1" since
  since=$(now_ms)
  for _ in $(seq 1 600); do
    [ "$(probe "$BASE/readyz" | cut -d' ' -f1)" = "$want" ] && { echo $(($(now_ms) - since)); return 0; }
    sleep 0.05
  done
  fail "/readyz did not answer $want within 30 s"
}

sleep 5
log "load running: $(wc -l <"$WORK/requests.log") requests so far"

phase cut
STOP_AT=$(now_ms)
echo "$STOP_AT" >"$WORK/cut-at"
pg -m fast -w stop >/dev/null
STOP_MS=$(($(now_ms) - STOP_AT))
READYZ_503_MS=$(wait_for_ready 503)
read -r status ctype <<<"$(probe "$BASE/readyz")"
code=$(json_field code <"$WORK/probe")
[ "$status $ctype $code" = "503 application/problem+json unavailable" ] || fail "/readyz during the outage: $status $ctype $code"
log "PostgreSQL stopped in $STOP_MS ms; /readyz answered 503 unavailable $READYZ_503_MS ms after the stop"
sleep 1
phase down
PROBE_AT=$(now_ms)
probe "$BASE/readyz" >/dev/null
READYZ_DOWN_MS=$(($(now_ms) - PROBE_AT))
[ "$READYZ_DOWN_MS" -lt 2000 ] || fail "/readyz took $READYZ_DOWN_MS ms to answer during the outage"
log "/readyz answers 503 in $READYZ_DOWN_MS ms while the database is down"
sleep "$DOWN_SECONDS"
PID_BEFORE=$SERVICE_PID

phase recovering
START_AT=$(now_ms)
pg -o "$PG_OPTS" -w start >/dev/null
START_MS=$(($(now_ms) - START_AT))
READY_MS=$(wait_for_ready 200)
log "PostgreSQL started in $START_MS ms; /readyz answered 200 $READY_MS ms later, same service process ($SERVICE_PID)"
sleep 2
phase up2
sleep 6
touch "$WORK/stop"
wait "${LOOPS[@]}" 2>/dev/null || true
kill -0 "$PID_BEFORE" || fail "the service process ended"

# --- the answers, phase by phase.
python3 - "$WORK/requests.log" "$(cat "$WORK/cut-at")" <<'PY' || fail "some answers were not clean"
import collections, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
cut_at = int(sys.argv[2])
by_phase = collections.defaultdict(collections.Counter)
latency = collections.defaultdict(list)
bad = []
for fields in lines:
    started, phase, op, status, ctype, code, ms = fields[:7]
    # A request of the healthy phase still in flight at the cut belongs to the cut.
    if phase == "up" and int(started) + int(ms) >= cut_at:
        phase = "cut"
    by_phase[phase][f"{op} {status} {code}"] += 1
    latency[phase].append(int(ms))
    ok = status in ("200", "201", "202")
    clean_503 = status == "503" and ctype == "application/problem+json" and code == "unavailable"
    if phase in ("up", "up2") and not ok:
        bad.append(f"{phase}: {op} answered {status} {code} with the database up")
    elif phase in ("cut", "down", "recovering") and not (ok or clean_503):
        bad.append(f"{phase}: {op} answered {status} {ctype} {code}")
for phase in ("up", "cut", "down", "recovering", "up2"):
    counts = by_phase.get(phase, {})
    ms = sorted(latency.get(phase, [0]))
    print(f"  {phase:10} {sum(counts.values()):4} requests, max {ms[-1]} ms: " +
          ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items())))
down = by_phase.get("down", {})
if not any(" 503 unavailable" in k for k in down):
    bad.append("no request answered 503 unavailable during the outage")
for b in bad[:20]:
    print("  BAD", b)
sys.exit(1 if bad else 0)
PY

# --- nothing half-written.
cli() { env AUTH_DATA_DIR="$WORK/data" AUTH_DATABASE_URL="$DATABASE_URL" AUTH_LOG_FORMAT=json RUST_LOG=error "$BIN" "$@"; }
half=0
signups=0
refused=0
while read -r _ phase op status _ code _ email; do
  [ "$op" = signup ] || continue
  signups=$((signups + 1))
  if cli user events "$email" >"$WORK/events.txt" 2>/dev/null; then
    has_event=$(grep -c signup "$WORK/events.txt" || true)
    has_mail=$(grep -l "^To: .*<$email>" "$WORK"/data/outbox/*.eml 2>/dev/null | wc -l)
    if [ "$has_event" -eq 0 ] || [ "$has_mail" -eq 0 ]; then
      echo "  HALF-WRITTEN: $email ($phase, answered $status $code): account exists, signup events $has_event, mails $has_mail"
      half=$((half + 1))
    elif [ "$status" != 202 ]; then
      echo "  note: $email was refused with $status during $phase but was wholly made (answer lost at the cut)"
    fi
  elif [ "$status" = 202 ]; then
    echo "  LOST: $email was answered 202 but has no account"
    half=$((half + 1))
  else
    refused=$((refused + 1))
  fi
done <"$WORK/requests.log"
LISTED=$(curl -sf "$BASE/v1/api-keys" -H "Authorization: Bearer $ACCESS" |
  python3 -c 'import json,sys; print("\n".join(k["id"] for k in json.load(sys.stdin)["api_keys"]))' | sort)
CREATED=$(sort "$WORK/keys-created")
PHANTOM=$(comm -23 <(echo "$LISTED") <(echo "$CREATED") | grep -c . || true)
MISSING=$(comm -13 <(echo "$LISTED") <(echo "$CREATED") | grep -c . || true)
# The first key was made before the load.
PHANTOM=$((PHANTOM - 1))
[ "$MISSING" -eq 0 ] || { echo "  LOST: $MISSING keys answered 201 are not listed"; half=$((half + 1)); }
[ "$PHANTOM" -eq 0 ] || { echo "  HALF-WRITTEN: $PHANTOM keys exist whose creation was answered with an error"; half=$((half + 1)); }
LAST_REFRESH=$(awk '$3 == "refresh" {s=$4} END {print s}' "$WORK/requests.log")
[ "$LAST_REFRESH" = 200 ] || { echo "  the refresh chain broke: its last answer was $LAST_REFRESH"; half=$((half + 1)); }
log "signups: $signups tried, $refused refused and absent; keys: $(echo "$CREATED" | grep -c .) answered 201, all listed, $PHANTOM phantom"
[ "$half" -eq 0 ] || fail "$half half-written or lost writes"
# Expected errors: r2d2's failed connections, and the 503s logged as
# "backing service unavailable". An "internal error" (a 500) is not.
unexpected() { grep '"level":"ERROR"' "$WORK/service.log" | grep -v '"target":"r2d2"\|backing service unavailable'; }
if unexpected | grep -q .; then
  unexpected | head -10
  fail "the service logged errors other than the outage"
fi
grep -q panicked "$WORK/service.log" && fail "the service panicked"
log "ok: 503 unavailable during the outage, recovered without a restart, nothing half-written"
