#!/usr/bin/env bash
# Side-by-side benchmark in ONE run: Parley, refsrv --coalesce (the machine's reference limit) and
# ngircd (an established IRC server), driven by the same neutral C load generator
# (../shared/tools/loadgen) with the same N, S, R and D. Prints a markdown summary with ratios.
#
#   scripts/bench.sh                       # defaults below; results in $OUT
#   N=1000 S=10 R=200 D=10 THREADS=1 IDLE_N=10000 HS_ROUNDS=3 FLUSH_SWEEP="20 30 40" scripts/bench.sh
#
# Also measured in the same run: Parley's fan-out at each --flush-interval-ms of FLUSH_SWEEP (CPU
# traded for latency), and OpenSSL's own memory floor per idle connection (scripts/openssl-floor.c).
#
# Also in the same run: Parley's fan-out with --metrics-listen on (scraped every second, as
# Prometheus would) against the same fan-out with metrics off, reported as a ratio.
# METRICS_ONLY=1 runs just those two (a quick check: METRICS_ONLY=1 N=50 D=3 scripts/bench.sh),
# METRICS_ROUNDS times (default 3), reporting each round's ratio and the median.
#
# And at the end (CLUSTER=0 skips it), scripts/bench-cluster.sh: fan-out on PostgreSQL vs SQLite,
# fan-out over two nodes vs one, cross-node message latency (CLUSTER_ONLY=1 runs only those).
#
# THREADS is Parley's event-loop count: on a 2-core machine shared with the generator, 1 loop is
# the like-for-like comparison with the single-threaded refsrv and ngircd; THREADS=2 is also run
# when BOTH_THREADS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LG_SRC=${LG_SRC:-$ROOT/../shared/tools/loadgen}
OUT=${OUT:-/tmp/parley-bench-$(date +%Y%m%d-%H%M%S)}
N=${N:-1000} S=${S:-10} R=${R:-200} D=${D:-10} WARM=${WARM:-2}
THREADS=${THREADS:-1} IDLE_N=${IDLE_N:-10000} HS_D=${HS_D:-10} HS_ROUNDS=${HS_ROUNDS:-3}
# Parley is also run with these --flush-interval-ms values (the CPU-for-latency trade-off); "" skips.
FLUSH_SWEEP=${FLUSH_SWEEP-20 30 40}
PARLEY_PORT=7443 REF_PORT=7444 IRC_PORT=6698 METRICS_PORT=${METRICS_PORT:-9331}
METRICS_ONLY=${METRICS_ONLY:-}
# The generator opens N connections from 127.0.0.1 and sends far more than a person would: the
# per-address and per-connection limits are raised for it, explicitly.
BENCH_LIMITS=(--max-connections-per-address 1000000 --max-new-connections-per-minute 100000000
  --commands-per-second 100000000 --command-burst 100000000 --max-registrations-per-hour 100000000)
mkdir -p "$OUT/bin"
[ -f "$LG_SRC/loadgen.c" ] || { echo "bench: $LG_SRC/loadgen.c not found (set LG_SRC)"; exit 66; }

scripts/install-deps.sh
if [ -z "$METRICS_ONLY" ] && ! command -v /usr/sbin/ngircd >/dev/null; then
  echo "bench: installing ngircd (Debian) for the side-by-side"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ngircd >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== building (release) into $OUT"
cc -O2 -o "$OUT/bin/loadgen" "$LG_SRC/loadgen.c" -lssl -lcrypto
cc -O2 -o "$OUT/bin/refsrv" "$LG_SRC/refsrv.c" -lssl -lcrypto
cc -O2 -o "$OUT/bin/openssl-floor" scripts/openssl-floor.c -lssl -lcrypto
swift build -c release --product parley-server >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }
BIN=$(swift build -c release --show-bin-path)
[ -f "$OUT/certs/server.pem" ] || scripts/gen-certs.sh "$OUT/certs" >/dev/null
LG="$OUT/bin/loadgen"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f /tmp/ngircd-run/ngircd.pid ] && kill "$(cat /tmp/ngircd-run/ngircd.pid)" 2>/dev/null || true; }
trap cleanup EXIT

start_parley() { # $1 = threads, $2 = --flush-interval-ms (default 0), then extra parley-server flags
  local threads=$1 flush=${2:-0}; shift 2 || shift $#
  rm -f "$OUT"/parley.sqlite*
  "$BIN/parley-server" --port $PARLEY_PORT --db "$OUT/parley.sqlite" --cert "$OUT/certs/server.pem" \
    --key "$OUT/certs/server.key" --insecure-hash-cost 10 --max-pending-logins 100000 --timeout 3600 --threads "$threads" \
    --flush-interval-ms "$flush" "${BENCH_LIMITS[@]}" "$@" --log-level error >"$OUT/parley-$threads.log" 2>&1 &
  PARLEY_PID=$!; pids+=("$PARLEY_PID"); sleep 1
}
stop_parley() { kill "$PARLEY_PID" 2>/dev/null || true; wait "$PARLEY_PID" 2>/dev/null || true; }
scrape_metrics() { # every second until killed, as a Prometheus server would; the last scrape is kept
  while sleep 1; do curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >"$OUT/metrics-last.txt" || true; done
}

