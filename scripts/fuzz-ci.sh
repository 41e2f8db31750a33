#!/usr/bin/env bash
# CI's fuzzing: every target of fuzz/ (the segment reader, the NDJSON parser against its general
# scanner, the HTTP framing against NIO's decoder, the checkpoint loader, WebSocket client frames,
# cluster messages),
# built with AddressSanitizer and libFuzzer in .build-fuzz, for FUZZ_SECONDS each (default 20), from
# the committed seeds. A crash, leak, timeout or oversized allocation fails CI and leaves the input in
# .build-fuzz/crashes/TARGET/ (fuzz/README.md says how to reproduce it). Long runs: tools/fuzz.sh and
# RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fuzz.sh "${FUZZ_SECONDS:-20}" record-batch ndjson http checkpoint ws-frame cluster-message
