#!/usr/bin/env bash
# Builds the web console (functions/console/web → dist/, embedded by the
# console crate): npm ci when the lockfile changed, the API types from
# openapi.json, tsc, vite. Node >= 20.19 (ensure-tools.sh web installs it).
set -euo pipefail
cd "$(dirname "$0")/../../functions/console/web"
export PATH="$HOME/.local/bin:$PATH"
command -v npm >/dev/null || { echo "build-console: npm missing (bash infra/scripts/ensure-tools.sh web)" >&2; exit 1; }
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
echo "build-console: functions/console/web/dist built ($(du -sh dist | cut -f1))" >&2
