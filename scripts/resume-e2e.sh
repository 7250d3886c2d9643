#!/usr/bin/env bash
# The big-object continuation chain under the local runtime API of `cargo lambda watch`
# (the `lambda_big_object_chain` test in tests/lambda_e2e.rs): a >=300k-point real k6
# result with a 1 s work budget, each link going on from its checkpoint; checks that every
# point is stored once, that the chain inflates the object about once (<= 1.25x), and that
# the same event again stores nothing new. Prints links, bytes read and inflated, wall time.
# Then the same object fanned out (`lambda_big_object_fan_out` in tests/lambda_fanout.rs):
# K6TS_SEGMENT_BYTES at a fifth of it, >=4 segments delivered out of order, every point
# stored once, <= 2.2x inflated in total, the same event again stores nothing new.
#
# Usage: scripts/resume-e2e.sh [--release] [BIG.json.gz]
#   --release  run the release binary (default: the debug one the test builds)
#   BIG        default target/bench/big.json.gz (shared with the benches; generated with
#              scripts/fixtures/big.sh, real k6, ~35 s, when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools-env.sh
RELEASE=0
if [ "${1:-}" = "--release" ]; then
  RELEASE=1
  shift
fi
BIG="${1:-target/bench/big.json.gz}"
mkdir -p "$(dirname "$BIG")"
if [ ! -f "$BIG" ]; then
  scripts/fixtures/big.sh "$BIG"
fi
export AWS_EC2_METADATA_DISABLED=true
export K6TS_E2E_BIG="$BIG"
if [ "$RELEASE" = 1 ]; then
  cargo build --release --bin k6-timestream-lambda
  export K6TS_E2E_LAMBDA_BIN="$PWD/target/release/k6-timestream-lambda"
fi
cargo test --test lambda_e2e -- --ignored --exact lambda_big_object_chain --nocapture
cargo test --test lambda_fanout -- --ignored --exact lambda_big_object_fan_out --nocapture
