#!/usr/bin/env bash
# Release binaries of every Lambda function for arm64 (Graviton), in ONE cargo
# invocation (shared dependencies compiled once, binaries linked in parallel
# as cores allow), with cargo's progress on the terminal and the elapsed time
# and binary sizes printed at the end.
#
#   make lambda-build                       # all functions
#   FUNCTIONS="migrate outbox-relay" make lambda-build
#
# Output: target/lambda/<function>/bootstrap (what `make deploy` packages).
# Needs cargo-lambda (pip install cargo-lambda: brings zig, the cross-linker;
# no Docker). cargo-lambda adds the aarch64-unknown-linux-gnu target through
# rustup when it is missing (a one-time download).
#
# The release profile pins panic = "unwind" (docs/deploy.md): cargo-lambda
# would otherwise add panic = "abort", which crm_platform refuses to compile.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v cargo-lambda >/dev/null 2>&1 || {
  echo "lambda-build: cargo-lambda is not installed: pip install cargo-lambda (or see https://www.cargo-lambda.info)" >&2
  exit 1
}

# Every crate under functions/ is one Lambda (its package name = its binary).
all=$(for m in functions/*/Cargo.toml; do basename "$(dirname "$m")"; done)
functions=${FUNCTIONS:-$all}
args=()
for f in $functions; do args+=(--bin "$f"); done
profile=${LAMBDA_PROFILE:-release}

n=$(wc -w <<<"$functions")
echo "lambda-build: $n function(s), profile $profile, arm64: $(echo $functions)"
started=$SECONDS
# --bin once per function: one cargo build for all of them.
cargo lambda build --arm64 --profile "$profile" --locked "${args[@]}"
elapsed=$((SECONDS - started))

echo
echo "lambda-build: built $n function(s) in ${elapsed} s"
printf '  %-22s %10s\n' function bytes
for f in $functions; do
  bin=target/lambda/$f/bootstrap
  if [[ -f $bin ]]; then
    printf '  %-22s %10s\n' "$f" "$(stat -c %s "$bin")"
  else
    printf '  %-22s %10s\n' "$f" missing
  fi
done
