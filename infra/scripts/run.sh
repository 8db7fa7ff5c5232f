#!/usr/bin/env bash
# `make run`: PostgreSQL (found, started or installed), migrations, then every
# HTTP function on one port with the workers in-process.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile="${PROFILE:-debug}"
command -v cargo >/dev/null || { echo "cargo is required (install Rust with rustup)" >&2; exit 1; }

if [[ -z "${DATABASE_URL:-}" ]]; then
  admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
  db="${LOCAL_DB_NAME:-crm_local}"
  # The name goes into SQL below: keep it a plain identifier.
  [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "LOCAL_DB_NAME must match [a-z_][a-z0-9_]*" >&2; exit 1; }
  if ! psql "$admin_url" -tAc "select 1 from pg_database where datname = '$db'" | grep -q 1; then
    psql "$admin_url" -qc "create database $db"
  fi
  export DATABASE_URL="${admin_url%/*}/$db"
fi
# A DATABASE_URL given by the caller is used as is: if it does not answer,
# the runner stops at the migration step naming the connection error.

# Local defaults; anything already in the environment wins.
export APP_ENV="${APP_ENV:-development}"
export HMAC_SHARED_SECRET_INSTANTLY="${HMAC_SHARED_SECRET_INSTANTLY:-dev-instantly-secret}"
export JWT_SECRET="${JWT_SECRET:-dev-jwt-secret-0123456789abcdef0123}"
export HMAC_SHARED_SECRET_CALCOM="${HMAC_SHARED_SECRET_CALCOM:-dev-calcom-secret}"
export TWILIO_AUTH_TOKEN="${TWILIO_AUTH_TOKEN:-dev-twilio-token}"
# The Contact2Sale webhook token (X-Webhook-Token header or ?token= on the URL).
export WEBHOOK_SECRET="${WEBHOOK_SECRET:-dev-c2s-token}"
# The URL Twilio signs; behind a tunnel (ngrok, cloudflared) set it to the tunnel's https URL.
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:${PORT:-3000}}"
# Signs (send worker) and verifies (unsubscribe route) campaign unsubscribe links.
export UNSUBSCRIBE_SECRET="${UNSUBSCRIBE_SECRET:-dev-unsubscribe-secret-0123456789}"
# One pool shared by every function and worker of the runner (docs/reliability.md).
export PG_POOL_MAX="${PG_POOL_MAX:-24}"
export LOG_FORMAT="${LOG_FORMAT:-text}"
export LOG_LEVEL="${LOG_LEVEL:-info}"
export MEDIA_DIR="${MEDIA_DIR:-$PWD/.local/media}"
export PORT="${PORT:-3000}"

# The web console served at / (CONSOLE_BUILD=0 skips it: the console then
# serves a page saying how to build it).
if [[ "${CONSOLE_BUILD:-1}" != 0 ]]; then
  bash infra/scripts/ensure-tools.sh web >/dev/null
  bash infra/scripts/build-console.sh
fi

if [[ "$profile" == "release" ]]; then
  cargo build --release --locked -p local-runner
  exec target/release/local-runner
else
  cargo build --locked -p local-runner
  exec target/debug/local-runner
fi
