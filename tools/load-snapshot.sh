#!/usr/bin/env bash
# Load on the snapshot endpoint (issue 4): GET /v1/conversations/{id} with 20 messages and one peer,
# 50 connections, one wrk thread (the load generator takes one core, the server the other).
# The server runs with one event loop (`--event-loops 1`: wrk holds the other core), then with the
# fast path switched off and on again, order-swapped (off, on, on, off: what SnapshotFastPath is worth),
# then with the default event loops (one per core) for comparison.
# Baselines in the same run: GET /health (no JSON building, no token check), and the ceiling: a bare
# NIO server (one event loop) answering every request with a fixed response of the snapshot's size
# (tools/http-ceiling, no HTTP parser, no routing), then the same through NIO's HTTP/1 codec.
# Usage: tools/load-snapshot.sh [SECONDS]   (default 10). Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
for product in presence presence-http-ceiling; do
    swift build -c release --product "$product" 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write' || true
done
bin=.build/release/presence
scratch=$(mktemp -d)
server=""
ceiling=""
trap 'kill $server $ceiling 2>/dev/null || true; rm -rf "$scratch"' EXIT
source tools/conversation-fixture.sh

# Starts a server with ARGS on a fresh data folder, with a conversation of 20 messages between Alice and
# Bob and Bob online; sets port, id, alice.
start_server() {
    local data="$scratch/data-$RANDOM"
    "$bin" serve --data "$data" --dev --port 0 "$@" > "$data.out" 2>/dev/null &
    server=$!
    for _ in $(seq 100); do grep -q listening "$data.out" 2>/dev/null && break; sleep 0.1; done
    port=$(sed -n 's/listening on 127.0.0.1://p' "$data.out")
    make_conversation "$port"
}

start_server --event-loops 1
size=$(curl -s -H "Authorization: Bearer $alice" "localhost:$port/v1/conversations/$id" | wc -c)
echo "snapshot: $size bytes (20 messages, one peer)"
echo "== baseline: GET /health (--event-loops 1)"
wrk -t1 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|99%"
echo "== GET /v1/conversations/$id (--event-loops 1)"
wrk -t1 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id" | grep -E "Requests/sec|99%|Non-2xx"
kill $server; wait $server 2>/dev/null || true
# What the fast path is worth: the same load with it switched off (PRESENCE_SNAPSHOT_FAST_PATH=off, every
# request through NIO's codec and Hummingbird's route), order-swapped: off, on, on, off.
for fast_path in off on on off; do
    if [[ $fast_path == off ]]; then export PRESENCE_SNAPSHOT_FAST_PATH=off; else unset PRESENCE_SNAPSHOT_FAST_PATH; fi
    start_server --event-loops 1
    echo "== GET /v1/conversations/$id (--event-loops 1, fast path $fast_path)"
    wrk -t1 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id" | grep -E "Requests/sec|99%|Non-2xx"
    kill $server; wait $server 2>/dev/null || true
done
unset PRESENCE_SNAPSHOT_FAST_PATH
start_server
echo "== GET /v1/conversations/$id (default: one event loop per core)"
wrk -t1 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id" | grep -E "Requests/sec|99%|Non-2xx"
kill $server; wait $server 2>/dev/null || true
server=""
for mode in raw codec; do
    .build/release/presence-http-ceiling 0 "$size" "$mode" > "$scratch/ceiling.out" &
    ceiling=$!
    for _ in $(seq 100); do grep -q listening "$scratch/ceiling.out" 2>/dev/null && break; sleep 0.1; done
    ceiling_port=$(sed -n 's/listening on 127.0.0.1://p' "$scratch/ceiling.out")
    if [[ $mode == raw ]]; then
        echo "== ceiling: a bare NIO server, the same $size-byte response to every request"
    else
        echo "== ceiling through NIO's HTTP/1 codec (as Hummingbird's pipeline), the same response"
    fi
    wrk -t1 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$ceiling_port/" | grep -E "Requests/sec|99%"
    kill $ceiling
    ceiling=""
done
