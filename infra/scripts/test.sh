#!/usr/bin/env bash
# `make test`: every test against a real PostgreSQL (each test gets its own
# database, copied from a migrated template) and a local AWS-compatible
# server (moto) for the SQS and S3 adapters.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Tools installed for a non-root user are linked here.
export PATH="$HOME/.local/bin:$PATH"

bash infra/scripts/ensure-tools.sh
admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
export TEST_DATABASE_URL="$admin_url"
# Leftovers of an interrupted run.
bash infra/scripts/drop-test-dbs.sh "$admin_url"

mkdir -p .local
set +e
cargo test --workspace --all-targets --locked "$@" 2>&1 | tee .local/test-output.txt
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' \
  .local/test-output.txt | tee .local/test-summary.txt
exit "$status"
