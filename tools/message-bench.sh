#!/usr/bin/env bash
# The message store's figures (issue 20, BENCHMARKS.md): a messages log of MESSAGES messages over
# MESSAGES/100 conversations, one of them (alice and bob's) holding a tenth, written by
# presence-message-gen from a corpus of human-written one-line texts (the change entries of the Debian
# changelogs installed on this machine, /usr/share/doc/*/changelog.Debian.gz); then, with `presence
# serve --message-cache 64MiB --event-loops 1`:
#   - the first start (the index built from the log) and a restart to ready (checkpoint + tail);
#   - server RSS: on an empty data directory, and with the messages (after the loads below);
#   - the latest page (limit 20) of the big conversation, wrk -t1 -c50; GET /health as the baseline;
#   - random older pages (before_seq uniform over the big conversation, limit 20), wrk -t1 -c8 and -c50;
#   - durable posts of ~100 bytes to the big conversation, wrk -t1 -c32;
#   - bytes on disk a message (the log; the index and checkpoint beside it).
# PostgreSQL 15 in the same run (when `pg_lsclusters` shows a cluster; `apt-get install postgresql`):
# table messages (conv, seq) primary key, synchronous_commit on; pgbench inserts with 32 clients, the
# latest 20 of a conversation (50 clients, prepared), random older pages of a 1M-row conversation
# (8 clients), and bytes a row for the first 1M messages of the same corpus loaded with COPY.
# Usage: tools/message-bench.sh [MESSAGES] [SECONDS]   (defaults 10000000 and 20; needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${1:-10000000}"
seconds="${2:-20}"
conversations=$((messages / 100))
big=$((messages / 10))
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
for product in presence presence-message-gen; do
    swift build -c release --product "$product" 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write|warning: .swift-distributed|CMakeLists' || true
done
bin=$PWD/.build/release/presence
gen=$PWD/.build/release/presence-message-gen
work=$(mktemp -d /tmp/message-bench.XXXXXX)
chmod 755 "$work"
server=""
trap 'if [[ -n $server ]]; then kill $server 2>/dev/null || true; fi; rm -rf "$work"' EXIT

