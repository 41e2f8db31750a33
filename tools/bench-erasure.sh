#!/usr/bin/env bash
# Erasure (issue 16, `presence forget`) on the 10M-event / 1M-user stream, in release builds:
#   1. ingest it with one segment per hour of event time (`--segment-age 1h`), write a checkpoint
#   2. baseline in the same run: a full replay of the log (`presence replay`, best of RUNS)
#   3. `presence forget --user USER` on a fresh copy, RUNS times: time taken, records removed, bytes
#      before and after, and every other user's state compared with the one before (it must not change)
#   4. `presence replay` after the erasure (over the gaps), best of RUNS
#   5. online: `presence serve` on a fresh copy, `POST /v1/admin/forget` while a gateway posts one event
#      every 5 ms (tools/bench-erasure-writer.py): the request's time, and the longest a post waited
# Usage: tools/bench-erasure.sh [EVENTS] [USERS] [USER]   (defaults 10000000 1000000 u42; RUNS=3)
# BIN=.build/debug uses debug builds instead (to check the script itself: its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-10000000}"
users="${2:-1000000}"
user="${3:-u42}"
runs="${RUNS:-3}"
source tools/bench-common.sh
log=bench-data/erasure-log
rm -rf "$log"
"$bin/presence" ingest --data "$log" --segment-age 1h --fsync never "$stream" 2>&1 | tail -1
"$bin/presence" replay --data "$log" --checkpoint --quiet > /dev/null
segments=$(ls "$log/presence" | grep -c '\.log$')
bytes_before=$(du -sb "$log/presence" | cut -f1)
others_before=$("$bin/presence" state --data "$log" --format json | grep -v "\"user\":\"$user\"" | md5sum | cut -d' ' -f1)

replays=()
for _ in $(seq 1 "$runs"); do
    start=$(now); "$bin/presence" replay --data "$log" --quiet > /dev/null; replays+=("$(echo "$(now) - $start" | bc -l)")
done
forgets=(); after_replays=(); result=""; bytes_after=0
for _ in $(seq 1 "$runs"); do
    rm -rf bench-data/erasure-copy; cp -r "$log" bench-data/erasure-copy
    sync
    start=$(now)
    result=$("$bin/presence" forget --data bench-data/erasure-copy --user "$user" 2> /dev/null)
    forgets+=("$(echo "$(now) - $start" | bc -l)")
    bytes_after=$(du -sb bench-data/erasure-copy/presence | cut -f1)
    others_after=$("$bin/presence" state --data bench-data/erasure-copy --format json | md5sum | cut -d' ' -f1)
    [[ "$others_after" == "$others_before" ]] || { echo "another user's state changed after the erasure" >&2; exit 1; }
    "$bin/presence" audit --data bench-data/erasure-copy > /dev/null || { echo "audit is not clean after the erasure" >&2; exit 1; }
    start=$(now); "$bin/presence" replay --data bench-data/erasure-copy --quiet > /dev/null; after_replays+=("$(echo "$(now) - $start" | bc -l)")
done
echo "log: $events events in $segments segments, $bytes_before bytes"
echo "forget --user $user: $result"
echo "forget: best $(best "${forgets[@]}") s of ${forgets[*]}; presence log $bytes_before -> $bytes_after bytes; every other user's state unchanged; audit clean"
echo "baseline full replay: best $(best "${replays[@]}") s of ${replays[*]}"
echo "replay after the erasure (over the gaps): best $(best "${after_replays[@]}") s of ${after_replays[*]}"

# 5. Online, through the server.
python="${PYTHON:-.venv/bin/python}"
onlines=()
for _ in $(seq 1 "$runs"); do
    rm -rf bench-data/erasure-copy; cp -r "$log" bench-data/erasure-copy
    sync
    "$bin/presence" serve --data bench-data/erasure-copy --dev --port 18089 --heartbeat-interval 1h --lease 2h > bench-data/erasure-serve.log 2>&1 &
    server=$!
    for _ in $(seq 1 600); do grep -q "listening on" bench-data/erasure-serve.log && break; sleep 0.1; done
    grep -q "listening on" bench-data/erasure-serve.log || { echo "the server did not start:" >&2; cat bench-data/erasure-serve.log >&2; exit 1; }
    gateway=$("$bin/presence" token --dev --user gw-bench --gateway)
    admin=$("$bin/presence" token --dev --user bench-admin --admin)
    "$python" tools/bench-erasure-writer.py --port 18089 --token "$gateway" > bench-data/erasure-writer.out &
    writer=$!
    sleep 1
    start=$(now)
    answer=$(curl -s -X POST localhost:18089/v1/admin/forget -H "Authorization: Bearer $admin" -d "{\"user\":\"$user\"}")
    onlines+=("$(echo "$(now) - $start" | bc -l)")
    sleep 1
    kill "$writer"; wait "$writer" || true
    kill "$server"; wait "$server" || true
    [[ "$answer" == *'"presence_records"'* ]] || { echo "the online erasure failed: $answer" >&2; exit 1; }
    # The writer's events are today's and the stream's are of 2024: audit counts the stream's open
    # connections as open for years (an anomaly, exit 1); corruption (exit 2) or an unnamed gap fails.
    status=0; report=$("$bin/presence" audit --data bench-data/erasure-copy) || status=$?
    [[ $status -le 1 && "$report" == *"every one named by an erasure record"* && "$report" == *"equals a fresh fold at its offset"* ]] \
        || { echo "audit after the online erasure (exit $status):" >&2; echo "$report" >&2; exit 1; }
    echo "online: $answer; writer: $(cat bench-data/erasure-writer.out)"
done
echo "online erasure (POST /v1/admin/forget, a gateway posting every 5 ms): best $(best "${onlines[@]}") s of ${onlines[*]}"
rm -rf bench-data/erasure-copy
