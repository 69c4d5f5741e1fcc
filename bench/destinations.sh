#!/usr/bin/env bash
# Accepted deliveries per second for each kind of destination, in one run, on loopback: an
# HTTP upstream (nginx `return 200`), a NATS JetStream stream (PubAck awaited), a RabbitMQ
# queue (publisher confirm awaited, persistent, mandatory), and a fan-out to the HTTP
# upstream and the stream. The memory store (so the destination is what is measured), the
# same load of unique, validly signed ~1 KB deliveries (bench/src/bin/loadgen.rs), the
# targets alternated round by round. Uses the machine's NATS (127.0.0.1:4222) and RabbitMQ
# (127.0.0.1:5672, guest/guest) with a stream and a queue of its own, deleted at the end.
#
#   bash bench/destinations.sh          # 8 s per target, 2 rounds, 32 connections
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
PORTCULLIS=$ROOT/target/release/portcullis
RUN=bench$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/upstream.pid" ] && kill "$(cat "$WORK/upstream.pid")" 2>/dev/null || true
  python3 "$ROOT/tools/brokers.py" delete "$RUN" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
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
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$ROOT/tools/requirements-brokers.txt"
python3 "$ROOT/tools/brokers.py" create "$RUN"

declare -A DEST=(
  [http]="    upstream: \"http://127.0.0.1:$UP/hook\""
  [nats]="    destination: {nats: {url: \"nats://127.0.0.1:4222\", subject: \"$RUN.events\"}}"
  [amqp]="    destination: {amqp: {url: \"amqp://guest:guest@127.0.0.1:5672/%2f\", exchange: \"\", routing_key: \"$RUN\"}}"
  [fanout]="    destinations:
      - {name: http, upstream: \"http://127.0.0.1:$UP/hook\"}
      - {name: bus, nats: {url: \"nats://127.0.0.1:4222\", subject: \"$RUN.fanout\"}}"
)
declare -A URL CPU
for t in "${!DEST[@]}"; do
  port=$(free_port)
  cat > "$WORK/$t.yaml" <<EOF
listen: "127.0.0.1:$port"
store: {kind: memory}
limits: {max_in_flight: 100000}
event_log: {enabled: false}
routes:
  - path: /webhooks/paylent
    provider: paylent
    secrets: ["$SECRET"]
${DEST[$t]}
EOF
  RUST_LOG=warn "$PORTCULLIS" serve --config "$WORK/$t.yaml" >/dev/null 2>"$WORK/$t.log" &
  PIDS+=($!); CPU[$t]=$!
  URL[$t]="http://127.0.0.1:$port/webhooks/paylent"
done
for t in "${!URL[@]}"; do
  for _ in $(seq 100); do curl -s -o /dev/null "${URL[$t]%/webhooks/paylent}/" && break; sleep 0.1; done
done
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
echo "machine: $(nproc) cores; ${CONNS} connections, ${SECS}s per run after ${WARMUP}s warm-up, ${ROUNDS} rounds"
printf '%-8s %10s %9s %9s %8s %16s\n' target "accepted/s" "p50 ms" "p99 ms" errors "gateway µs/del"
ORDER=(http nats amqp fanout)
for round in $(seq "$ROUNDS"); do
  (( round % 2 == 0 )) && ORDER=(fanout amqp nats http) || ORDER=(http nats amqp fanout)
  for t in "${ORDER[@]}"; do
    "$LOADGEN" "${URL[$t]}" "$SECRET" "$CONNS" "$SECS" "$WARMUP" "r$round-$t-$RUN" > "$WORK/out" &
    lg=$!
    sleep "$WARMUP"; t0=$(ticks "${CPU[$t]}")
    wait "$lg"; t1=$(ticks "${CPU[$t]}")
    python3 - "$(cat "$WORK/out")" "$t" "$((t1 - t0))" "$HZ" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); n = max(r["requests"], 1)
print(f"{sys.argv[2]:<8} {r['rps']:>10.0f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['errors']:>8} {int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / n:>16.1f}")
EOF
  done
done
python3 "$ROOT/tools/brokers.py" count "$RUN"
