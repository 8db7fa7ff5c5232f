#!/usr/bin/env bash
# `make bench-campaigns`: the campaigns benchmark (functions/campaign-worker/
# benches/campaigns.rs), release build, against the PostgreSQL
# ensure-postgres finds or starts. Seeds BENCH_CONTACTS (100000) contacts in a
# fresh migrated database, times the snapshot, fans the campaign out at
# BENCH_RATE (1000) messages/s through the send worker's local sink, and
# prints the figures with the peak RSS. No assertions: figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
admin_url="$(bash infra/scripts/ensure-postgres.sh | tail -n 1)"
export TEST_DATABASE_URL="$admin_url"
cargo bench --locked -p campaign-worker --bench campaigns
