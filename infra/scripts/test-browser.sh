#!/usr/bin/env bash
# The console's tests: vitest (front-end logic), then Playwright in Debian's
# Chromium against a real `make run` on its own port and a fresh database,
# with a dev admin, a local receiver of outbound webhooks (started by the
# tests) and the local Twilio sink. Screenshots land in .local/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.local/bin:$PATH"
root=$PWD

bash infra/scripts/ensure-tools.sh browser
bash infra/scripts/build-console.sh
(cd functions/console/web && npx vitest run)

port="${BROWSER_TEST_PORT:-3199}"
receiver_port="${BROWSER_RECEIVER_PORT:-$((port - 1))}"
db="${BROWSER_TEST_DB:-crm_browser_test}"
admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
psql "$admin_url" -qc "drop database if exists $db with (force)"
psql "$admin_url" -qc "create database $db"
export DATABASE_URL="${admin_url%/*}/$db"
export PORT="$port" CONSOLE_BUILD=0
export DEV_ADMIN_EMAIL="admin@example.com" DEV_ADMIN_PASSWORD="browser-test-admin-password"
export OUTBOUND_WEBHOOK_URLS="http://127.0.0.1:$receiver_port/hooks"
export OUTBOUND_WEBHOOK_SECRET="whsec_$(printf 'browser-test-outbound-secret-0123456789' | base64 -w0)"
export TWILIO_AUTH_TOKEN="browser-test-twilio-token"
export PUBLIC_BASE_URL="http://127.0.0.1:$port"
export MEDIA_DIR="$root/.local/browser-media"
mkdir -p .local/screenshots "$MEDIA_DIR"

log=.local/browser-run.log
bash infra/scripts/run.sh >"$log" 2>&1 &
runner=$!
trap 'kill "$runner" 2>/dev/null; wait "$runner" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$runner" 2>/dev/null || { echo "test-browser: the runner exited:" >&2; tail -n 40 "$log" >&2; exit 1; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "test-browser: no /health after 600 s" >&2; tail -n 40 "$log" >&2; exit 1; }

cd functions/console/web
CONSOLE_URL="http://127.0.0.1:$port" RECEIVER_PORT="$receiver_port" \
  SCREENSHOT_DIR="$root/.local/screenshots" npx playwright test "$@"
