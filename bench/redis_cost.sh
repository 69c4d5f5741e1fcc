#!/usr/bin/env bash
# What a delivery costs Redis: CPU µs per delivery (the redis-server process's /proc ticks
# over the measured seconds), commands per delivery, commands per read (how far the
# per-worker connections pipeline) and each command's server time (INFO commandstats), for
# one or two portcullis binaries in one run (alternating), sync and queued.
#
#   bash bench/redis_cost.sh                                  # this tree's release binary
#   bash bench/redis_cost.sh OLD_BINARY                       # OLD beside this tree's
#   SECONDS_PER_RUN=10 ROUNDS=2 CONNECTIONS=32 bash bench/redis_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
SECRET=bench-secret
command -v nginx >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
cargo build --release --quiet
(cd bench && cargo build --release --quiet)
LOADGEN=$ROOT/bench/target/release/loadgen
declare -A BIN=([new]=$ROOT/target/release/portcullis)
[ -n "${1:-}" ] && BIN[old]=$(realpath "$1")

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/upstream.pid" ] && kill "$(cat "$WORK/upstream.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); RDS=$(free_port)
mkdir -p "$WORK/up"
cat > "$WORK/upstream.conf" <<CONF
worker_processes auto;
pid $WORK/upstream.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up/body; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
CONF
nginx -c "$WORK/upstream.conf" -g 'daemon on;'
redis-server --port "$RDS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
PIDS+=($!); REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$RDS" ping >/dev/null 2>&1 && break; sleep 0.1; done

declare -A URL
for v in "${!BIN[@]}"; do
  for mode in sync queued; do
    port=$(free_port)
    extra=""; [ "$mode" = queued ] && extra="    delivery: queued"
    cat > "$WORK/$v-$mode.yaml" <<EOF
listen: "127.0.0.1:$port"
store: {kind: redis, url: "redis://127.0.0.1:$RDS/", key_prefix: "$v-$mode:"}
limits: {max_in_flight: 100000}
event_log: {enabled: false}
routes:
  - path: /webhooks/paylent
    provider: paylent
    secrets: ["$SECRET"]
    upstream: "http://127.0.0.1:$UP/paylent"
$extra
EOF
    RUST_LOG=warn "${BIN[$v]}" serve --config "$WORK/$v-$mode.yaml" >/dev/null 2>"$WORK/$v-$mode.log" &
    PIDS+=($!)
    URL[$v-$mode]="http://127.0.0.1:$port/webhooks/paylent"
  done
done
for u in "${URL[@]}"; do
  for _ in $(seq 100); do curl -s -o /dev/null "${u%/webhooks/paylent}/" && break; sleep 0.1; done
done

ticks() { awk '{print $14+$15}' "/proc/$REDIS_PID/stat"; }
info() { redis-cli -p "$RDS" info "$1" | tr -d '\r'; }
stat_of() { info stats | awk -F: -v k="$1" '$1==k {print $2}'; }
HZ=$(getconf CLK_TCK)
echo "machine: $(nproc) cores; ${CONNS} connections, ${SECS}s per run after ${WARMUP}s warm-up, ${ROUNDS} rounds; Redis $(info server | awk -F: '$1=="redis_version" {print $2}')"
printf '%-12s %-7s %9s %13s %13s %13s  %s\n' binary mode "req/s" "redis µs/del" "cmds/del" "cmds/read" "server µs per delivery by command"
for round in $(seq "$ROUNDS"); do
  for t in $( (( round % 2 )) && echo "${!URL[@]}" | tr ' ' '\n' | sort || echo "${!URL[@]}" | tr ' ' '\n' | sort -r); do
    # Let a queued run's workers finish the backlog before measuring the next one.
    for _ in $(seq 600); do
      n=0; for k in $(redis-cli -p "$RDS" --scan --pattern '*:s' 2>/dev/null); do n=$((n + $(redis-cli -p "$RDS" xlen "$k"))); done
      [ "$n" = 0 ] && break; sleep 0.2
    done
    "$LOADGEN" "${URL[$t]}" "$SECRET" "$CONNS" "$SECS" "$WARMUP" "r$round-$t-$$" > "$WORK/out" &
    lg=$!
    sleep "$WARMUP"
    redis-cli -p "$RDS" config resetstat >/dev/null
    t0=$(ticks); c0=$(stat_of total_commands_processed); r0=$(stat_of total_reads_processed)
    wait "$lg"
    t1=$(ticks); c1=$(stat_of total_commands_processed); r1=$(stat_of total_reads_processed)
    cmdstats=$(info commandstats)
    python3 - "$(cat "$WORK/out")" "$t" "$((t1 - t0))" "$HZ" "$((c1 - c0))" "$((r1 - r0))" "$cmdstats" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); t = sys.argv[2]; ticks, hz = int(sys.argv[3]), int(sys.argv[4])
cmds, reads = int(sys.argv[5]), int(sys.argv[6]); n = max(r["requests"], 1)
per = []
for line in sys.argv[7].splitlines():
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        kv = dict(x.split("=") for x in rest.split(","))
        if name in ("info", "config", "ping", "scan", "xlen"): continue
        per.append((name, int(kv["usec"]) / n, int(kv["calls"]) / n))
per.sort(key=lambda x: -x[1])
binary, mode = t.split("-", 1)
print(f"{binary:<12} {mode:<7} {r['rps']:>9.0f} {ticks / hz * 1e6 / n:>13.2f} {cmds / n:>13.2f} {cmds / max(reads, 1):>13.2f}  "
      + ", ".join(f"{c} {u:.2f} ({k:.2f}×)" for c, u, k in per[:6]))
EOF
  done
done
