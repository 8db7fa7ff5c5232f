# The two commands a newcomer needs: `make run` and `make test`.
# Both work on a fresh Debian machine: they find, start or install PostgreSQL.
PROFILE ?= debug
export PROFILE

.PHONY: run test bench soak bench-campaigns lint template-check migrate ci console test-browser bench-console lambda-build validate deploy coldstart

run:            ## the whole system on http://127.0.0.1:$${PORT:-3000}
	bash infra/scripts/run.sh

test:           ## every test, against a real PostgreSQL
	bash infra/scripts/test.sh

bench:          ## release build, N webhooks through the real HTTP path, prints req/s and p50/p99
	bash infra/scripts/bench.sh

soak:           ## a few minutes of mixed traffic: requests, errors, p50/p99 per interval, RSS start/end
	bash infra/scripts/soak.sh

bench-campaigns: ## 100,000 contacts: snapshot time, fan-out messages/s at the configured rate, peak RSS
	bash infra/scripts/bench-campaigns.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

template-check: ## offline check of the SAM template
	cfn-lint template.yaml

validate:       ## cfn-lint, sam validate --lint, and the connection budget / secret / alarm checks (no AWS credentials needed)
	cfn-lint template.yaml
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} sam validate --lint --template-file template.yaml --config-file $(CURDIR)/infra/samconfig.toml
	python3 infra/scripts/check-template.py template.yaml

lambda-build:   ## release arm64 binaries of every function in one cargo invocation (FUNCTIONS="a b" for some); prints time and sizes
	bash infra/scripts/lambda-build.sh

deploy:         ## lambda-build, then sam deploy of the prebuilt binaries (SAM_ENV=staging for the staging stack); migrations run on deploy
	bash infra/scripts/deploy.sh

coldstart:      ## init / first-invoke time and peak RSS of each release binary against a local Runtime API (needs `cargo build --release` first)
	bash infra/scripts/coldstart.sh

migrate:        ## apply migrations/ to $$DATABASE_URL
	cargo run --quiet -p migrate

ci:
	bash .ci/run

console:        ## build the web console (functions/console/web → dist, embedded by the console crate)
	bash infra/scripts/build-console.sh

test-browser:   ## the console: vitest, then Playwright in Debian's Chromium against a real `make run`
	bash infra/scripts/test-browser.sh

bench-console:  ## the console function's cold start (release binary, a local Runtime API stand-in)
	bash infra/scripts/build-console.sh
	cargo build --release --locked -p console
	cd functions/console/web && node bench/cold-start.mjs ../../../target/release/console 10
