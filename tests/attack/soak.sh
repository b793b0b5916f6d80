#!/usr/bin/env bash
# Soak: SOAK_SECONDS (300) of mixed load against the release binary — logins,
# refreshes, /v1/authz with tokens and API keys (allowed and denied), /v1/me,
# key creation, rotation and revocation (a retired key must be refused at
# once) — from SOAK_WORKERS (8) closed-loop workers, one account each.
# Fails on any unexpected answer, on a lost write (a key not listed with its
# status; fewer or more login_succeeded / api_key_* events than successes),
# on an error or panic in the service log, and when the resident memory grew
# more than SOAK_MAX_RSS_GROWTH (20) percent between the first minute and the
# end.
#
#   bash tests/attack/soak.sh                      # ~5.5 minutes after the build
#   SOAK_SECONDS=60 bash tests/attack/soak.sh      # a quick one
#
# SOAK_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres runs it on a
# fresh database of that PostgreSQL server instead of SQLite; SOAK_SETTINGS
# adds service settings ("AUTH_ACCESS_TOKEN_TTL=60s"); AUTH_BIN and
# LOADGEN_BIN use given binaries instead of building them.
source "$(dirname "$0")/lib.sh"

DURATION="${SOAK_SECONDS:-300}"
WORKERS="${SOAK_WORKERS:-8}"
MAX_GROWTH="${SOAK_MAX_RSS_GROWTH:-20}"
BASELINE_AT=60
[ "$DURATION" -le 90 ] && BASELINE_AT=$((DURATION / 3))

if [ -z "${AUTH_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  log "building the release binary and the load generator"
  (cd "$ROOT" && cargo build --release -q --bin convosphere-auth --example soak -p convosphere-auth)
  cp "$CARGO_TARGET_DIR/release/convosphere-auth" "$WORK/convosphere-auth"
  cp "$CARGO_TARGET_DIR/release/examples/soak" "$WORK/loadgen"
else
  cp "$AUTH_BIN" "$WORK/convosphere-auth"
  cp "$LOADGEN_BIN" "$WORK/loadgen"
fi
BIN="$WORK/convosphere-auth"

# Access tokens live 60 s instead of 15 min: the service caches each
# verified token until its `exp`, so with the default the cache grows for 15
# minutes (bounded: 100,000 entries) and a 5-minute soak could not tell that
# bounded growth from a leak. At 60 s every cache is in its steady state
# before the first-minute sample.
SETTINGS=(AUTH_MAX_SESSIONS=5 AUTH_ACCESS_TOKEN_TTL=60s ${SOAK_SETTINGS:-})
if [ -n "${SOAK_POSTGRES:-}" ]; then
  # A fresh database on that server, dropped at the end.
  DB="convosphere_soak_$$"
  psql -q "$SOAK_POSTGRES" -c "CREATE DATABASE $DB" >/dev/null
  CLEANUPS+=("psql -q '$SOAK_POSTGRES' -c 'DROP DATABASE IF EXISTS $DB WITH (FORCE)' >/dev/null")
  SETTINGS+=(AUTH_DATABASE_URL="${SOAK_POSTGRES%/*}/$DB")
fi
start_service "${SETTINGS[@]}"
for n in $(seq 0 $((WORKERS - 1))); do verified_user "$n@soak.example"; done
rss() { awk '/^VmRSS/{print $2}' "/proc/$SERVICE_PID/status"; }
log "service pid $SERVICE_PID on $BASE, RSS $(rss) kB before load; $WORKERS workers for $DURATION s"

"$WORK/loadgen" soak "$BASE" "@soak.example" "$PASSWORD" "$WORKERS" "$DURATION" >"$WORK/loadgen.txt" 2>&1 &
LOADGEN_PID=$!
CLEANUPS+=("kill $LOADGEN_PID 2>/dev/null")
START=$SECONDS
BASELINE=""
END=""
echo "seconds,rss_kb,threads" >"$WORK/rss.csv"
while kill -0 "$LOADGEN_PID" 2>/dev/null; do
  sleep 1
  elapsed=$((SECONDS - START))
  kill -0 "$SERVICE_PID" 2>/dev/null || fail "the service died under load"
  [ $((elapsed % 10)) -eq 0 ] && echo "$elapsed,$(rss),$(ls /proc/$SERVICE_PID/task | wc -l)" >>"$WORK/rss.csv"
  if [ -z "$BASELINE" ] && [ "$elapsed" -ge "$BASELINE_AT" ]; then
    BASELINE=$(rss)
    log "RSS after $elapsed s: $BASELINE kB"
  fi
  # The end of the load, before the load generator reads everything back.
  if [ -z "$END" ] && [ "$elapsed" -ge $((DURATION - 1)) ]; then END=$(rss); fi
done
set +e
wait "$LOADGEN_PID"
LOADGEN_STATUS=$?
set -e
AFTER=$(rss)
END=${END:-$AFTER}
cat "$WORK/loadgen.txt"
GROWTH=$(python3 -c "print(round(($END - $BASELINE) * 100 / $BASELINE, 1))")
log "RSS after $BASELINE_AT s: $BASELINE kB; at the end of the load: $END kB; growth $GROWTH % (limit $MAX_GROWTH %); after reading back every key and event: $AFTER kB"
log "RSS every 10 s (kB): $(tail -n +2 "$WORK/rss.csv" | cut -d, -f2 | xargs)"
log "threads every 10 s: $(tail -n +2 "$WORK/rss.csv" | cut -d, -f3 | xargs)"

[ "$LOADGEN_STATUS" -eq 0 ] || fail "the load saw unexpected answers or lost writes"
python3 -c "import sys; sys.exit(0 if $GROWTH <= $MAX_GROWTH else 1)" || fail "RSS grew $GROWTH % (> $MAX_GROWTH %)"
if grep '"level":"ERROR"\|panicked' "$WORK/service.log" | grep -q .; then
  grep '"level":"ERROR"\|panicked' "$WORK/service.log" | head -20
  fail "the service logged errors or panics"
fi
curl -sf "$BASE/readyz" >/dev/null || fail "/readyz does not answer 200 after the soak"
log "ok: soak passed"
