#!/usr/bin/env bash
# Drop every database whose name starts with crmt_ (leftovers of interrupted test
# runs) on the server behind an admin URL.
#   infra/scripts/drop-test-dbs.sh postgres://postgres@127.0.0.1:5432/postgres
# Defaults to $DATABASE_URL when no argument is given.
set -euo pipefail

url=${1:-${DATABASE_URL:-}}
if [[ -z $url || $# -gt 1 ]]; then
  echo "usage: $0 ADMIN_DATABASE_URL" >&2
  exit 2
fi

# -X: ignore ~/.psqlrc; -w: never prompt; ON_ERROR_STOP: make SQL errors fail psql.
q() { psql "$url" -X -w -q -v ON_ERROR_STOP=1 -tAc "$1" </dev/null; }

# left() rather than LIKE 'crmt_%': '_' is a LIKE wildcard. The server quotes the
# names (quote_ident/quote_literal) so odd characters can't break the SQL. Skip the
# database we're connected to: it can't be dropped from here.
dbs=$(q "select concat_ws(E'\\t', quote_ident(datname), datistemplate::int, quote_literal(datname))
         from pg_database
         where left(datname, 5) = 'crmt_' and datname <> current_database()
         order by 1")
if [[ -z $dbs ]]; then
  echo "drop-test-dbs: nothing to drop" >&2
  exit 0
fi

# WITH (FORCE) (PostgreSQL >= 13) kicks out connections a killed test run left behind.
force=''
if (( $(q 'show server_version_num') >= 130000 )); then force=' WITH (FORCE)'; fi

n=0 failed=0
while IFS=$'\t' read -r db is_template lit; do
  [[ -n $db ]] || continue
  # A template database (e.g. a migrated test template) can't be dropped as is.
  if [[ $is_template == 1 ]]; then
    q "ALTER DATABASE $db IS_TEMPLATE false" || true
  fi
  # One statement per psql call: DROP DATABASE can't run inside a transaction block.
  if [[ -z $force ]]; then
    q "select pg_terminate_backend(pid) from pg_stat_activity
       where datname = $lit and pid <> pg_backend_pid()" >/dev/null || true
  fi
  if q "DROP DATABASE IF EXISTS $db$force"; then
    n=$((n + 1))
  else
    echo "drop-test-dbs: failed to drop $db" >&2
    failed=1
  fi
done <<<"$dbs"

echo "drop-test-dbs: dropped $n database(s)" >&2
exit "$failed"