PARLEY_ARGS=(--proto jsonl --port $PARLEY_PORT --cafile "$OUT/certs/ca.pem" --sni localhost --tls13
  --login '{"type":"login","username":"u{i}","password":"password{i}"}' --login-ok-substring '"ok"'
  --login-fail-substring '"error"' --send '{"type":"broadcast","text":"{payload}"}')
REF_ARGS=(--proto jsonl --port $REF_PORT --cafile "$OUT/certs/ca.pem" --sni localhost --tls13)
IRC_ARGS=(--proto irc --port $IRC_PORT --connect-concurrency 8 --irc-sender-line 'OPER bench benchpw'
  --irc-sender-line 'MODE {nick} +F')

busy_pct() { # whole machine, percent of one core, over 1 s
  local i0 i1
  i0=$(awk '/^cpu /{print $5+$6}' /proc/stat); sleep 1; i1=$(awk '/^cpu /{print $5+$6}' /proc/stat)
  echo $(( $(nproc) * 100 - (i1 - i0) * 100 / $(getconf CLK_TCK) ))
}
wait_idle() { # servers digest the previous run's disconnects first; bounded at 180 s
  for _ in $(seq 1 60); do [ "$(busy_pct)" -lt 20 ] && return 0; sleep 2; done
  echo "   (machine still busy after 180 s; running anyway)"
}

run() { # tag pid outfile args...
  local tag=$1 pid=$2 file=$3; shift 3
  wait_idle
  echo "== $tag: loadgen $*" | tee "$OUT/$file.txt"
  timeout 600 "$LG" "$@" --server-pid "$pid" --json >>"$OUT/$file.txt" 2>&1 || true
  grep -E '^(delivered|latency_us|server|loadgen: |errors|connect)' "$OUT/$file.txt" | sed 's/^/   /'
  grep '^RESULT ' "$OUT/$file.txt" | sed "s/^RESULT {/{\"tag\":\"$tag\",\"case\":\"$file\",/" >>"$OUT/results.jsonl"
}

FAN=(-n "$N" -s "$S" -r "$R" -d "$D" --warmup "$WARM")
OPEN=(-n "$N" -s "$S" -r 0 --max-inflight 10 -d "$D" --warmup "$WARM")
IDLE=(-n "$IDLE_N" -s 1 -r 1 -d 3 --warmup 0 --settle "${IDLE_SETTLE:-30}" --login-timeout 180)

metrics_pair() { # fan-out with metrics off, then on (scraped), back to back, METRICS_ROUNDS times
  for round in $(seq 1 "${METRICS_ROUNDS:-3}"); do
    start_parley "$THREADS" 0
    run "parley-t$THREADS-metrics-off" "$PARLEY_PID" "fanout-metrics-off-$round" "${PARLEY_ARGS[@]}" "${FAN[@]}"
    stop_parley
    start_parley "$THREADS" 0 --metrics-listen "127.0.0.1:$METRICS_PORT"
    scrape_metrics & SCRAPER=$!; pids+=("$SCRAPER")
    run "parley-t$THREADS-metrics-on" "$PARLEY_PID" "fanout-metrics-on-$round" "${PARLEY_ARGS[@]}" "${FAN[@]}"
    kill "$SCRAPER" 2>/dev/null || true
    stop_parley
    grep -E '^parley_(deliveries_total|broadcasts_total|users_logged_in) ' "$OUT/metrics-last.txt" 2>/dev/null | sed 's/^/   last scrape: /' || true
  done
}

if [ -n "${CLUSTER_ONLY:-}" ]; then
  OUT="$OUT" scripts/bench-cluster.sh
  exit
elif [ -n "$METRICS_ONLY" ]; then
  metrics_pair
else
"$OUT/bin/refsrv" --port $REF_PORT --cert "$OUT/certs/server.pem" --key "$OUT/certs/server.key" --coalesce \
  --max-seconds 3600 >"$OUT/refsrv.log" 2>&1 &
REF_PID=$!; pids+=("$REF_PID")
bash "$LG_SRC/peers/run-ngircd.sh" >/dev/null
IRC_PID=$(cat /tmp/ngircd-run/ngircd.pid)
sleep 1

