#!/usr/bin/env bash
# Builds Parley and runs the whole test suite (unit, end-to-end over real TLS on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
