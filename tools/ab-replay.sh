#!/usr/bin/env bash
# Compares two `presence` binaries on the same replay, in order-swapped pairs (A B, B A, A B, ...),
# and prints each run's wall, user and system seconds, then the means of each binary.
#
# On this project's VMs a process's first touches of fresh memory cost 0.05-0.7 s depending on the
# host's page recycling, whichever binary runs, so wall time alone says little: compare user time
# (the code's own work) over at least eight pairs, and swap the order so neither binary always runs
# right after the other.
#
# Usage: tools/ab-replay.sh PAIRS BINARY_A BINARY_B [replay options...]
#   e.g. cp .build/release/presence /tmp/presence-before   (then change, rebuild)
#        tools/ab-replay.sh 8 /tmp/presence-before .build/release/presence --single-thread
# DATA (default bench-data/log) is the data directory replayed; tools/bench.sh makes it.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
pairs=$1; a=$2; b=$3; shift 3
data="${DATA:-bench-data/log}"
[[ -d "$data" ]] || { echo "no data directory $data (run tools/bench.sh first, or set DATA)" >&2; exit 2; }
for i in $(seq 1 "$pairs"); do
    if (( i % 2 )); then order="A B"; else order="B A"; fi
    for which in $order; do
        bin=$a; [[ $which == B ]] && bin=$b
        /usr/bin/time -f "$which %e %U %S" "$bin" replay --data "$data" --quiet "$@" 2>&1 >/dev/null | tail -1
    done
done | awk '
    { print "run " $1 ": wall " $2 " s, user " $3 " s, system " $4 " s"; n[$1]++; w[$1] += $2; u[$1] += $3; s[$1] += $4 }
    END { for (k in n) printf "%s mean of %d: wall %.3f s, user %.3f s, system %.3f s\n", k, n[k], w[k] / n[k], u[k] / n[k], s[k] / n[k] }'
