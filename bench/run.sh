#!/usr/bin/env bash
# portcullis against a plain nginx reverse proxy and a floor proxy, in one run, on loopback.
#
#   bash bench/run.sh                 # 10 s per target, 2 rounds, 32 connections
#   SECONDS_PER_RUN=20 ROUNDS=3 bash bench/run.sh
#
# Starts: an upstream (nginx `return 200`), the nginx proxy in front of it (keep-alive to the
# upstream, worker_processes auto), the floor proxy (bench/src/bin/floor.rs), a Redis server,
# and portcullis with the memory store (event log on, the default, and off: `event_log:
# {enabled: false}`), with the Redis store and queued, and with the embedded store (redb, the
# default of config.example.yaml) sync and queued. Each is driven with the same
# load of unique, validly signed ~1 KB Paylent deliveries (bench/src/bin/loadgen.rs),
# alternating the targets, and the table prints requests per second, p50 and p99, and the
# ratios against nginx and the floor proxy, and the memory store's ratio event log on / off,
# the embedded store's against the memory store, and the batch sizes the embedded files'
# writers reached (commits, writes per commit, a histogram by powers of two).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
SECRET=bench-secret

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need redis-server; then
  echo "installing nginx and redis from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light redis-server >/dev/null
fi

cargo build --release --quiet
(cd bench && cargo build --release --quiet)
LOADGEN=$ROOT/bench/target/release/loadgen
FLOOR=$ROOT/bench/target/release/floor
PORTCULLIS=$ROOT/target/release/portcullis

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in upstream proxy; do [ -f "$WORK/$n.pid" ] && kill "$(cat "$WORK/$n.pid")" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NGX=$(free_port); FLR=$(free_port); FPC=$(free_port); RDS=$(free_port); PCM=$(free_port); PCN=$(free_port); PCR=$(free_port); PCQ=$(free_port); PCE=$(free_port); PCEQ=$(free_port); ADEQ=$(free_port)

# Two nginx instances, so that the proxy's workers are not also the upstream's: the upstream
# is another server, as a real backend is.
nginx_instance() { # name server-blocks
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1.conf" <<CONF
worker_processes auto;
pid $WORK/$1.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  fastcgi_temp_path $WORK/$1/fastcgi;
  uwsgi_temp_path $WORK/$1/uwsgi;
  scgi_temp_path $WORK/$1/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
  nginx -c "$WORK/$1.conf" -g 'daemon on;'
}
nginx_instance upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"ok\"; } }"
nginx_instance proxy "upstream backend { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"

redis-server --port "$RDS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
PIDS+=($!); REDIS_PID=$!
"$FLOOR" "127.0.0.1:$FLR" "http://127.0.0.1:$UP" "$SECRET" &
PIDS+=($!); FLOOR_PID=$!
"$FLOOR" "127.0.0.1:$FPC" "http://127.0.0.1:$UP" "$SECRET" per-core &
PIDS+=($!); FLOOR_PC_PID=$!

gateway_config() { # port store-yaml [route-extra] [top-level-extra]
  cat <<EOF
listen: "127.0.0.1:$1"
store:
$2
limits:
  max_in_flight: 100000
${4:-}
routes:
  - path: /webhooks/paylent
    provider: paylent
    secrets: ["$SECRET"]
    upstream: "http://127.0.0.1:$UP/paylent"
${3:-}
EOF
}
# One process serves every round: past its default bound (1,000,000 live keys) the memory
# store refuses new claims (503), which a fast run reaches in its third round.
MEMORY="  kind: memory
  max_keys: 50000000"
gateway_config "$PCM" "$MEMORY" > "$WORK/memory.yaml"
gateway_config "$PCR" "  kind: redis
  url: \"redis://127.0.0.1:$RDS/\"" > "$WORK/redis.yaml"
RUST_LOG=warn "$PORTCULLIS" serve --config "$WORK/memory.yaml" >/dev/null 2>"$WORK/pc-memory.log" &
PIDS+=($!); PCM_PID=$!
# The same with the event log off: the pair measures what the log costs the request path.
gateway_config "$PCN" "$MEMORY" "" "event_log: {enabled: false}" > "$WORK/memory-log-off.yaml"
RUST_LOG=warn "$PORTCULLIS" serve --config "$WORK/memory-log-off.yaml" >/dev/null 2>"$WORK/pc-memory-log-off.log" &
PIDS+=($!); PCN_PID=$!
RUST_LOG=warn "$PORTCULLIS" serve --config "$WORK/redis.yaml" >/dev/null 2>"$WORK/pc-redis.log" &
PIDS+=($!); PCR_PID=$!
# Accept-then-deliver: answered once the Redis stream holds the delivery; its workers deliver
# to the upstream on the same two cores meanwhile.
gateway_config "$PCQ" "  kind: redis
  url: \"redis://127.0.0.1:$RDS/\"
  key_prefix: \"queued:\"" "    delivery: queued" > "$WORK/queued.yaml"
