#!/usr/bin/env bash
# Cluster mode's figures (issue 15), all in one run on this machine:
#   1. single node: gateways POST batches of events to one `presence serve` (fsync always): the baseline;
#   2. cluster: three nats-servers (JetStream, sync_interval: always, stream of 3 replicas) and three
#      `presence serve --cluster` nodes, the same load spread over the three nodes: every POST answered
#      only once JetStream's quorum has it and the node has applied it;
#   3. catch-up: a fourth node with an empty data folder joins the stream the load left and reports when
#      it has materialized all of it (it serves only then);
#   4. the snapshot rate of a cluster node against a single node's, order-swapped.
# The load is wrk (one thread, C connections a node) posting one fixed body of EVENTS events, a gateway's
# batch; events/s = requests/s × EVENTS. Everything (six servers and wrk) shares this machine's cores.
# Usage: tools/load-cluster.sh [SECONDS] [EVENTS] [CONNECTIONS]   (defaults 10, 1000, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
events="${2:-1000}"
connections="${3:-4}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
nats=${NATS_SERVER:-.venv/bin/nats-server}
[ -x "$nats" ] || { echo "nats-server is missing: run scripts/setup.sh --python (it installs 2.15.1 into .venv)" >&2; exit 1; }
swift build -c release --product presence 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write' || true
bin=.build/release/presence
scratch=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $scratch" || rm -rf "$scratch"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The body: EVENTS events of distinct users, half connects and half disconnects, stamped now (older
# events could fall behind the late-arrival horizon once the servers' heartbeats move the clock on).
now=$(date +%s%3N)
python3 - "$events" "$now" > "$scratch/body.ndjson" <<'EOF'
import sys
n, now = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    kind = "connect" if i % 2 == 0 else "disconnect"
    print(f'{{"type":"{kind}","user":"user-{i // 2:07d}","conn":"c-{i // 2:07d}","gateway":"gw-bench","ts":{now + i // 2}}}')
EOF
cat > "$scratch/post.lua" <<EOF
local f = io.open("$scratch/body.ndjson", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
EOF
export TOKEN
TOKEN=$("$bin" token --dev --user gw-bench --gateway --ttl 1h)

# Starts `presence serve` on a fresh port with ARGS; sets port.
start_node() {
    local name=$1; shift
    port=$(free_port)
    "$bin" serve --dev --port "$port" --node "$name" "$@" > "$scratch/$name.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do grep -q listening "$scratch/$name.out" 2>/dev/null && return; sleep 0.1; done
    echo "$name did not start:" >&2; cat "$scratch/$name.out" >&2; exit 1
}

# Runs wrk against every port given at once; prints the summed requests/s and events/s.
load() {
    local outs=() loaders=()
    for p in "$@"; do
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$scratch/post.lua" "http://127.0.0.1:$p/v1/events" > "$scratch/wrk-$p.out" &
        loaders+=($!)
        outs+=("$scratch/wrk-$p.out")
    done
    wait "${loaders[@]}"
    python3 - "$events" "${outs[@]}" <<'EOF'
import re, sys
events = int(sys.argv[1]); total = 0.0; bad = 0
for path in sys.argv[2:]:
    text = open(path).read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)); total += rate
    p99 = re.search(r"99%\s+(\S+)", text).group(1)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text); bad += int(m.group(1)) if m else 0
    print(f"  {path.rsplit('-', 1)[1][:-4]}: {rate:,.0f} requests/s, p99 {p99}")
print(f"  total: {total:,.0f} requests/s = {total * events:,.0f} events/s" + (f"  ({bad} answers not 2xx!)" if bad else ""))
EOF
}

echo "== 1. single node, fsync always: $events events a POST, $connections connections"
start_node single --data "$scratch/single"
load "$port"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
echo "== 1b. the same without the resume journal (--resume-window 0): what noting every shown change costs"
start_node single-nojournal --data "$scratch/single-nojournal" --resume-window 0
load "$port"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== 2. cluster: 3 nats-servers (${NATS_SYNC:-sync_interval: always}), 3 nodes, $connections connections each"
# NATS_SYNC=default: JetStream's default fsync (every 2 minutes) instead of on every write, to compare.
sync=", sync_interval: always"
[ "${NATS_SYNC:-}" = default ] && sync=""
client_ports=(); cluster_ports=()
for i in 1 2 3; do client_ports+=("$(free_port)"); cluster_ports+=("$(free_port)"); done
urls=""
for i in 0 1 2; do
    dir="$scratch/nats-$i"; mkdir -p "$dir"
    routes=""
    for j in 0 1 2; do [ "$j" = "$i" ] || routes+="nats-route://127.0.0.1:${cluster_ports[$j]},"; done
    cat > "$dir/server.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:${client_ports[$i]}
jetstream { store_dir: "$dir/store"$sync }
cluster { name: presence, listen: 127.0.0.1:${cluster_ports[$i]}, routes: [${routes%,}] }
EOF
    "$nats" -c "$dir/server.conf" > "$dir/out" 2>&1 &
    pids+=($!)
    urls+="nats://127.0.0.1:${client_ports[$i]},"
done
urls=${urls%,}
node_ports=()
for i in 1 2 3; do
    start_node "node-$i" --data "$scratch/node-$i" --cluster "$urls"
    node_ports+=("$port")
done
load "${node_ports[@]}"
sleep 2
for i in 1 2 3; do
    echo "  node-$i /health: $(curl -s "127.0.0.1:${node_ports[$((i - 1))]}/health")"
done

echo "== 3. catch-up: a fourth node with an empty data folder joins"
start=$(date +%s%N)
start_node node-4 --data "$scratch/node-4" --cluster "$urls"
end=$(date +%s%N)
records=$(curl -s "127.0.0.1:$port/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_end_offset"])')
grep "cluster:" "$scratch/node-4.out" | sed 's/^/  /' || true
python3 - "$start" "$end" "$records" <<'EOF'
import sys
start, end, records = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seconds = (end - start) / 1e9
print(f"  {records:,} records materialized, node ready in {seconds:.2f} s (process start included) = {records / seconds:,.0f} events/s")
EOF

echo "== 4. snapshot rate per node: GET /v1/conversations/{id} (20 messages, one peer online), 50 connections"
# On a cluster node (node-1, the cluster idle but for heartbeats) and on a single node started beside it,
# order-swapped: single, cluster, cluster, single.
source tools/conversation-fixture.sh
cluster_port=${node_ports[0]}
make_conversation "$cluster_port"; cluster_id=$id
start_node single-snapshot --data "$scratch/single-snapshot"
single_port=$port
make_conversation "$single_port"; single_id=$id
for where in single cluster cluster single; do
    if [[ $where == single ]]; then p=$single_port; c=$single_id; else p=$cluster_port; c=$cluster_id; fi
    printf '  %-8s ' "$where:"
    wrk -t1 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $alice" "http://127.0.0.1:$p/v1/conversations/$c" \
        | awk '/Requests\/sec/ {rate=$2} /99%/ {p99=$2} /Non-2xx/ {bad=$0} END {printf "%s snapshots/s, p99 %s %s\n", rate, p99, bad}'
done
