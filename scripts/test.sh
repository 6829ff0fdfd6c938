#!/usr/bin/env bash
# Builds Parley and runs the whole test suite (unit, end-to-end over real TLS on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# A short fuzzing pass over every parser of untrusted input (longer runs: scripts/fuzz.sh 600).
scripts/fuzz.sh "${PARLEY_FUZZ_SECONDS:-10}" >/tmp/parley-fuzz.log 2>&1 || { tail -40 /tmp/parley-fuzz.log; echo "fuzzing found a crash"; exit 1; }
grep -E '^(fuzzing|#[0-9]+[[:space:]]+DONE)' /tmp/parley-fuzz.log || true
swift build --build-tests
# The suites that start whole clusters of processes (three server nodes and PostgreSQL; a server
# killed 24 times) run on their own, after the rest: beside the timing tests on 2 cores they
# starve them.
heavy='ParleyClusterEndToEndTests|CrashSafetyTests'
swift test --skip-build --skip "$heavy"
swift test --skip-build --filter "$heavy"
# An outside TLS scanner (sslyze, Mozilla's modern profile) against a server on its defaults.
scripts/tls-audit.sh