RUST_LOG=warn "$PORTCULLIS" serve --config "$WORK/queued.yaml" >/dev/null 2>"$WORK/pc-queued.log" &
PIDS+=($!); PCQ_PID=$!
# The embedded store (one redb file, its group-commit writer), sync and queued; the writers
# log their batch sizes at debug, read back at the end.
GC_LOG="warn,portcullis::store_conn::group_commit=debug"
gateway_config "$PCE" "  kind: embedded
  path: \"$WORK/embedded/claims.redb\"" > "$WORK/embedded.yaml"
RUST_LOG=$GC_LOG "$PORTCULLIS" serve --config "$WORK/embedded.yaml" >/dev/null 2>"$WORK/pc-embedded.log" &
PIDS+=($!); PCE_PID=$!
gateway_config "$PCEQ" "  kind: embedded
  path: \"$WORK/embedded-queued/claims.redb\"" "    delivery: queued" "admin: {listen: \"127.0.0.1:$ADEQ\"}" > "$WORK/embedded-queued.yaml"
RUST_LOG=$GC_LOG "$PORTCULLIS" serve --config "$WORK/embedded-queued.yaml" >/dev/null 2>"$WORK/pc-embedded-queued.log" &
PIDS+=($!); PCEQ_PID=$!

for p in $UP $NGX $FLR $FPC $RDS $PCM $PCN $PCR $PCQ $PCE $PCEQ $ADEQ; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
done

declare -A URL=(
  [nginx]="http://127.0.0.1:$NGX/webhooks/paylent"
  [floor]="http://127.0.0.1:$FLR/webhooks/paylent"
  [floor-per-core]="http://127.0.0.1:$FPC/webhooks/paylent"
  [portcullis-memory]="http://127.0.0.1:$PCM/webhooks/paylent"
  [portcullis-memory-log-off]="http://127.0.0.1:$PCN/webhooks/paylent"
  [portcullis-redis]="http://127.0.0.1:$PCR/webhooks/paylent"
  [portcullis-queued]="http://127.0.0.1:$PCQ/webhooks/paylent"
  [portcullis-embedded]="http://127.0.0.1:$PCE/webhooks/paylent"
  [portcullis-embedded-queued]="http://127.0.0.1:$PCEQ/webhooks/paylent"
)
# The processes whose CPU time a target costs: the proxy itself, and Redis where it is used.
PROXY_PIDS=$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')
declare -A CPU_PIDS=(
  [nginx]="$PROXY_PIDS"
  [floor]="$FLOOR_PID"
  [floor-per-core]="$FLOOR_PC_PID"
  [portcullis-memory]="$PCM_PID"
  [portcullis-memory-log-off]="$PCN_PID"
  [portcullis-redis]="$PCR_PID $REDIS_PID"
  [portcullis-queued]="$PCQ_PID $REDIS_PID"
  [portcullis-embedded]="$PCE_PID"
  [portcullis-embedded-queued]="$PCEQ_PID"
)
ticks() { for p in "$@"; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s+0}'; }
HZ=$(getconf CLK_TCK)
ORDER=()
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m); ${CONNS} connections, ${SECS}s per run after ${WARMUP}s warm-up, ${ROUNDS} rounds" >&2
for round in $(seq "$ROUNDS"); do
  # Alternate the order so that no target always runs first or last. The queued gateways
  # run last: their workers go on delivering the backlog afterwards, which is waited out.
  if (( round % 2 == 0 )); then ORDER=(portcullis-embedded portcullis-redis portcullis-memory-log-off portcullis-memory floor-per-core floor nginx); else ORDER=(nginx floor floor-per-core portcullis-memory portcullis-memory-log-off portcullis-redis portcullis-embedded); fi
  for t in "${ORDER[@]}" portcullis-queued portcullis-embedded-queued; do
    "$LOADGEN" "${URL[$t]}" "$SECRET" "$CONNS" "$SECS" "$WARMUP" "r${round}-${t}" > "$WORK/out" &
    lg=$!
    # CPU time over the measured seconds only, after the warm-up.
    sleep "$WARMUP"; t0=$(ticks ${CPU_PIDS[$t]})
    wait "$lg"; t1=$(ticks ${CPU_PIDS[$t]})
    out=$(cat "$WORK/out")
    cpu_us=$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(round(int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / max(r["requests"], 1), 1))' "$out" "$((t1 - t0))" "$HZ")
    echo "round $round $t $out cpu_us_per_req=$cpu_us" >&2
    echo "{\"target\":\"$t\",\"round\":$round,\"cpu_us\":$cpu_us,\"result\":$out}" >> "$RESULTS"
    # A queued gateway's workers go on delivering its backlog afterwards: waited out before
    # the next target, so that it does not share the cores with them.
    case $t in
      portcullis-queued)
        for _ in $(seq 600); do
          [ "$(redis-cli -p "$RDS" XLEN 'queued:{q:/webhooks/paylent}:s')" = "0" ] && break
          sleep 0.2
        done ;;
      portcullis-embedded-queued)
        # The embedded queue's depth, as its gauge shows it (updated every 100 ms).
        for _ in $(seq 1200); do
          python3 -c 'import sys, urllib.request
