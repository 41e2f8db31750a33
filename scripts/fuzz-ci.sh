#!/usr/bin/env bash
# CI's fuzzing: the targets whose sanitizer build is quick (the segment reader, the NDJSON parser, the
# checkpoint loader: about two and a half minutes from a clean .build-fuzz) for FUZZ_SECONDS each
# (default 60). The HTTP and WebSocket targets need the whole server and its dependencies rebuilt with
# AddressSanitizer (about ten minutes on this machine), so CI runs their harnesses instead: the
# differential tests of PresenceServerTests, and their committed corpora replayed by scripts/test.sh.
# Long runs: tools/fuzz.sh (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fuzz.sh "${FUZZ_SECONDS:-60}" record-batch ndjson checkpoint
