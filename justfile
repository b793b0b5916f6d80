# Convosphere Auth — `just` lists the recipes.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/tmp/convosphere-target")

default:
    @just --list

# Run the service (SQLite and a mail outbox under ./data).
run:
    cargo run --release

# Install the OpenID Provider the OAuth tests run against (needs node and npm).
oidc-provider:
    npm ci --prefix crates/oauth/tests/oidc --no-audit --no-fund

# Run every test (PostgreSQL tests run when TEST_DATABASE_URL is set).
test:
    cargo test --workspace

# The tests against the local PostgreSQL too.
test-postgres:
    TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test --workspace

# Benchmarks: criterion for in-process code, a load generator against the release binary.
bench:
    cargo bench -p convosphere-crypto -- --warm-up-time 1 --measurement-time 3
    cargo bench -p convosphere-store -- --warm-up-time 1 --measurement-time 3
    bash bench/http.sh

# Screenshots of the web pages (desktop and phone width) into docs/screenshots/, by the browser test.
screenshots:
    CONVOSPHERE_SCREENSHOTS={{justfile_directory()}}/docs/screenshots cargo test -p convosphere-auth --test it browser::
# Proof under attack (docs/SECURITY.md): schemathesis against /openapi.json
# (~1 min), PostgreSQL stopped and started under load (~40 s), then a
# 5-minute soak of the release binary (~6 min with its build). The property
# tests run with `just test`.
attack:
    bash tests/attack/schemathesis.sh
    bash tests/attack/pg-fault.sh
    bash tests/attack/soak.sh

# Format and lint.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs.
pre-pr:
    bash .ci/run
