#!/usr/bin/env bash
# make coldstart: init time, first-invoke time and peak RSS of every
# function's release binary against a local Runtime API (coldstart.py), and
# the binary sizes. Target: init < 15 ms p50, RSS < 25 MB.
#
# Needs the release binaries for this machine's architecture first (a long
# build: fat LTO, one codegen unit):
#   cargo build --release --bins
# and a migrated local database (make migrate). The configuration is that of
# `make run`'s functions outside production; override any of it from the
# environment. RUNS=5 cold starts per function; arguments: function names.
#
# These are host (x86_64 or arm64) figures of the same code: Lambda's are of
# the arm64 build and include the sandbox's own start.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${LOCAL_DB_NAME:-crm}}
export APP_ENV=${APP_ENV:-test}
export LOG_LEVEL=${LOG_LEVEL:-warn}
export HMAC_SHARED_SECRET_INSTANTLY=${HMAC_SHARED_SECRET_INSTANTLY:-test-instantly-secret}
export HMAC_SHARED_SECRET_CALCOM=${HMAC_SHARED_SECRET_CALCOM:-test-calcom-secret}
export TWILIO_AUTH_TOKEN=${TWILIO_AUTH_TOKEN:-test-twilio-token}
export WEBHOOK_SECRET=${WEBHOOK_SECRET:-test-c2s-token}
export JWT_SECRET=${JWT_SECRET:-test-jwt-secret}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-https://crm.example.com}
# outbox-relay and media-worker also need queues / a bucket (docs/lambda.md);
# without them they report an init error, which the table shows.
exec python3 infra/scripts/coldstart.py "$@"
