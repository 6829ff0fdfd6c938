#!/usr/bin/env bash
# Every parley-bench scenario in one command, each against a FRESH parley-server (new database,
# new process: no allocator or hash-queue state carried over), each with --server-pid. Builds
# release parley-server and parley-bench, makes certificates in $OUT, saves each scenario's output
# as $OUT/<scenario>.txt and prints a markdown summary. See docs/BENCH-TOOL.md.
#
#   scripts/bench-scenarios.sh                                   # full size: several minutes
#   N=200 IDLE_N=500 D=2 scripts/bench-scenarios.sh               # a quick check
#   OUT=/tmp/run1 ONLY="fanout private" scripts/bench-scenarios.sh
#
# Sizes (environment): N S R D WARM (fanout: 1000 10 200 10 2), DIRECT_N DIRECT_R (N, 1000),
# IDLE_N (10000), HS_D HS_C (5 s, 16 slots), LB_N LB_S LB_R LB_B (30 5 100 10; production hash
# cost), OFF_M (1000), PRIV_R PRIV_D (1000 msg/s, D s). Ports: PORT (7543), OSSL_PORT (7544).
# SCENARIO_TIMEOUT (s, default 600) bounds each run; the whole script cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/parley-bench-scenarios.XXXXXX")}
N=${N:-1000} S=${S:-10} R=${R:-200} D=${D:-10} WARM=${WARM:-2}
DIRECT_N=${DIRECT_N:-$N} DIRECT_R=${DIRECT_R:-1000}
IDLE_N=${IDLE_N:-10000}
HS_D=${HS_D:-5} HS_C=${HS_C:-16}
LB_N=${LB_N:-30} LB_S=${LB_S:-5} LB_R=${LB_R:-100} LB_B=${LB_B:-10}
OFF_M=${OFF_M:-1000}
PRIV_R=${PRIV_R:-1000} PRIV_D=${PRIV_D:-$D}
PORT=${PORT:-7543} OSSL_PORT=${OSSL_PORT:-7544}
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-600}
ONLY=${ONLY:-"fanout direct idle handshake login-burst offline private"}
[ $((DIRECT_N % 2)) -eq 0 ] || DIRECT_N=$((DIRECT_N + 1))
mkdir -p "$OUT"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "== output in $OUT (open files: $(ulimit -n))" >&2

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building release parley-server and parley-bench" >&2
swift build -c release --product parley-server >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
swift build -c release --product parley-bench >>"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
BIN=$(swift build -c release --show-bin-path)
[ -f "$OUT/certs/server.pem" ] || scripts/gen-certs.sh "$OUT/certs" >/dev/null
CERTS="$OUT/certs"

# Every scenario connects from 127.0.0.1 and sends far more than a person would: the per-address and
# per-connection limits are raised, explicitly.
LIMITS=(--max-connections-per-address 1000000 --max-new-connections-per-minute 100000000
  --commands-per-second 100000000 --command-burst 100000000 --max-registrations-per-hour 100000000)

# start_server NAME [extra server options...]: a fresh server on $PORT; sets SERVER_PID.
start_server() {
  local name=$1; shift
  rm -f "$OUT/$name.sqlite"*
  "$BIN/parley-server" --port "$PORT" --db "$OUT/$name.sqlite" --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
    --threads 1 --log-level error "${LIMITS[@]}" "$@" >"$OUT/$name.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-scenarios: the server for $name did not start (see $OUT/$name.server.log)" >&2
  return 1
}

# --timeout 3600: a 10,000-client login phase takes minutes, longer than the default idle timeout.
FAST=(--insecure-hash-cost 10 --max-pending-logins 100000 --timeout 3600)
COMMON=(--port "$PORT" --ca "$CERTS/ca.pem")
SUMMARY=()

# fig FILE KEY: the value of a `key: value` line of a text report.
fig() { sed -n "s/^$2: //p" "$1" | head -1; }
# sub FILE KEY SUBKEY: one `sub=value` from an object line, e.g. latency p99_us.
sub() { fig "$1" "$2" | tr ' ' '\n' | sed -n "s/^$3=//p" | head -1; }