now_ms() { date +%s%3N; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# Starts `presence serve` on DATA (more options after it); sets server, port, and started_ms (launch to
# the "listening" line).
start_server() {
    local data=$1; shift
    local out="$work/serve-$RANDOM.out"
    local begin
    begin=$(now_ms)
    "$bin" serve --data "$data" --dev --port 0 --event-loops 1 --message-cache 64MiB "$@" > "$out" 2> "$out.err" &
    server=$!
    for _ in $(seq 30000); do grep -q listening "$out" 2>/dev/null && break; sleep 0.01; done
    started_ms=$(( $(now_ms) - begin ))
    port=$(sed -n 's/listening on 127.0.0.1://p' "$out")
    grep -E "messages|index" "$out.err" | sed 's/^/    server: /' || true
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

echo "== corpus: change entries of the Debian changelogs on this machine"
zcat /usr/share/doc/*/changelog.Debian.gz 2>/dev/null | grep -v '^ -- \|urgency=\|^\s*$' | sed -E 's/^\s*[*+-]\s*//' \
    | awk 'length($0) >= 2' > "$work/corpus.txt"
echo "    $(wc -l < "$work/corpus.txt") lines, $(awk '{ s += length($0) } END { printf "%.1f", s / NR }' "$work/corpus.txt") bytes a line on average"

echo "== presence-message-gen: $messages messages, $conversations conversations, $big in alice and bob's"
begin=$(now_ms)
"$gen" --data "$work/data" --corpus "$work/corpus.txt" --messages "$messages" --conversations "$conversations" --big "$big" \
    --tsv "$work/rows.tsv" --tsv-rows 1000000 > "$work/gen.json" 2> "$work/gen.err"
echo "    $(cat "$work/gen.json") in $(( $(now_ms) - begin )) ms"
id=$(sed -E 's/.*"big":"([^"]+)".*/\1/' "$work/gen.json")
log_bytes=$(du -sb "$work/data/messages" | cut -f1)
echo "    log: $log_bytes bytes, $(awk -v b="$log_bytes" -v m="$messages" 'BEGIN { printf "%.1f", b / m }') bytes a message"

echo "== empty data directory: RSS after start"
start_server "$work/empty"
empty_rss=$(rss_kib "$server")
echo "    ready in $started_ms ms, RSS $empty_rss KiB"
stop_server

echo "== first start on the messages: the index built from the log"
start_server "$work/data"
echo "    ready in $started_ms ms, RSS $(rss_kib "$server") KiB"
stop_server
index_bytes=$(du -sb "$work/data/messages-index" | cut -f1)
echo "    messages-index: $index_bytes bytes ($(awk -v b="$index_bytes" -v m="$messages" 'BEGIN { printf "%.1f", b / m }') a message)"

echo "== restart: checkpoint + tail"
for run in 1 2 3; do
    start_server "$work/data"
    echo "    run $run: ready in $started_ms ms, RSS $(rss_kib "$server") KiB"
    [[ $run == 3 ]] || stop_server
done
alice=$("$bin" token --dev --user alice --ttl 1h)

echo "== baseline: GET /health"
wrk -t1 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|99%"
echo "== latest page (limit 20) of $id ($big messages), 50 connections"
wrk -t1 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id?limit=20" \
    | grep -E "Requests/sec|99%|Non-2xx"
cat > "$work/older.lua" <<EOF
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/conversations/$id?before_seq=" .. math.random(21, $big) .. "&limit=20")
end
EOF
for connections in 8 50; do
    echo "== random older pages (before_seq uniform in 21..$big, limit 20), $connections connections"
    wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/older.lua" -H "Authorization: Bearer $alice" "http://127.0.0.1:$port" \
        | grep -E "Requests/sec|50%|90%|99%|Non-2xx"
done
cat > "$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"content":"Update standards version to 4.5.0, no changes needed. A message of about a hundred bytes.."}'
EOF
echo "== durable posts (fsync always), 32 connections"
wrk -t1 -c32 -d"${seconds}s" --latency -s "$work/post.lua" -H "Authorization: Bearer $alice" "http://127.0.0.1:$port/v1/conversations/$id/messages" \
    | grep -E "Requests/sec|99%|Non-2xx"
rss=$(rss_kib "$server")
echo "    server RSS after the loads: $rss KiB; above the empty server: $(( (rss - empty_rss) / 1024 )) MiB;" \
     "beyond the 64 MiB cache budget: $(awk -v r="$rss" -v e="$empty_rss" -v m="$messages" 'BEGIN { printf "%.2f", ((r - e) * 1024 - 64 * 1048576) / m }') bytes a message"
stop_server

if command -v pg_lsclusters >/dev/null && pg_lsclusters -h | grep -q online; then
    echo "== PostgreSQL $(pg_lsclusters -h | awk 'NR == 1 { print $1 }') on the same machine, same run"
    su postgres -c "psql -q" <<'EOF'
DROP DATABASE IF EXISTS message_bench;
CREATE DATABASE message_bench;
EOF
    su postgres -c "psql -q message_bench" <<EOF
CREATE TABLE messages (conv text NOT NULL, seq bigint NOT NULL, sender text NOT NULL, content text NOT NULL, ts bigint NOT NULL, PRIMARY KEY (conv, seq));
CREATE SEQUENCE post_seq;
INSERT INTO messages SELECT 'big', g, 'alice', 'Update standards version to 4.5.0, no changes needed. A message ' || g, 0 FROM generate_series(1, 1000000) g;
CREATE TABLE corpus (LIKE messages INCLUDING ALL);
COPY corpus FROM '$work/rows.tsv';
VACUUM ANALYZE;
EOF
    rows=$(su postgres -c "psql -qAt message_bench -c 'SELECT count(*) FROM corpus'")
    bytes=$(su postgres -c "psql -qAt message_bench -c \"SELECT pg_total_relation_size('corpus')\"")
    echo "    the first $rows messages of the same corpus: $bytes bytes with the primary key, $(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.1f", b / r }') bytes a row"
    cat > "$work/pg-insert.sql" <<'EOF'
\set c random(1, 100000)
INSERT INTO messages (conv, seq, sender, content, ts) VALUES ('bench_' || :c, nextval('post_seq'), 'alice', 'Update standards version to 4.5.0, no changes needed. A message of about a hundred bytes..', 1764766000000);
EOF
    cat > "$work/pg-latest.sql" <<'EOF'
SELECT seq, sender, content, ts FROM messages WHERE conv = 'big' ORDER BY seq DESC LIMIT 20;
EOF
    cat > "$work/pg-older.sql" <<'EOF'
\set s random(21, 1000000)
SELECT seq, sender, content, ts FROM messages WHERE conv = 'big' AND seq < :s ORDER BY seq DESC LIMIT 20;
EOF
    chmod 644 "$work"/*.sql
    echo "== pgbench: inserts (synchronous_commit on), 32 clients"
    su postgres -c "pgbench -n -c32 -j2 -T$seconds -f $work/pg-insert.sql message_bench" | grep -E "^tps|latency average"
    echo "== pgbench: the latest 20 of a conversation, 50 clients, prepared"
    su postgres -c "pgbench -n -c50 -j2 -T$seconds -M prepared -f $work/pg-latest.sql message_bench" | grep -E "^tps|latency average"
    for clients in 8 50; do
        echo "== pgbench: random older pages of a 1M-row conversation, $clients clients, prepared (per-statement latencies: -r)"
        su postgres -c "pgbench -n -c$clients -j2 -T$seconds -M prepared -r -f $work/pg-older.sql message_bench" | grep -E "^tps|latency average|SELECT"
    done
    su postgres -c "psql -q -c 'DROP DATABASE message_bench'"
else
    echo "== PostgreSQL: no cluster online (apt-get install postgresql); our figures alone"
fi
