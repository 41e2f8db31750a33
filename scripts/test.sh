#!/usr/bin/env bash
# The whole test suite: unit tests, and end-to-end tests that run the real `presence` binary on real
# files, kill it with SIGKILL, and read its segments with kafka-python. Installs what it needs first.
# Before them, a short fuzzing run of every target (scripts/fuzz-ci.sh; PRESENCE_SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python
[[ ${PRESENCE_SKIP_FUZZ:-} == 1 ]] || bash scripts/fuzz-ci.sh
swift build --build-tests
# Every committed fuzz corpus through its target, built plainly (seconds): the seeds and the inputs
# that once crashed still pass.
for target in record-batch ndjson http checkpoint ws-frame cluster-message; do
    ".build/debug/fuzz-$target" "fuzz/$target/corpus" >/dev/null
done
swift test --skip-build
