#!/usr/bin/env bash
# Runs every test: formatting, lints, unit + integration tests (strict local
# Timestream endpoint, moto S3/Timestream, the Lambda under the local
# runtime API), and template validation. What CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
source scripts/tools-env.sh
export AWS_EC2_METADATA_DISABLED=true
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --lib --bins --tests
scripts/validate-template.sh
