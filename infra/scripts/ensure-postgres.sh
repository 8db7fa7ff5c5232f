#!/usr/bin/env bash
# Make sure a PostgreSQL server is reachable and print an admin connection URL
# as the LAST line on stdout; all progress/diagnostics go to stderr.
#
#   url=$(infra/scripts/ensure-postgres.sh)      # executed
#   . infra/scripts/ensure-postgres.sh >/dev/null # sourced from bash: also exports DATABASE_URL
#
# Order tried:
#   (a) $DATABASE_URL, if it answers `select 1`;
#   (b) a server on 127.0.0.1:5432, user postgres, trust auth;
#   (c) the stopped Debian cluster on port 5432 (pg_ctlcluster ... start), then (b) again;
#   (d) a private throwaway cluster in $REPO/.local/pg on 127.0.0.1:55432 (apt-installs
#       postgresql first if no initdb exists). Reused if already initialised/running.
#
# Knobs:
#   ENSURE_PG_SKIP_SYSTEM=1  skip (b) and (c) and go straight to the private cluster;
#                            used to test (d) on machines that already run PostgreSQL.
#
# Needs bash >= 4.4 (Debian 12 has 5.2). Sourcing needs bash too, not sh/dash.

# The body runs in a subshell so `set -euo pipefail`, traps and `exit` never leak
# into a shell that sources this file.
_ensure_pg_main() (
  set -euo pipefail
  # Keep stdout clean for the URL: fd 3 is the real stdout, everything else -> stderr.
  exec 3>&1 1>&2

  local repo pgdir sockdir psql_bin initdb_bin pg_ctl_bin
  local -r port=55432
  local -r system_url='postgres://postgres@127.0.0.1:5432/postgres'
  local -r private_url="postgres://postgres@127.0.0.1:${port}/postgres"
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
  local -r link="$repo/.local/pg"
  pgdir=$link   # final location decided in (d)
  local apt_updated=0

  log() { printf 'ensure-postgres: %s\n' "$*" >&2; }
  die() { log "ERROR: $*"; exit 1; }
  emit() { printf '%s\n' "$1" >&3; exit 0; }
  is_root() { [[ $(id -u) -eq 0 ]]; }

  apt_install() {
    local sudo=()
    command -v apt-get >/dev/null || die "no apt-get; install '$*' by hand"
    if ! is_root; then
      if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
      else
        die "need root (or passwordless sudo) to apt-get install $*"
      fi
    fi
    log "apt-get install $*"
    # Lock timeout: another script (ensure-tools.sh) may be running apt at the same time.
    if [[ $apt_updated -eq 0 ]]; then
      "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
      apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 install -y -qq --no-install-recommends "$@"
    hash -r
  }

  # Newest /usr/lib/postgresql/<ver>/bin/NAME (Debian keeps server binaries off PATH).
  lib_bin() {
    local f best=''
    for f in /usr/lib/postgresql/*/bin/"$1"; do
      [[ -x $f ]] || continue
      if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$f" | sort -V | tail -n1) == "$f" ]]; then
        best=$f
      fi
    done
    [[ -n $best ]] && printf '%s\n' "$best"
  }

  find_psql() {
    psql_bin=$(command -v psql || lib_bin psql || true)
  }

  # Prints 0 on success: the server at URL accepts us and runs `select 1`.
  probe() {
    local out
    # -X: ignore ~/.psqlrc; -w: never prompt for a password; short timeout keeps it fast.
    out=$(PGCONNECT_TIMEOUT=3 "$psql_bin" -X -w -q -tA -d "$1" -c 'select 1' </dev/null 2>/dev/null) || return 1
    [[ $out == 1 ]]
  }

  # Postgres refuses to run as root, so server-side commands run as the postgres OS user.
  as_pg() {
    if ! is_root; then
      "$@"
    elif command -v runuser >/dev/null; then
      (cd / && runuser -u postgres -- "$@")
    else
      (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
  }

  ensure_pg_user() {
    is_root || return 0
    getent passwd postgres >/dev/null && return 0
    log "creating system user postgres"
    useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
      --shell /bin/sh postgres
  }

  find_server_bins() {
    # Prefer the binaries matching an existing cluster's major version.
    local ver='' dir
    [[ -s $pgdir/PG_VERSION ]] && ver=$(<"$pgdir/PG_VERSION")
    dir="/usr/lib/postgresql/$ver/bin"
    if [[ -n $ver && -x $dir/initdb && -x $dir/pg_ctl ]]; then
      initdb_bin=$dir/initdb pg_ctl_bin=$dir/pg_ctl
      return 0
    fi
    initdb_bin=$(lib_bin initdb || command -v initdb || true)
    pg_ctl_bin=''
    [[ -n $initdb_bin ]] && pg_ctl_bin=$(dirname "$initdb_bin")/pg_ctl
    [[ -x $pg_ctl_bin ]] || pg_ctl_bin=$(command -v pg_ctl || true)
    [[ -n $initdb_bin && -n $pg_ctl_bin ]]
  }

  # ---- client tools ----------------------------------------------------------
  find_psql
  if [[ -z $psql_bin ]]; then
    apt_install postgresql-client   # brings psql and pg_isready
    find_psql
    [[ -n $psql_bin ]] || die "psql still not found after installing postgresql-client"
  fi

  # ---- (a) $DATABASE_URL -----------------------------------------------------
  if [[ -n ${DATABASE_URL:-} ]]; then
    if probe "$DATABASE_URL"; then
      emit "$DATABASE_URL"
    fi
    log "DATABASE_URL is set but does not answer; looking for another server"
  fi

  # ---- (b)/(c) system server on 5432 -----------------------------------------
  if [[ ${ENSURE_PG_SKIP_SYSTEM:-0} != 1 ]]; then
    probe "$system_url" && emit "$system_url"

    if command -v pg_lsclusters >/dev/null && command -v pg_ctlcluster >/dev/null; then
      local ver name cport status _rest started=0
      while read -r ver name cport status _rest; do
        # Only a stopped "main" cluster on 5432 can satisfy (b).
        [[ $name == main && $cport == 5432 && $status == down* ]] || continue
        log "starting Debian cluster $ver/main"
        # Close fds 3 (our stdout) and 9 so the daemon can't hold a caller's pipe open.
        if pg_ctlcluster --skip-systemctl-redirect "$ver" main start 3>&- 9>&-; then
          started=1
        else
          log "could not start cluster $ver/main (not root?)"
        fi
      done < <(pg_lsclusters -h 2>/dev/null || true)
      if [[ $started -eq 1 ]] && probe "$system_url"; then
        emit "$system_url"
      fi
    fi
    log "no trust-auth server on 127.0.0.1:5432; using a private cluster on port $port"
  fi

  # ---- (d) private cluster ---------------------------------------------------
  probe "$private_url" && emit "$private_url"   # fast path: already running

  mkdir -p "$repo/.local"
  # Serialise concurrent callers (e.g. parallel make targets) around initdb/start.
  exec 9>"$repo/.local/pg.lock"
  if command -v flock >/dev/null; then
    flock -w 180 9 || die "timed out waiting for $repo/.local/pg.lock"
  fi
  probe "$private_url" && emit "$private_url"   # another caller may have started it

  if ! find_server_bins; then
    apt_install postgresql
    find_server_bins || die "initdb/pg_ctl not found even after installing postgresql"
  fi
  ensure_pg_user

  # Data dir: $REPO/.local/pg, unless the postgres user can't reach it (e.g. repo under
  # /root, mode 700); then keep the data in /var/tmp and leave a symlink in the repo.
  if [[ -L $link ]]; then
    pgdir=$(readlink -f "$link")
    mkdir -p "$pgdir"
  else
    mkdir -p "$link"
    pgdir=$link
  fi
  if is_root; then
    chown postgres: "$pgdir"
    # access(2) also fails when a parent directory isn't searchable.
    if ! as_pg test -w "$pgdir"; then
      local alt
      alt="/var/tmp/pg-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)"
      log "postgres user cannot reach $pgdir; using $alt (symlinked from $link)"
      if [[ -L $link ]]; then rm -f "$link"; else rm -rf "$link"; fi
      mkdir -p "$alt"
      chown postgres: "$alt"
      ln -s "$alt" "$link"
      pgdir=$alt
    fi
  fi

  find_server_bins || true   # re-pick binaries now that pgdir is final
  local data_ver='' bin_ver
  [[ -s $pgdir/PG_VERSION ]] && data_ver=$(<"$pgdir/PG_VERSION")
  # "pg_ctl (PostgreSQL) 15.13 (Debian ...)" -> 15
  bin_ver=$("$pg_ctl_bin" --version | sed -n 's/^[^)]*) \([0-9]*\).*/\1/p')
  if [[ -n $data_ver && $data_ver != "$bin_ver" ]]; then
    # Throwaway data from another major version: start over rather than upgrade.
    log "cluster in $pgdir is version $data_ver but binaries are $bin_ver; re-initialising"
    as_pg "$pg_ctl_bin" -D "$pgdir" -m immediate stop 3>&- 9>&- >/dev/null 2>&1 || true
    find "$pgdir" -mindepth 1 -delete
  fi

  if [[ ! -s $pgdir/PG_VERSION ]]; then
    # A half-made dir from an interrupted run would make initdb refuse; it's throwaway.
    find "$pgdir" -mindepth 1 -delete
    log "initdb $pgdir"
    as_pg "$initdb_bin" -D "$pgdir" -U postgres -A trust --no-sync -E UTF8 >/dev/null
  fi

  # Unix socket paths are limited to ~107 bytes; fall back to /tmp for deep checkouts.
  sockdir=$pgdir
  if (( ${#pgdir} + 20 > 100 )); then sockdir=/tmp; fi

  # Start it unless running, then wait until it answers. Loop rather than start once:
  # after a crash the old postmaster can linger as a zombie for a few seconds (slow
  # reaping init in containers), making `status` say "running" and `start` refuse.
  local _i started=0 failures=0
  for _i in $(seq 1 60); do
    probe "$private_url" && emit "$private_url"
    if ! as_pg "$pg_ctl_bin" -D "$pgdir" status >/dev/null 2>&1; then
      log "starting private cluster on 127.0.0.1:$port"
      # 3>&- 9>&-: the postmaster must not inherit our stdout pipe or the lock.
      if as_pg "$pg_ctl_bin" -D "$pgdir" -w -t 60 -l "$pgdir/log" \
          -o "-k '$sockdir' -p $port -c listen_addresses=127.0.0.1 -c fsync=off" \
          start >/dev/null 3>&- 9>&-; then
        started=1
        continue   # probe right away
      fi
      failures=$((failures + 1))
      (( failures < 2 )) || break
      log "start failed; retrying (log: $pgdir/log)"
    fi
    sleep 0.5
  done
  tail -n 20 "$pgdir/log" >&2 || true
  if [[ $started -eq 0 ]]; then
    die "private cluster in $pgdir failed to start (log: $pgdir/log)"
  fi
  die "private cluster in $pgdir is running but does not answer on port $port"
)

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
  # Sourced: export the URL for the caller, and still print it.
  if _ensure_pg_url=$(_ensure_pg_main); then
    export DATABASE_URL=$_ensure_pg_url
    printf '%s\n' "$DATABASE_URL"
    unset -f _ensure_pg_main; unset _ensure_pg_url
  else
    unset -f _ensure_pg_main; unset _ensure_pg_url
    return 1
  fi
else
  set -euo pipefail
  _ensure_pg_main
fi
