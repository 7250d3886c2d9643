#!/usr/bin/env bash
# Measures the Lambda function under the local runtime API of `cargo lambda watch`
# (the `lambda_figures` test in tests/lambda_e2e.rs): cold init of the release binary
# (process start -> first /runtime/invocation/next, 5 runs), cold first-invoke latency,
# and end-to-end points/s with the function's peak RSS (VmHWM) on a big real k6 result
# (S3 on moto -> the function -> the strict local Timestream endpoint with 20 ms per
# WriteRecords call, K6TS_CONCURRENCY=32: the setting of `cargo bench --bench ingest`).
#
# Usage: scripts/lambda-figures.sh [BIG.json.gz]   (default target/bench/big.json.gz, shared with the benches; generated
#        with scripts/fixtures/big.sh, real k6, ~35 s, when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools-env.sh
BIG="${1:-target/bench/big.json.gz}"
mkdir -p "$(dirname "$BIG")"
if [ ! -f "$BIG" ]; then
  scripts/fixtures/big.sh "$BIG"
fi
cargo build --release --bin k6-timestream-lambda
export AWS_EC2_METADATA_DISABLED=true
K6TS_E2E_LAMBDA_BIN="$PWD/target/release/k6-timestream-lambda" K6TS_E2E_BIG="$BIG" \
  cargo test --test lambda_e2e -- --ignored --exact lambda_figures --nocapture
