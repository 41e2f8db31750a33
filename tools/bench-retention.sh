#!/usr/bin/env bash
# Retention (issue 16) on the 10M-event / 1M-user stream, in release builds:
#   1. ingest it with one segment per hour of event time (`--segment-age 1h`, about 27 segments)
#   2. baseline in the same run: a full replay of the log (`presence replay`, best of RUNS)
#   3. `presence retain --before <first event + 12h>` on a fresh copy, RUNS times: time taken and
#      bytes freed, and the current state compared with the one before (it must not change)
#   4. `presence replay` after retention (from the base checkpoint), best of RUNS
# Usage: tools/bench-retention.sh [EVENTS] [USERS]   (defaults 10000000 1000000; RUNS=3)
# BIN=.build/debug uses debug builds instead (to check the script itself: its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-10000000}"
users="${2:-1000000}"
runs="${RUNS:-3}"
source tools/bench-common.sh
log=bench-data/retention-log
rm -rf "$log"
"$bin/presence" ingest --data "$log" --segment-age 1h --fsync never "$stream" | tail -1
segments=$(ls "$log/presence" | grep -c '\.log$')
bytes_before=$(du -sb "$log/presence" | cut -f1)
state_before=$("$bin/presence" state --data "$log" --no-checkpoint --format json | md5sum | cut -d' ' -f1)
cut_time=$(( $(head -c 300 "$stream" | head -1 | sed 's/.*"ts":"\([^"]*\)".*/\1/' | xargs -I{} date -d {} +%s%3N) + 12 * 3600 * 1000 ))

replays=()
for _ in $(seq 1 "$runs"); do
    start=$(now); "$bin/presence" replay --data "$log" --quiet > /dev/null; replays+=("$(echo "$(now) - $start" | bc -l)")
done
retains=(); after_replays=(); freed=0; kept=""
for _ in $(seq 1 "$runs"); do
    rm -rf bench-data/retention-copy; cp -r "$log" bench-data/retention-copy
    sync
    start=$(now)
    kept=$("$bin/presence" retain --data bench-data/retention-copy --before "$cut_time")
    retains+=("$(echo "$(now) - $start" | bc -l)")
    freed=$(( bytes_before - $(du -sb bench-data/retention-copy/presence | cut -f1) ))
    state_after=$("$bin/presence" state --data bench-data/retention-copy --format json | md5sum | cut -d' ' -f1)
    [[ "$state_after" == "$state_before" ]] || { echo "the state changed after retention" >&2; exit 1; }
    start=$(now); "$bin/presence" replay --data bench-data/retention-copy --quiet > /dev/null; after_replays+=("$(echo "$(now) - $start" | bc -l)")
done
echo "log: $events events in $segments segments, $bytes_before bytes"
echo "retain --before $(date -u -d @$((cut_time / 1000)) +%FT%TZ): $kept"
echo "retain: best $(best "${retains[@]}") s of ${retains[*]}; bytes freed $freed; state unchanged"
echo "baseline full replay: best $(best "${replays[@]}") s of ${replays[*]}"
echo "replay after retention (from the base checkpoint): best $(best "${after_replays[@]}") s of ${after_replays[*]}"
rm -rf bench-data/retention-copy