for threads in $THREADS ${BOTH_THREADS:+2}; do
  start_parley "$threads"
  run "parley-t$threads" "$PARLEY_PID" "fanout-parley-t$threads" "${PARLEY_ARGS[@]}" "${FAN[@]}"
  run "parley-t$threads" "$PARLEY_PID" "open-parley-t$threads" "${PARLEY_ARGS[@]}" "${OPEN[@]}"
  stop_parley
done
for ms in $FLUSH_SWEEP; do
  start_parley "$THREADS" "$ms"
  run "parley-t$THREADS-f$ms" "$PARLEY_PID" "fanout-parley-t$THREADS-f$ms" "${PARLEY_ARGS[@]}" "${FAN[@]}"
  stop_parley
done
run refsrv "$REF_PID" fanout-refsrv "${REF_ARGS[@]}" "${FAN[@]}"
run refsrv "$REF_PID" open-refsrv "${REF_ARGS[@]}" "${OPEN[@]}"
run ngircd "$IRC_PID" fanout-ngircd "${IRC_ARGS[@]}" "${FAN[@]}"
# Handshakes: refsrv and Parley back to back, HS_ROUNDS times; each round gives a ratio (the machine's
# speed drifts between rounds, less within one) and the summary quotes every round and their median.
start_parley "$THREADS"
for round in $(seq 1 "$HS_ROUNDS"); do
  run refsrv "$REF_PID" "hs-refsrv-$round" --proto hs --port $REF_PORT -n 16 -d "$HS_D"
  run "parley-t$THREADS" "$PARLEY_PID" "hs-parley-t$THREADS-$round" --proto hs --port $PARLEY_PORT -n 16 -d "$HS_D"
done
stop_parley
# ngircd's idle memory from its fan-out run's settle phase; Parley's from a run with IDLE_N clients.
start_parley "$THREADS"
run "parley-t$THREADS" "$PARLEY_PID" "idle-parley" "${PARLEY_ARGS[@]}" "${IDLE[@]}"
stop_parley
run ngircd "$IRC_PID" idle-ngircd "${IRC_ARGS[@]}" "${IDLE[@]}"
# The floor OpenSSL itself sets: heap per idle server connection after a TLS 1.3 handshake.
echo "== openssl-floor: $OUT/bin/openssl-floor $OUT/certs 10000" | tee "$OUT/openssl-floor.txt"
"$OUT/bin/openssl-floor" "$OUT/certs" 10000 | tee -a "$OUT/openssl-floor.txt" | grep -v '^RESULT' | sed 's/^/   /'
grep '^RESULT ' "$OUT/openssl-floor.txt" | sed 's/^RESULT {/{"tag":"openssl","case":"openssl-floor",/' >>"$OUT/results.jsonl"
metrics_pair
fi

python3 - "$OUT/results.jsonl" <<'PY' | tee "$OUT/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {r["case"]: r for r in rows}
for r in rows:
    if r.get("proto") == "hs" and r.get("handshakes"):
        r["server_cpu_us_per_handshake"] = 1e6 * r["server_cpu_s"] / r["handshakes"]
    if r.get("logged_in") and r.get("rss_after_settle_kib", -1) >= 0:
        r["kib_per_conn"] = round((r["rss_after_settle_kib"] - r["rss_before_kib"]) / r["logged_in"], 1)
def g(case, key):
    r = by.get(case); return None if r is None else r.get(key)
def ratio(a, b):
    return "n/a" if a in (None, 0) or b in (None, 0) else "%.2f" % (a / b)
for r in rows:
    if r.get("proto") == "hs":
        print("- handshakes: %s %.0f/s, server %.0f us CPU each" % (r["tag"], r["handshakes_per_s"], r["server_cpu_us_per_handshake"]))
    elif r["case"].startswith("idle"):
        print("- idle: %s %d clients logged in, %.1f KiB per connection" % (r["tag"], r["logged_in"], r.get("kib_per_conn", -1)))
