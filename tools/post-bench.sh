#!/usr/bin/env bash
# Durable message posts (issue 20: ≥ 2× PostgreSQL's insert rate in the same run), in pairs whose order
# swaps, on an empty data directory: `presence serve --event-loops 1` (fsync always) with the post fast
# path (the default) and without it (PRESENCE_SNAPSHOT_FAST_PATH=off: through the HTTP codec and the
# route), wrk -t1 -c32 posting ~100-byte messages to one conversation; then PostgreSQL 15, table
# messages (conv, seq) primary key, synchronous_commit on, pgbench -c32 inserts of the same text.
# Usage: tools/post-bench.sh [SECONDS] [PAIRS]   (defaults 15 and 2; needs wrk and, for the baseline,
# a PostgreSQL cluster online: apt-get install postgresql; pg_ctlcluster 15 main start)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
pairs="${2:-2}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
swift build -c release --product presence 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write|warning: .swift-distributed|CMakeLists' || true
bin=$PWD/.build/release/presence
work=$(mktemp -d /tmp/post-bench.XXXXXX)
chmod 755 "$work"
server=""
trap 'if [[ -n $server ]]; then kill $server 2>/dev/null || true; fi; rm -rf "$work"' EXIT

cat > "$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"content":"Update standards version to 4.5.0, no changes needed. A message of about a hundred bytes.."}'
EOF

# One run: a fresh server (fast path on or off), a conversation, wrk posting for SECONDS.
run() {
    local mode=$1 data="$work/data-$RANDOM" out="$work/serve-$RANDOM.out"
    if [[ $mode == off ]]; then export PRESENCE_SNAPSHOT_FAST_PATH=off; else unset PRESENCE_SNAPSHOT_FAST_PATH; fi
    "$bin" serve --data "$data" --dev --port 0 --event-loops 1 --heartbeat-interval 1h --lease 2h > "$out" 2> "$out.err" &
    server=$!
    unset PRESENCE_SNAPSHOT_FAST_PATH
    for _ in $(seq 3000); do grep -q listening "$out" 2>/dev/null && break; sleep 0.01; done
    local port alice id
    port=$(sed -n 's/listening on 127.0.0.1://p' "$out")
    alice=$("$bin" token --dev --user alice --ttl 1h)
    id=$(curl -s -H "Authorization: Bearer $alice" -d '{"members":["alice","bob"]}' "http://127.0.0.1:$port/v1/conversations" | sed -E 's/.*"id":"([^"]+)".*/\1/')
    echo "== posts, fast path $mode"
    wrk -t1 -c32 -d"${seconds}s" --latency -s "$work/post.lua" -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id/messages" \
        | grep -E "Requests/sec|99%|Non-2xx" | sed 's/^/    /'
    curl -s -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/metrics" | grep -E "^presence_post_fast_path_total" | sed 's/^/    /' || true
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
}

pg_run() {
    echo "== PostgreSQL $(pg_lsclusters -h | awk 'NR == 1 { print $1 }'): inserts (synchronous_commit on), 32 clients"
    su postgres -c "pgbench -n -c32 -j2 -T$seconds -f $work/pg-insert.sql post_bench" | grep -E "^tps|latency average" | sed 's/^/    /'
}

pg=false
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h | grep -q online; then
    pg=true
    su postgres -c "psql -q" <<'EOF'
DROP DATABASE IF EXISTS post_bench;
CREATE DATABASE post_bench;
EOF
    su postgres -c "psql -q post_bench" <<'EOF'
CREATE TABLE messages (conv text NOT NULL, seq bigint NOT NULL, sender text NOT NULL, content text NOT NULL, ts bigint NOT NULL, PRIMARY KEY (conv, seq));
CREATE SEQUENCE post_seq;
EOF
    cat > "$work/pg-insert.sql" <<'EOF'
\set c random(1, 100000)
INSERT INTO messages (conv, seq, sender, content, ts) VALUES ('bench_' || :c, nextval('post_seq'), 'alice', 'Update standards version to 4.5.0, no changes needed. A message of about a hundred bytes..', 1764766000000);
EOF
    chmod 644 "$work/pg-insert.sql"
else
    echo "== PostgreSQL: no cluster online (pg_ctlcluster 15 main start); our figures alone"
fi

for pair in $(seq 1 "$pairs"); do
    if (( pair % 2 == 1 )); then run on; run off; else run off; run on; fi
    $pg && pg_run
done
$pg && su postgres -c "psql -q -c 'DROP DATABASE post_bench'"
