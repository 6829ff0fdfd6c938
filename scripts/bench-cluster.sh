#!/usr/bin/env bash
# The cluster's three figures, each against its one-node reference measured in the same run, all
# driven by parley-bench (release) with the same numbers:
#   1. fan-out on one node with PostgreSQL against one node with SQLite (CPU per delivery);
#   2. the same fan-out with the clients split over two nodes against one node (total CPU of the
#      servers per delivery; the database's CPU is reported beside it);
#   3. `message` latency between users on different nodes against users on one node, at
#      CL_DIRECT_R msg/s (p99).
# A throwaway PostgreSQL is started here (initdb as the postgres user) and removed afterwards.
# scripts/bench.sh runs this at its end (CLUSTER=0 skips it; CLUSTER_ONLY=1 runs only this); alone:
#
#   scripts/bench-cluster.sh                          # results in $OUT/cluster-summary.md
#   CL_N=400 CL_S=8 CL_R=100 CL_D=10 CL_DIRECT_N=200 CL_DIRECT_R=100 scripts/bench-cluster.sh
#   CL_PG_OPTS="-c fsync=off" scripts/bench-cluster.sh   # PostgreSQL settings (default: Debian's)
#   CL_CASES="sqlite one" CL_ROUNDS=9 scripts/bench-cluster.sh   # figure 1 only, more rounds
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/parley-bench-cluster-$(date +%Y%m%d-%H%M%S)}
CL_N=${CL_N:-400} CL_S=${CL_S:-8} CL_R=${CL_R:-100} CL_D=${CL_D:-10} CL_WARM=${CL_WARM:-2}
CL_DIRECT_N=${CL_DIRECT_N:-200} CL_DIRECT_R=${CL_DIRECT_R:-100} CL_ROUNDS=${CL_ROUNDS:-3}
THREADS=${THREADS:-1}
PORT_A=7451 PORT_B=7452
BENCH_LIMITS=(--max-connections-per-address 1000000 --max-new-connections-per-minute 100000000
  --commands-per-second 100000000 --command-burst 100000000 --max-registrations-per-hour 100000000)
