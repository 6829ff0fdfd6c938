#!/usr/bin/env bash
# Builds Parley and runs the whole test suite (unit, end-to-end over real TLS on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# A short fuzzing pass over every parser of untrusted input (longer runs: scripts/fuzz.sh 600).
scripts/fuzz.sh "${PARLEY_FUZZ_SECONDS:-10}" >/tmp/parley-fuzz.log 2>&1 || { tail -40 /tmp/parley-fuzz.log; echo "fuzzing found a crash"; exit 1; }
grep -E '^(fuzzing|#[0-9]+[[:space:]]+DONE)' /tmp/parley-fuzz.log || true
swift build --build-tests
# One test at a time: on 2 cores, 390 tests at once (many start real servers, clients, whole
# clusters and PostgreSQL) starved the ones that measure timeouts; serially the suite takes a
# few minutes and every run here passed.
swift test --skip-build --no-parallel
# An outside TLS scanner (sslyze, Mozilla's modern profile) against a server on its defaults.
scripts/tls-audit.sh