print()
print("| case | server | deliveries/s | p50 ms | p99 ms | lost | dup | server us/delivery | loadgen CPU % |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("proto") in ("hs", "openssl-floor") or r["case"].startswith("idle"): continue
    print("| %s | %s | %.0f | %.2f | %.2f | %d | %d | %.2f | %.0f |" % (r["case"], r["tag"], r["deliveries_per_s"],
          r["p50_us"]/1e3, r["p99_us"]/1e3, r["lost"], r.get("dup", 0), r["server_cpu_us_per_delivery"],
          100*r["loadgen_cpu_s"]/(r["duration"] or 1)))
print()
for t in sorted({r["tag"] for r in rows if r["tag"].startswith("parley") and r["case"] == "fanout-" + r["tag"] and "-f" not in r["tag"]}):
    f, o = "fanout-" + t, "open-" + t
    print(f"**{t}** vs refsrv --coalesce / ngircd, same run:")
    print(f"- fan-out CPU-us per delivery: {ratio(g(f,'server_cpu_us_per_delivery'), g('fanout-refsrv','server_cpu_us_per_delivery'))}x refsrv (target <= 1.2), "
          f"{ratio(g(f,'server_cpu_us_per_delivery'), g('fanout-ngircd','server_cpu_us_per_delivery'))}x ngircd (target <= 0.5)")
    print(f"- fan-out p99: {ratio(g(f,'p99_us'), g('fanout-refsrv','p99_us'))}x refsrv (target <= 1.2); lost {g(f,'lost')}, dup {g(f,'dup')}")
    print(f"- open-loop deliveries/s: {ratio(g(o,'deliveries_per_s'), g('open-refsrv','deliveries_per_s'))}x refsrv (target >= 0.7)")
    rounds = [(g(f"hs-{t}-{i}", 'server_cpu_us_per_handshake'), g(f"hs-refsrv-{i}", 'server_cpu_us_per_handshake'))
              for i in range(1, 100) if f"hs-{t}-{i}" in by]
    hs = sorted(a / b for a, b in rounds if a and b)
    if hs:
        print(f"- handshake CPU-us: median {hs[len(hs) // 2]:.2f}x refsrv over {len(hs)} back-to-back rounds "
              f"({', '.join('%.2f' % x for x in hs)}) (target <= 1.2)")
if "idle-parley" in by:
    print(f"- idle KiB per connection: parley {g('idle-parley','kib_per_conn')} vs ngircd {g('idle-ngircd','kib_per_conn')} "
          f"= {ratio(g('idle-parley','kib_per_conn'), g('idle-ngircd','kib_per_conn'))}x (target <= 1.0)")
floor = g('openssl-floor', 'kib_per_conn')
if floor:
    print(f"- idle KiB per logged-in client against OpenSSL's own floor (openssl-floor: heap per idle TLS 1.3 "
          f"server connection, {floor} KiB): parley {g('idle-parley','kib_per_conn')} = "
          f"{ratio(g('idle-parley','kib_per_conn'), floor)}x the floor (target <= 1.3), "
          f"{g('idle-parley','logged_in')} of {g('idle-parley','conns')} clients held")
pairs = [(by[f"fanout-metrics-off-{i}"], by[f"fanout-metrics-on-{i}"]) for i in range(1, 100)
         if f"fanout-metrics-off-{i}" in by and f"fanout-metrics-on-{i}" in by]
if pairs:
    def rounds(key):
        xs = [on[key] / off[key] for off, on in pairs if off.get(key) and on.get(key)]
        s = sorted(xs); n = len(s)
        m = None if not s else (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)
        return ("n/a" if m is None else "%.2f" % m), ", ".join("%.2f" % x for x in xs)
    (cm, cr), (pm, pr), (dm, dr) = rounds("server_cpu_us_per_delivery"), rounds("p99_us"), rounds("deliveries_per_s")
    print(f"- metrics on (--metrics-listen, scraped every second) vs off, fan-out back to back, {len(pairs)} rounds: "
          f"CPU-us per delivery median {cm}x ({cr}), p99 median {pm}x ({pr}), deliveries/s median {dm}x ({dr}) "
          f"(target: CPU <= 1.05x)")
sweep = [r for r in rows if "-f" in r["tag"] and r["case"].startswith("fanout") and "metrics" not in r["tag"]]
if sweep:
    print()
    print("**The flush-delay trade-off** (fan-out, same run; target: CPU <= 0.5x ngircd AND p99 <= 1.2x refsrv):")
    print()
    print("| --flush-interval-ms | server us/delivery | vs ngircd | p99 ms | vs refsrv p99 | both met? |")
    print("|---|---|---|---|---|---|")
    base = [r for r in rows if r["case"].startswith("fanout-parley") and "-f" not in r["tag"]]
    for r in base + sweep:
        ms = r["tag"].split("-f")[1] if "-f" in r["tag"] else "0"
        c = r["server_cpu_us_per_delivery"] / (g('fanout-ngircd','server_cpu_us_per_delivery') or float('nan'))
        p = r["p99_us"] / (g('fanout-refsrv','p99_us') or float('nan'))
        print(f"| {ms} | {r['server_cpu_us_per_delivery']:.2f} | {c:.2f}x | {r['p99_us']/1e3:.1f} | {p:.2f}x | "
              f"{'yes' if c <= 0.5 and p <= 1.2 else 'no'} |")
PY
if [ -z "$METRICS_ONLY" ] && [ "${CLUSTER:-1}" != 0 ]; then
  echo "== the cluster's figures (scripts/bench-cluster.sh)"
  cleanup
  OUT="$OUT" scripts/bench-cluster.sh
fi
echo "raw outputs: $OUT"