t = urllib.request.urlopen(sys.argv[1]).read().decode()
sys.exit(0 if "portcullis_queue_depth{route=\"/webhooks/paylent\"} 0\n" in t else 1)' "http://127.0.0.1:$ADEQ/metrics" && break
          sleep 0.2
        done ;;
    esac
  done
done
# The writers log their totals every 5 s when they committed meanwhile: one more delivery
# each, past that, so that the last lines hold the whole run.
sleep 5.5
for t in portcullis-embedded portcullis-embedded-queued; do
  "$LOADGEN" "${URL[$t]}" "$SECRET" 1 1 0 "flush-$t" >/dev/null
done
sleep 1
echo >&2
for n in embedded embedded-queued; do
  for f in embedded-store embedded-queue; do
    line=$(grep "group commit totals" "$WORK/pc-$n.log" | grep "$f" | tail -1 || true)
    [ -n "$line" ] && echo "batch sizes, portcullis-$n, $f: ${line#*totals }" >&2
  done
done

python3 - "$RESULTS" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["target"], []).append(dict(r["result"], cpu_us=r["cpu_us"]))
def agg(t, k):
    return statistics.mean(x[k] for x in by[t])
order = ["nginx", "floor", "floor-per-core", "portcullis-memory", "portcullis-memory-log-off", "portcullis-redis", "portcullis-queued", "portcullis-embedded", "portcullis-embedded-queued"]
n_rps, f_rps, n_p99 = agg("nginx", "rps"), agg("floor", "rps"), agg("nginx", "p99_ms")
print()
print(f"| target | req/s | p50 ms | p99 ms | errors | CPU µs/req | ×nginx | ×floor |")
print(f"|---|---:|---:|---:|---:|---:|---:|---:|")
for t in order:
    rps = agg(t, "rps")
    print(f"| {t} | {rps:,.0f} | {agg(t, 'p50_ms'):.2f} | {agg(t, 'p99_ms'):.2f} | {sum(x['errors'] for x in by[t])} | {agg(t, 'cpu_us'):.1f} | {rps / n_rps:.2f} | {rps / f_rps:.2f} |")
m, r = agg("portcullis-memory", "rps"), agg("portcullis-redis", "rps")
print()
print(f"targets: memory/nginx {m / n_rps:.2f} (≥ 1.2), redis/nginx {r / n_rps:.2f} (≥ 1.0), memory/floor {m / f_rps:.2f} (≥ 1.0), "
      f"memory/floor-per-core {m / agg('floor-per-core', 'rps'):.2f}, "
      f"p99 memory {agg('portcullis-memory', 'p99_ms'):.2f} ms vs nginx {n_p99:.2f} + 1 ms; "
      f"queued: {agg('portcullis-queued', 'rps'):,.0f} accepted/s (≥ 10,000), p99 {agg('portcullis-queued', 'p99_ms'):.2f} ms (< 10)")
e, eq = agg("portcullis-embedded", "rps"), agg("portcullis-embedded-queued", "rps")
print(f"embedded store: {e / m:.2f}× memory (≥ 0.8), CPU µs/req {agg('portcullis-embedded', 'cpu_us'):.1f} vs {agg('portcullis-memory', 'cpu_us'):.1f}; "
      f"embedded queue: {eq:,.0f} accepted/s (≥ 10,000), p99 {agg('portcullis-embedded-queued', 'p99_ms'):.2f} ms (< 20), "
      f"CPU µs/accepted {agg('portcullis-embedded-queued', 'cpu_us'):.1f} (workers' deliveries included)")
# The event log's cost, same run: the pair ran back to back in every round.
on, off = by["portcullis-memory"], by["portcullis-memory-log-off"]
per_round = ", ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in zip(on, off))
print(f"event log on/off (memory store): req/s {agg('portcullis-memory', 'rps') / agg('portcullis-memory-log-off', 'rps'):.3f} "
      f"(by round: {per_round}), CPU µs/req {agg('portcullis-memory', 'cpu_us') / agg('portcullis-memory-log-off', 'cpu_us'):.3f}")
EOF
