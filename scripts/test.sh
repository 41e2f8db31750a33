#!/usr/bin/env bash
# The whole test suite: unit tests, and end-to-end tests that run the real `presence` binary on real
# files, kill it with SIGKILL, and read its segments with kafka-python. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python
swift build --build-tests
swift test --skip-build
