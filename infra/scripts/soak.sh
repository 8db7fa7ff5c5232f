#!/usr/bin/env bash
# `make soak`: the local runner (PROFILE=release by default) against its own
# database, driven for a few minutes by infra/bench/soak.py with mixed
# traffic on loopback. Prints requests, errors, p50/p99 per interval and RSS
# at start and end. Figures only.
#   SOAK_SECONDS (180) SOAK_RATE (100 req/s) SOAK_INTERVAL (15) SOAK_PORT (3950)
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${SOAK_SECONDS:-180}"
rate="${SOAK_RATE:-100}"
interval="${SOAK_INTERVAL:-15}"
port="${SOAK_PORT:-3950}"
profile="${PROFILE:-release}"

admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
db="${SOAK_DB:-crm_soak}"
psql "$admin_url" -qc "drop database if exists $db with (force)"
psql "$admin_url" -qc "create database $db"

export DATABASE_URL="${admin_url%/*}/$db"
export APP_ENV=development LOG_LEVEL=warn PORT="$port"
export HMAC_SHARED_SECRET_INSTANTLY=soak-secret HMAC_SHARED_SECRET_CALCOM=soak-calcom-secret
export JWT_SECRET=soak-jwt-secret-0123456789abcdef0123 TWILIO_AUTH_TOKEN=soak-twilio-token
export PUBLIC_BASE_URL="http://127.0.0.1:$port" WEBHOOK_SECRET=soak-c2s-token
export UNSUBSCRIBE_SECRET=soak-unsubscribe-secret-0123456789
export MEDIA_DIR="$PWD/.local/soak-media"
export PG_POOL_MAX="${PG_POOL_MAX:-24}"

if [[ "$profile" == "release" ]]; then
  cargo build --release --locked -p local-runner
  bin=target/release/local-runner
else
  cargo build --locked -p local-runner
  bin=target/debug/local-runner
fi
mkdir -p .local
"$bin" >.local/soak-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null

echo "== make soak: $profile build, pool $PG_POOL_MAX, $(nproc) cores =="
python3 infra/bench/soak.py "http://127.0.0.1:$port" "$server" "$seconds" "$rate" "$interval"
echo "connections held by the runner at the end: $(psql "$admin_url" -tAc "select count(*) from pg_stat_activity where datname = '$db'")"