mkdir -p "$OUT"
scripts/install-deps.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== building release parley-server and parley-bench"
swift build -c release --product parley-server >"$OUT/cluster-build.log" 2>&1 || { cat "$OUT/cluster-build.log"; exit 1; }
swift build -c release --product parley-bench >>"$OUT/cluster-build.log" 2>&1 || { cat "$OUT/cluster-build.log"; exit 1; }
BIN=$(swift build -c release --show-bin-path)
[ -f "$OUT/certs/server.pem" ] || scripts/gen-certs.sh "$OUT/certs" >/dev/null

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] || { echo "bench-cluster: PostgreSQL is not installed" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Who runs the database's processes: postgres when started as root, else this user.
DB_USER=postgres; [ "$(id -u)" = 0 ] || DB_USER=$(id -un)
PG_DIR=$(mktemp -d /tmp/parley-bench-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The database's CPU is that of its user's processes: any other database server of that user on
# this machine would be counted too, so say so.
others=$(pgrep -u "$DB_USER" -c postgres || true)
[ "${others:-0}" = 0 ] || echo "   note: $others postgres processes already run; their CPU counts as the database's"

node_pids=()
cleanup() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap cleanup EXIT
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -l "$PG_DIR/pg.log" \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 ${CL_PG_OPTS:-}" start >/dev/null
URL="postgresql://postgres@127.0.0.1:$PG_PORT/parley"
echo "   PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

fresh_db() { # every case starts from an empty database, as the SQLite cases start from a new file
  as_pg "$PG_BIN/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres --if-exists parley 2>/dev/null
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres parley
}
wait_port() { # until the node accepts (bounded: 30 s)
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-cluster: nothing listens on $1 after 30 s" >&2; cat "$OUT"/cluster-node-*.log >&2; exit 1
}
start_node() { # port db name
  "$BIN/parley-server" --port "$1" --db "$2" --node-name "$3" --cert "$OUT/certs/server.pem" \
    --key "$OUT/certs/server.key" --insecure-hash-cost 10 --max-pending-logins 100000 --timeout 3600 \
    --threads "$THREADS" --flush-interval-ms 0 --admin-socket none "${BENCH_LIMITS[@]}" --log-level error \
    >"$OUT/cluster-node-$3.log" 2>&1 &
  node_pids+=($!)
  wait_port "$1"
}
stop_nodes() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pids=()
}
busy_pct() { # whole machine, percent of one core, over 1 s
  local i0 i1
  i0=$(awk '/^cpu /{print $5+$6}' /proc/stat); sleep 1; i1=$(awk '/^cpu /{print $5+$6}' /proc/stat)
  echo $(( $(nproc) * 100 - (i1 - i0) * 100 / $(getconf CLK_TCK) ))
}
wait_idle() { for _ in $(seq 1 60); do [ "$(busy_pct)" -lt 20 ] && return 0; sleep 2; done; }

# case name, then the parley-bench arguments after the scenario's own
bench() { # case scenario args...
  local name=$1; shift
  wait_idle
  local cmd=("$BIN/parley-bench" "$@" --ca "$OUT/certs/ca.pem" --server-name localhost --json)
  echo "== $name: ${cmd[*]}" | tee "$OUT/cl-$name.txt"
  timeout 600 "${cmd[@]}" >>"$OUT/cl-$name.txt" 2>&1 || true
  python3 - "$name" "$OUT/cl-$name.txt" >>"$OUT/cluster-results.jsonl" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
text = open(path).read()
start = text.find("{")
r = json.loads(text[start:]) if start >= 0 else {}
r["case"] = name
print(json.dumps(r))
PY
  python3 - "$OUT/cl-$name.txt" <<'PY'
import json, sys
t = open(sys.argv[1]).read(); r = json.loads(t[t.find("{"):]) if "{" in t else {}
l = r.get("latency", {})
print("   deliveries/s %s, p99 %s us, server %s us/delivery, database %s us/delivery, lost %s, dup %s%s" % (
    r.get("deliveries_per_s"), l.get("p99_us"), r.get("server_cpu_us_per_delivery"),
    r.get("database_cpu_us_per_delivery", "-"), r.get("lost"), r.get("dup"),
    (", error: " + r["error"]) if "error" in r else ""))
PY
}

FAN=(-n "$CL_N" -s "$CL_S" -r "$CL_R" -d "$CL_D" --warmup "$CL_WARM")
DIRECT=(-n "$CL_DIRECT_N" -r "$CL_DIRECT_R" -d "$CL_D" --warmup "$CL_WARM")
sqlite_cases() { # round
  rm -f "$OUT"/cluster.sqlite*
  start_node $PORT_A "$OUT/cluster.sqlite" sqlite
  bench "fanout-sqlite-$1" fanout --port $PORT_A --server-pid "${node_pids[0]}" "${FAN[@]}"
  bench "direct-sqlite-$1" direct --port $PORT_A --server-pid "${node_pids[0]}" "${DIRECT[@]}"
  stop_nodes
}
one_node_cases() { # round
  fresh_db
  start_node $PORT_A "$URL" one
  bench "fanout-pg1-$1" fanout --port $PORT_A --server-pid "${node_pids[0]}" --database-user "$DB_USER" "${FAN[@]}"
  bench "direct-pg1-$1" direct --port $PORT_A --server-pid "${node_pids[0]}" --database-user "$DB_USER" "${DIRECT[@]}"
  stop_nodes
}
two_node_cases() { # round
  fresh_db
  start_node $PORT_A "$URL" a
  start_node $PORT_B "$URL" b
  # Client i goes to node (i mod 2): half the fan-out's receivers are on each node, and every
  # `direct` pair (2k, 2k+1) is split, so each message crosses nodes.
  bench "fanout-pg2-$1" fanout --port $PORT_A --also-port $PORT_B --server-pid "${node_pids[0]}" \
    --also-server-pid "${node_pids[1]}" --database-user "$DB_USER" "${FAN[@]}"
  bench "direct-pg2-$1" direct --port $PORT_A --also-port $PORT_B --server-pid "${node_pids[0]}" \
    --also-server-pid "${node_pids[1]}" --database-user "$DB_USER" "${DIRECT[@]}"
  stop_nodes
}
# Rounds, every case once per round; odd rounds run SQLite, one node, two nodes, even rounds the
# reverse, so that a drift of this shared machine does not favour one side. The summary gives each
# round's ratios and their median.
# CL_CASES picks case groups (default all three): "sqlite one" re-measures figure 1 alone.
CL_CASES=${CL_CASES:-sqlite one two}
want() { [[ " $CL_CASES " == *" $1 "* ]]; }
for round in $(seq 1 "$CL_ROUNDS"); do
  order=(sqlite one two)
  [ $((round % 2)) = 0 ] && order=(two one sqlite)
  for group in "${order[@]}"; do
    want "$group" || continue
    case $group in sqlite) sqlite_cases "$round" ;; one) one_node_cases "$round" ;; two) two_node_cases "$round" ;; esac
  done
