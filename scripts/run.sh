#!/usr/bin/env bash
# The main job on the embedded default: build, then ingest a realistic stream of presence events into
# a data folder on local disk (./data, or $PRESENCE_DATA) and show what the log holds.
#   scripts/run.sh [EVENTS]      (default 1,000,000 events over 100,000 users)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
data="${PRESENCE_DATA:-./data}"
bash scripts/setup.sh
echo "== building (release)"
swift build -c release 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write' || true
bin=.build/release
echo "== generating $events events, ingesting into $data (fsync always)"
"$bin/presence-gen" --events "$events" --users 100000 --seed 42 | "$bin/presence" ingest --data "$data" -
echo "== presence log-info --data $data"
"$bin/presence" log-info --data "$data"
echo "== presence dump --data $data --from-offset 0 | head -3"
"$bin/presence" dump --data "$data" --from-offset 0 | head -3
