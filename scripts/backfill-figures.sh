#!/usr/bin/env bash
# Measures multi-object ingest (the `backfill_figures` test in tests/backfill.rs): 50 objects
# on moto's S3 -> the release CLI -> the strict local Timestream endpoint (20 ms per call),
# objects/s and points/s; and the lag of live mode at 1000 requests/s (`live_lag_at_1000_requests_per_second`
# in tests/live.rs: a real k6 run piped into `ingest -`).
#
# Usage: scripts/backfill-figures.sh [OBJECT.json.gz]   (default target/bench/medium.json.gz: a real
#        k6 run of 10 s at 300 requests/s, generated with scripts/fixtures/big.sh when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools-env.sh
OBJECT="${1:-target/bench/medium.json.gz}"
mkdir -p "$(dirname "$OBJECT")"
if [ ! -f "$OBJECT" ]; then
  scripts/fixtures/big.sh "$OBJECT" 10 300
fi
export AWS_EC2_METADATA_DISABLED=true
K6TS_BACKFILL_OBJECT="$OBJECT" \
  cargo test --release --test backfill -- --ignored --exact backfill_figures --nocapture
cargo test --release --test live -- --ignored --exact live_lag_at_1000_requests_per_second --nocapture
