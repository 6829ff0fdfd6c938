#!/usr/bin/env bash
# A cluster to try by hand: a throwaway PostgreSQL on 127.0.0.1 (its own directory, trust
# authentication, loopback only) and N parley-server nodes (default 2) on ports 3331, 3332, ...
# sharing it. Connect with e.g. `parley --port 3332`. Ctrl-C stops every node and the database
# and removes the database's directory. Extra arguments go to every parley-server.
# CONFIG=debug uses the debug build (quicker to build than the default release one).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-2}"
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [NODES (1-99)] [parley-server options...]" >&2; exit 2; }
shift || true
scripts/install-deps.sh
if [ ! -f certs/server.pem ] || [ ! -f certs/server.key ] || [ ! -f certs/ca.pem ]; then
  scripts/gen-certs.sh certs
fi
config="${CONFIG:-release}"
[[ "$config" =~ ^(debug|release)$ ]] || { echo "CONFIG must be debug or release" >&2; exit 2; }
swift build -c "$config" --product parley-server
server="$(swift build -c "$config" --show-bin-path)/parley-server"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bindir/initdb" ] || { echo "PostgreSQL is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
dir=$(mktemp -d /tmp/parley-cluster.XXXXXX)
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  echo "cluster stopped"
}
trap cleanup INT TERM EXIT
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >/dev/null
as_pg "$bindir/pg_ctl" -D "$dir/data" -w -l "$dir/pg.log" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres parley
url="postgresql://postgres@127.0.0.1:$port/parley"
echo "PostgreSQL: $url (log: $dir/pg.log)"
for i in $(seq 1 "$nodes"); do
  "$server" --port $((3330 + i)) --db "$url" --node-name "node$i" "$@" &
  pids+=($!)
  # The first node creates the schema; the others then start together.
  [ "$i" = 1 ] && sleep 2
done
echo "$nodes nodes on ports 3331-$((3330 + nodes)); Ctrl-C stops them all"
wait
