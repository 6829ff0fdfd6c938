#!/usr/bin/env bash
# Audits Parley's TLS listener with an outside scanner: sslyze (PyPI) checks it against Mozilla's
# "modern" profile. Exits non-zero unless sslyze reports the server compliant (sslyze itself exits 0
# even when it cannot connect, so its verdict line is what counts).
#
#   scripts/tls-audit.sh                  # builds parley-server, starts it on its defaults with
#                                         # certificates from gen-certs.sh on a free port, audits it
#   scripts/tls-audit.sh HOST:PORT [CA]   # audits a running server; CA is the PEM its chain ends in
#                                         # (default certs/ca.pem): Mozilla's store does not know it
#
# sslyze is installed into a virtual environment under .build/ (nothing system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."
SSLYZE_VERSION=6.3.1
venv=.build/tls-audit-venv
if ! "$venv/bin/sslyze" --help >/dev/null 2>&1; then
  echo "tls-audit: installing sslyze $SSLYZE_VERSION into $venv"
  mkdir -p .build
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "sslyze==$SSLYZE_VERSION"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
  target=$1
  ca=${2:-certs/ca.pem}
else
  scripts/install-deps.sh
  swift build --product parley-server >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
  bin=$(swift build --show-bin-path)/parley-server
  scripts/gen-certs.sh "$work/certs" >/dev/null
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Only the port, certificate and database differ from the defaults, and the per-address
  # connection limits (checked at accept, before TLS): the scanner opens hundreds of connections
  # from 127.0.0.1, which the default 16 open / 60 a minute would refuse.
  "$bin" --port "$port" --cert "$work/certs/server.pem" --key "$work/certs/server.key" \
    --db "$work/parley.sqlite" --max-connections-per-address 100000 --max-new-connections-per-minute 1000000 \
    >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q '"\?listening' "$work/server.log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "tls-audit: the server did not start"; exit 1; }
    sleep 0.1
  done
  target="localhost:$port{127.0.0.1}"
  ca="$work/certs/ca.pem"
fi

echo "tls-audit: sslyze --mozilla_config=modern --certinfo_ca_file $ca $target"
timeout 300 "$venv/bin/sslyze" --mozilla_config=modern --certinfo_ca_file "$ca" "$target" >"$work/sslyze.txt" 2>&1 || true
sed -n '/COMPLIANCE AGAINST/,$p' "$work/sslyze.txt"
if grep -q "OK - Compliant" "$work/sslyze.txt"; then
  echo "tls-audit: compliant with Mozilla's modern profile"
  exit 0
fi
echo "tls-audit: NOT compliant (full sslyze output follows)"
cat "$work/sslyze.txt"
exit 1
