# The two commands a newcomer needs: `make run` and `make test`.
# Both work on a fresh Debian machine: they find, start or install PostgreSQL.
PROFILE ?= debug
export PROFILE

.PHONY: run test bench bench-campaigns bench-auth lint template-check migrate ci

run:            ## the whole system on http://127.0.0.1:$${PORT:-3000}
	bash infra/scripts/run.sh

test:           ## every test, against a real PostgreSQL
	bash infra/scripts/test.sh

bench:          ## release build, N webhooks through the real HTTP path, prints req/s and p50/p99
	bash infra/scripts/bench.sh

bench-campaigns: ## 100,000 contacts: snapshot time, fan-out messages/s at the configured rate, peak RSS
	bash infra/scripts/bench-campaigns.sh

bench-auth:      ## release build: sign-in p50/p99 with the production Argon2id parameters (printed, not asserted)
	CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo test --release -p accounts --test bench -- --ignored --nocapture

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

template-check: ## offline check of the SAM template
	cfn-lint template.yaml

migrate:        ## apply migrations/ to $$DATABASE_URL
	cargo run --quiet -p migrate

ci:
	bash .ci/run
