#!/usr/bin/env bash
# Validates template.yaml offline: cfn-lint and SAM's own linter.
set -euo pipefail
cd "$(dirname "$0")/.."
cfn-lint template.yaml
AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing} \
  SAM_CLI_TELEMETRY=0 sam validate --lint --region us-east-1 --template-file template.yaml
echo "template.yaml: cfn-lint and sam validate --lint passed"
