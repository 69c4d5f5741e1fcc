#!/usr/bin/env bash
# User-space instructions per delivery, counted by callgrind: repeatable where wall-clock
# throughput on a shared VM is not. Runs the floor proxy and portcullis (memory store) under
# valgrind in turn, in front of an nginx upstream, counts instructions only while a fixed
# load runs, and prints instructions per delivery, with and without SHA-256 (valgrind runs
# the portable SHA-256, not the SHA-NI one used natively, so it is shown apart).
#
#   bash bench/callgrind.sh            # 8 s of load per target, 8 connections
#   TARGETS="portcullis-memory portcullis-memory-log-off" bash bench/callgrind.sh
#   CALLGRIND_KEEP=/tmp/cg bash bench/callgrind.sh   # keep the profiles for callgrind_annotate
#
# Targets: floor (per core), floor-conn (per core, its own `conn::http1` pool instead of the
# legacy client: not run by default); portcullis with the memory store and the event log on (the
# default), with the log off (`event_log: {enabled: false}`), and with the log on and the
# route capturing every request (`capture: all`). The ratios against the log off close the
# table: what the event log, and capture, cost each delivery.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECONDS_PER_RUN:-8}
SECRET=bench-secret
TARGETS=${TARGETS:-floor portcullis-memory portcullis-memory-log-off portcullis-memory-capture-all}
KEEP=${CALLGRIND_KEEP:-}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need valgrind; then
  echo "installing nginx and valgrind from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light valgrind >/dev/null
fi
cargo build --release --quiet
(cd bench && cargo build --release --quiet)
LOADGEN=$ROOT/bench/target/release/loadgen

WORK=$(mktemp -d)
cleanup() {
  pkill -9 -f "callgrind-out-file=$WORK" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); PORT=$(free_port)

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon on;'
memory_config() { # top-level-extra route-extra
  cat <<CONF
listen: "127.0.0.1:$PORT"
store:
  kind: memory
$1
routes:
  - path: /webhooks/paylent
    provider: paylent
    secrets: ["$SECRET"]
    upstream: "http://127.0.0.1:$UP/paylent"
$2
CONF
}
memory_config "" "" > "$WORK/memory.yaml"
memory_config "event_log: {enabled: false}" "" > "$WORK/memory-log-off.yaml"
memory_config "" "    capture: all" > "$WORK/memory-capture-all.yaml"

count() { # name command...
  local name=$1; shift
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$name.%p" "$@" \
    >/dev/null 2>"$WORK/$name.log" &
  disown
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  # Warm up (connections, pools, lazy state), then count only the measured load.
  "$LOADGEN" "http://127.0.0.1:$PORT/webhooks/paylent" "$SECRET" 8 2 0 "cg-warm-$name-$$" >/dev/null
  callgrind_control -i on >/dev/null 2>&1
  local out
  # The event ids' prefix is the same length for every target: the body, and so its SHA-256
  # blocks, must not differ between targets (a longer name cost one more block).
  RUN=$((RUN + 1))
  out=$("$LOADGEN" "http://127.0.0.1:$PORT/webhooks/paylent" "$SECRET" 8 "$SECS" 0 "cg-$(printf %02d "$RUN")-$$")
  callgrind_control -d >/dev/null 2>&1
  sleep 2
  pkill -9 -f "callgrind-out-file=$WORK/$name" || true
  sleep 1
  local file
  file=$(ls -S "$WORK/$name".[0-9]* | head -1)
  if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$file" "$KEEP/$name.callgrind" && echo "$out" > "$KEEP/$name.json"; fi
  python3 - "$name" "$out" "$file" "$WORK/results" <<'PY'
import json, re, subprocess, sys
name, out, path, results = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
text = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
num = lambda s: int(s.replace(",", ""))
total = num(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text).group(1))
sha = sum(num(m.group(1)) for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*sha256::soft::compress", text, re.M))
n = out["requests"]
print(f"| {name} | {n} | {total / n:,.0f} | {(total - sha) / n:,.0f} |")
with open(results, "a") as f:
    f.write(f"{name} {total / n} {(total - sha) / n}\n")
PY
}
run() { # target
  case $1 in
    floor) count floor "$ROOT/bench/target/release/floor" "127.0.0.1:$PORT" "http://127.0.0.1:$UP" "$SECRET" per-core ;;
    floor-conn) count floor-conn "$ROOT/bench/target/release/floor" "127.0.0.1:$PORT" "http://127.0.0.1:$UP" "$SECRET" per-core-conn ;;
    portcullis-memory) count portcullis-memory "$ROOT/target/release/portcullis" serve --config "$WORK/memory.yaml" ;;
    portcullis-memory-log-off) count portcullis-memory-log-off "$ROOT/target/release/portcullis" serve --config "$WORK/memory-log-off.yaml" ;;
    portcullis-memory-capture-all) count portcullis-memory-capture-all "$ROOT/target/release/portcullis" serve --config "$WORK/memory-capture-all.yaml" ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}
: > "$WORK/results"
RUN=0
echo "| target | deliveries counted | instructions / delivery | without SHA-256 |"
echo "|---|---:|---:|---:|"
for t in $TARGETS; do run "$t"; done
# Against the log off, in the same run: what the event log (and capture) add per delivery.
python3 - "$WORK/results" <<'PY'
import sys
rows = {n: (float(a), float(b)) for n, a, b in (l.split() for l in open(sys.argv[1]))}
off = rows.get("portcullis-memory-log-off")
if off:
    print()
    print("| against the event log off | + instructions / delivery | ratio | ratio without SHA-256 |")
    print("|---|---:|---:|---:|")
    for n in ("portcullis-memory", "portcullis-memory-capture-all"):
        if n in rows:
            a, b = rows[n]
            print(f"| {n} | {a - off[0]:+,.0f} | {a / off[0]:.3f} | {b / off[1]:.3f} |")
PY
