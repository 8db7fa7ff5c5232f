#!/usr/bin/env bash
# make deploy: build every function once (make lambda-build), point the
# template at the binaries, and sam deploy it with infra/samconfig.toml.
# Migrations run during the deploy (the MigrationsOnDeploy custom resource
# invokes the migrate function; a failed migration fails and rolls back the
# deploy). See docs/deploy.md.
#
#   make deploy                  # stack from [default] in infra/samconfig.toml
#   SAM_ENV=staging make deploy  # [staging]
#   SKIP_BUILD=1 make deploy     # reuse target/lambda/*
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.local/bin:$PATH"

command -v sam >/dev/null 2>&1 || { echo "deploy: sam is not installed (bash infra/scripts/ensure-tools.sh)" >&2; exit 1; }
started=$SECONDS
if [[ -z ${SKIP_BUILD:-} ]]; then
  bash infra/scripts/lambda-build.sh
fi
python3 infra/scripts/check-template.py template.yaml
template=$(python3 infra/scripts/prebuilt-template.py)
# An absolute --config-file: a relative one is resolved against the
# directory of --template-file (.aws-sam/prebuilt), not the current one.
sam deploy --template-file "$template" --config-file "$PWD/infra/samconfig.toml" \
  --config-env "${SAM_ENV:-default}" "$@"
echo "deploy: done in $((SECONDS - started)) s (migrations ran in the stack: MigrationsOnDeploy)"
