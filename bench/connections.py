#!/usr/bin/env python3
"""Resident memory of a running portcullis with N open keep-alive connections, each having
sent one signed Paylent delivery. usage: connections.py PID PORT N (the route must be
/webhooks/paylent with secret bench-secret, as bench/run.sh configures it)."""
import socket, sys, hmac, hashlib, time, json, os
pid = int(sys.argv[1]); port = int(sys.argv[2]); n = int(sys.argv[3])
def rss(): return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"event": "x", "event_id": f"conn_{i}_{time.time()}", "pad": "x" * 900}).encode()
    sig = hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
    s.sendall(b"POST /webhooks/paylent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Paylent-Signature: sha256=" + sig.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    socks.append(s)
for s in socks:
    s.recv(4096)
time.sleep(0.5)
print(f"RSS before {before} MiB, with {n} open keep-alive connections {rss()} MiB")