done

python3 - "$OUT/cluster-results.jsonl" "$CL_ROUNDS" <<'PY' | tee "$OUT/cluster-summary.md"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line); rows[r["case"]] = r
rounds = int(sys.argv[2])
def get(case, *keys):
    v = rows.get(case)
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v
def med(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs: return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
def fmt(xs):
    return ", ".join("n/a" if x is None else "%.2f" % x for x in xs)
def ratio(a, b):
    return None if a in (None, 0) or b in (None, 0) else a / b
def total(case):
    s, d = get(case, "server_cpu_us_per_delivery"), get(case, "database_cpu_us_per_delivery")
    return None if s is None else s + (d or 0)
print("| case | deliveries/s | p50 ms | p99 ms | server us/delivery | database us/delivery | lost | dup |")
print("|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    l = r.get("latency", {})
    p50, p99 = l.get("p50_us"), l.get("p99_us")
    print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (name, r.get("deliveries_per_s"),
          "-" if p50 is None else "%.2f" % (p50 / 1e3), "-" if p99 is None else "%.2f" % (p99 / 1e3),
          r.get("server_cpu_us_per_delivery"), r.get("database_cpu_us_per_delivery", "-"), r.get("lost"), r.get("dup")))
print()
R = range(1, rounds + 1)
pg_sql = [ratio(get(f"fanout-pg1-{i}", "server_cpu_us_per_delivery"), get(f"fanout-sqlite-{i}", "server_cpu_us_per_delivery")) for i in R]
pg_sql_db = [ratio(total(f"fanout-pg1-{i}"), get(f"fanout-sqlite-{i}", "server_cpu_us_per_delivery")) for i in R]
two_one = [ratio(get(f"fanout-pg2-{i}", "server_cpu_us_per_delivery"), get(f"fanout-pg1-{i}", "server_cpu_us_per_delivery")) for i in R]
two_one_db = [ratio(total(f"fanout-pg2-{i}"), total(f"fanout-pg1-{i}")) for i in R]
def p99(case): return get(case, "latency", "p99_us")
cross = [None if p99(f"direct-pg2-{i}") is None or p99(f"direct-pg1-{i}") is None
         else (p99(f"direct-pg2-{i}") - p99(f"direct-pg1-{i}")) / 1e3 for i in R]
cross_sql = [None if p99(f"direct-pg2-{i}") is None or p99(f"direct-sqlite-{i}") is None
             else (p99(f"direct-pg2-{i}") - p99(f"direct-sqlite-{i}")) / 1e3 for i in R]
def verdict(m, ok): return "n/a" if m is None else ("met" if ok(m) else "NOT met")
m = med(pg_sql)
if m is not None: print(f"- fan-out, one node, PostgreSQL vs SQLite: server CPU per delivery median {m and '%.2f' % m}x "
      f"(rounds: {fmt(pg_sql)}; target <= 1.1: {verdict(m, lambda x: x <= 1.1)}); with the database's CPU added: "
      f"{fmt(pg_sql_db)}")
m = med(two_one)
if m is not None: print(f"- fan-out, clients split over two nodes vs one node (both PostgreSQL): total server CPU per delivery "
      f"median {m and '%.2f' % m}x (rounds: {fmt(two_one)}; target <= 1.3: {verdict(m, lambda x: x <= 1.3)}); "
      f"servers + database: {fmt(two_one_db)}")
m = med(cross)
if m is not None: print(f"- `message` at {get('direct-pg2-1', 'rate_msg_s')} msg/s, every pair split over two nodes vs both on one "
      f"PostgreSQL node: p99 +{m and '%.2f' % m} ms median (rounds: {fmt(cross)} ms; target <= +5 ms: "
      f"{verdict(m, lambda x: x <= 5)}); against one SQLite node: {fmt(cross_sql)} ms")
PY
echo "raw outputs: $OUT"
