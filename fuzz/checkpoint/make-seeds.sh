#!/usr/bin/env bash
# Writes the checkpoint seeds (fuzz/checkpoint/corpus) with the current build: a checkpoint carries its
# layout's fingerprint, so after a layout change the old seeds stop at that check and the fuzzer never
# reaches the tables (ProjectorTests' theFuzzSeedsAreCheckpointsOfThisLayout fails until this is run).
# forty-events: 40 generated events of 12 users; reused-ids: devices that reuse their conn ids (key
# histories) and a gateway_down.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.build/debug/presence-gen --events 40 --users 12 --gateways 3 --seed 7 > "$work/a.ndjson"
.build/debug/presence-gen --events 60 --users 8 --gateways 2 --seed 9 --reuse-conns > "$work/b.ndjson"
echo '{"type":"gateway_down","gateway":"gw-1","ts":"2024-01-15T00:10:00.000Z"}' >> "$work/b.ndjson"
for pair in a:forty-events b:reused-ids; do
    stream=${pair%%:*} name=${pair#*:}
    .build/debug/presence ingest --data "$work/$stream" "$work/$stream.ndjson" >/dev/null
    .build/debug/presence replay --data "$work/$stream" --checkpoint --quiet >/dev/null
    cp "$work/$stream"/checkpoints/*.ckpt "fuzz/checkpoint/corpus/$name.ckpt"
    echo "fuzz/checkpoint/corpus/$name.ckpt"
done