# run NAME SERVER-OPTIONS... -- BENCH-ARGS...: fresh server, one scenario, stop the server.
run() {
  local name=$1; shift
  local sopts=()
  while [ "$1" != "--" ]; do sopts+=("$1"); shift; done
  shift
  case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name" >&2
  start_server "$name" "${sopts[@]}" || { SUMMARY+=("| $name | server did not start | |"); return 0; }
  local rc=0
  timeout --kill-after=10 "$SCENARIO_TIMEOUT" "$BIN/parley-bench" "$@" --server-pid "$SERVER_PID" >"$OUT/$name.txt" 2>&1 || rc=$?
  cleanup
  local f="$OUT/$name.txt" k=""
  case $name in
    fanout | direct)
      k="deliveries/s $(fig "$f" deliveries_per_s); latency µs p50 $(sub "$f" latency p50_us) p99 $(sub "$f" latency p99_us) max $(sub "$f" latency max_us); lost $(fig "$f" lost) dup $(fig "$f" dup); server CPU $(fig "$f" server_cpu_pct)% = $(fig "$f" server_cpu_us_per_delivery) µs/delivery; bench CPU $(fig "$f" bench_cpu_pct)%" ;;
    idle)
      k="logins/s $(sub "$f" login per_s), login ms p99 $(sub "$f" login p99); server KiB/connection $(fig "$f" server_rss_kib_per_connection); server CPU for logins $(fig "$f" server_cpu_s_logins) s; dropped $(fig "$f" dropped_while_idle)" ;;
    handshake)
      k="parley $(sub "$f" parley per_s)/s ($(sub "$f" parley server_cpu_us_per_handshake) µs CPU each), openssl s_server $(sub "$f" openssl_s_server per_s)/s ($(sub "$f" openssl_s_server server_cpu_us_per_handshake) µs); ratio $(fig "$f" ratio_parley_to_openssl)" ;;
    login-burst)
      k="burst of $LB_B: $(fig "$f" burst_wall_s) s, rate-limited retries $(sub "$f" burst_login rate_limited_retries); background p99 µs before $(sub "$f" latency_before_burst p99_us) / during $(sub "$f" latency_during_burst p99_us) / after $(sub "$f" latency_after_burst p99_us); lost $(fig "$f" lost) dup $(fig "$f" dup)" ;;
    offline)
      k="store $(fig "$f" store_per_s)/s; login → last stored $(fig "$f" login_to_last_ms) ms ($(fig "$f" stored_per_s)/s); dup $(fig "$f" dup) missing $(fig "$f" missing) left after acks $(fig "$f" left_after_acks)" ;;
    private)
      k="setup startprivate → link open $(sub "$f" setup_ms startprivate_to_link_open) ms; latency µs p50 $(sub "$f" latency p50_us) p99 $(sub "$f" latency p99_us) max $(sub "$f" latency max_us); throughput $(sub "$f" throughput_phase msg_per_s) msg/s $(sub "$f" throughput_phase frame_mb_per_s) MB/s; lost $(fig "$f" lost) dup $(fig "$f" dup); **server CPU during latency phase $(sub "$f" latency_phase server_cpu_s) s, throughput phase $(sub "$f" throughput_phase server_cpu_s) s**" ;;
  esac
  local status="ok"
  [ "$rc" -eq 0 ] || status="**exit $rc**"
  SUMMARY+=("| $name | $status | \`$(fig "$f" command | sed "s|$BIN/||; s|$OUT/|\$OUT/|g")\` | $k |")
}

run fanout "${FAST[@]}" -- fanout "${COMMON[@]}" -n "$N" -s "$S" -r "$R" -d "$D" --warmup "$WARM"
run direct "${FAST[@]}" -- direct "${COMMON[@]}" -n "$DIRECT_N" -r "$DIRECT_R" -d "$D" --warmup "$WARM"
# Logging in 10,000 users takes minutes (each login is announced to everyone online): allow 300 s.
run idle "${FAST[@]}" -- idle "${COMMON[@]}" -n "$IDLE_N" --login-timeout 300
run handshake "${FAST[@]}" -- handshake "${COMMON[@]}" -d "$HS_D" -c "$HS_C" \
  --cert "$CERTS/server.pem" --key "$CERTS/server.key" --openssl-port "$OSSL_PORT" --openssl "$(command -v openssl)"
# Production hash cost: no --insecure-hash-cost, and the server's default login queue.
run login-burst -- login-burst "${COMMON[@]}" -n "$LB_N" -s "$LB_S" -r "$LB_R" -b "$LB_B"
run offline "${FAST[@]}" -- offline "${COMMON[@]}" -m "$OFF_M"
run private "${FAST[@]}" -- private "${COMMON[@]}" -r "$PRIV_R" -d "$PRIV_D"

echo
echo "## parley-bench scenarios ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; outputs in $OUT)"
echo
echo "Server: \`parley-server --threads 1 --insecure-hash-cost 10 --max-pending-logins 100000 --timeout 3600 --log-level error\`, fresh per scenario (login-burst: production hash cost)."
echo
echo "| scenario | status | command | key figures |"
echo "|---|---|---|---|"
for line in "${SUMMARY[@]}"; do echo "$line"; done
