#!/usr/bin/env bash
# `make bench`: the release build of the local runner against PostgreSQL,
# driven by wrk over loopback. Prints requests/s and p50/p99 latency of the
# Instantly webhook, and the same for GET /health measured in the same run
# as the reference (HTTP stack without the database). No assertions: figures.
#   BENCH_SECONDS (15) BENCH_CONNECTIONS (32) BENCH_THREADS (2) BENCH_PORT (3900)
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${BENCH_SECONDS:-15}"
conns="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"
port="${BENCH_PORT:-3900}"

bash infra/scripts/ensure-tools.sh wrk
admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
db=crm_bench
psql "$admin_url" -qc "drop database if exists $db with (force)"
psql "$admin_url" -qc "create database $db"

export DATABASE_URL="${admin_url%/*}/$db"
export APP_ENV=development LOG_LEVEL=warn PORT="$port"
export HMAC_SHARED_SECRET_INSTANTLY=bench-secret
export HMAC_SHARED_SECRET_CALCOM=bench-calcom-secret
# The runner mounts every function, so each needs its configuration.
export JWT_SECRET=bench-jwt-secret-0123456789abcdef01 TWILIO_AUTH_TOKEN=bench-twilio-token PUBLIC_BASE_URL="http://127.0.0.1:$port"
export WEBHOOK_SECRET=bench-c2s-token
export MEDIA_DIR="$PWD/.local/bench-media"
export PG_POOL_MAX="${PG_POOL_MAX:-16}"


cargo build --release --locked -p local-runner
mkdir -p .local
target/release/local-runner >.local/bench-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null

run_wrk() { # name script path
  # A fresh run id per wrk invocation: every request is a new reply.
  BENCH_RUN_ID="$1-$(date +%s%N)" wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "$2" "http://127.0.0.1:$port$3" >".local/bench-$1.txt"
  local rps line
  rps="$(awk '/Requests\/sec/ {print $2}' ".local/bench-$1.txt")"
  line="$(grep '^BENCH' ".local/bench-$1.txt")"
  echo "$rps $line"
}

# Warm-up: pool connections, prepared statements, first inserts.
BENCH_RUN_ID="warmup-$(date +%s%N)" wrk -t1 -c4 -d2s -s infra/bench/instantly.lua "http://127.0.0.1:$port" >/dev/null

read -r ref_rps ref_line < <(run_wrk health infra/bench/health.lua /health)
read -r rps line < <(run_wrk instantly infra/bench/instantly.lua /)

fsync="$(psql "$DATABASE_URL" -tAc "show fsync")"
sync_commit="$(psql "$DATABASE_URL" -tAc "show synchronous_commit")"
processed="$(psql "$DATABASE_URL" -tAc "select count(*) from webhook_events where status = 'processed'")"
contacts="$(psql "$DATABASE_URL" -tAc "select count(*) from contacts")"
cores="$(nproc)"

echo
echo "== make bench: ${seconds}s per run, ${conns} connections, ${threads} wrk threads, ${cores} cores, pool ${PG_POOL_MAX} =="
printf '%-38s %10s  %s\n' "reference GET /health" "$ref_rps req/s" "${ref_line#BENCH }"
printf '%-38s %10s  %s\n' "POST /crm/webhooks/instantly/reply" "$rps req/s" "${line#BENCH }"
awk -v a="$rps" -v b="$ref_rps" 'BEGIN { printf "%-38s %10.3f\n", "ratio webhook / reference", a / b }'
echo "rows: $processed processed webhook events, $contacts contacts (warm-up included)"
echo "postgres: fsync=$fsync synchronous_commit=$sync_commit (the server ensure-postgres found: $admin_url)"
echo "target for the webhook on this machine: >= 1500 req/s"
