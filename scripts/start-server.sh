#!/usr/bin/env bash
# Installs what is missing, makes certificates if absent, builds in release mode and runs
# parley-server on its defaults (127.0.0.1:3331, certs/, an embedded SQLite database).
# Extra arguments go to parley-server (see: parley-server --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ ! -f certs/server.pem ] || [ ! -f certs/server.key ] || [ ! -f certs/ca.pem ]; then
  scripts/gen-certs.sh certs
fi
swift build -c release --product parley-server
exec "$(swift build -c release --show-bin-path)/parley-server" "$@"
