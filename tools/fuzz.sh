#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/README.md) with AddressSanitizer and libFuzzer, in their own scratch
# folder (.build-fuzz), and runs each for SECONDS (default 60) from its committed seed corpus
# (fuzz/TARGET/corpus, only read) and the corpus of earlier runs (.build-fuzz/corpus/TARGET, where new
# inputs go). A crash, a leak, a timeout (10 s an input) or an allocation over the target's limit stops
# that target and leaves the input in .build-fuzz/crashes/TARGET/; the script exits 1 after running
# the rest. Long runs: `FUZZ_CONFIG=release nice tools/fuzz.sh 1200` (optimized: about ten times the
# executions a second, for a longer build); FUZZ_JOBS=N adds libFuzzer's -fork=N; FUZZ_RUNS=N stops a
# target after N executions (libFuzzer's -runs) or SECONDS, whichever comes first.
# FUZZ_BUILD_ONLY=1 builds and runs nothing. FUZZ_TIMEOUT=S replaces the 10 s an input may take: for long
# runs that are paused now and then (SIGSTOP while a benchmark needs the machine: libFuzzer measures wall
# time, so a pause of more than 10 s reads as a timeout of the input it interrupted).
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]   (targets: record-batch ndjson http checkpoint ws-frame
# cluster-message)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(record-batch ndjson http checkpoint ws-frame cluster-message)

# libFuzzer without its main (the targets' @main calls LLVMFuzzerRunDriver): the toolchain ships it
# beside clang. -sanitize=fuzzer would link the one with main, which SwiftPM's renamed entry point clashes with.
toolchain=$(dirname "$(readlink -f "$(command -v swiftc)")")/..
runtime=$(ls "$toolchain"/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-*.a 2>/dev/null | head -1)
[[ -n $runtime ]] || { echo "fuzz.sh: libclang_rt.fuzzer_no_main is not in $toolchain/lib/clang: this toolchain has no libFuzzer" >&2; exit 1; }
config=${FUZZ_CONFIG:-debug}
flags=(-c "$config" --scratch-path .build-fuzz
    -Xswiftc -DFUZZING -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
    -Xswiftc -use-ld=lld -Xlinker --whole-archive -Xlinker "$runtime" -Xlinker --no-whole-archive -Xlinker -lstdc++)
for target in "${targets[@]}"; do
    echo "== building fuzz-$target"
    swift build "${flags[@]}" --product "fuzz-$target" 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write|Cannot export|^Fetch|^Comput|^Creat|^Working' || true
    [[ -x .build-fuzz/$config/fuzz-$target ]] || { echo "fuzz.sh: fuzz-$target did not build" >&2; exit 1; }
done

[[ ${FUZZ_BUILD_ONLY:-} == 1 ]] && exit 0

# Per target: the longest input tried, and the largest single allocation allowed (MiB): a segment's
# reader keeps 4 MiB read and 1 MiB record buffers; nothing may allocate what a header only claims.
declare -A max_len=([record-batch]=65536 [ndjson]=4096 [http]=4096 [checkpoint]=131072 [ws-frame]=20000 [cluster-message]=65536)
declare -A malloc_mb=([record-batch]=64 [ndjson]=64 [http]=64 [checkpoint]=64 [ws-frame]=64 [cluster-message]=96)
failed=()
for target in "${targets[@]}"; do
    corpus=.build-fuzz/corpus/$target
    # Not .build-fuzz/artifacts: SwiftPM empties its scratch folder's artifacts/ on every build (a crash input was lost so).
    artifacts=.build-fuzz/crashes/$target/
    mkdir -p "$corpus" "$artifacts"
    echo "== fuzz-$target for ${seconds}s"
    jobs=()
    [[ -n ${FUZZ_JOBS:-} ]] && jobs=(-fork="$FUZZ_JOBS" -ignore_crashes=0)
    [[ -n ${FUZZ_RUNS:-} ]] && jobs+=(-runs="$FUZZ_RUNS")
    # A target's dictionary (fuzz/TARGET/TARGET.dict): tokens mutations insert whole.
    [[ -f fuzz/$target/$target.dict ]] && jobs+=(-dict="fuzz/$target/$target.dict")
    if SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        ".build-fuzz/$config/fuzz-$target" "$corpus" "fuzz/$target/corpus" ${jobs[@]+"${jobs[@]}"} \
        -max_total_time="$seconds" -max_len="${max_len[$target]}" -malloc_limit_mb="${malloc_mb[$target]}" -rss_limit_mb=2048 \
        -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 -artifact_prefix="$artifacts" > ".build-fuzz/fuzz-$target.log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb|Done [0-9]+ runs" ".build-fuzz/fuzz-$target.log" || true
        echo "   corpus: $(ls "$corpus" | wc -l) inputs"
    else
        failed+=("$target")
        grep -v "Cannot export" ".build-fuzz/fuzz-$target.log" | tail -40
        echo "fuzz-$target FAILED: the input is in $artifacts; reproduce with .build-fuzz/$config/fuzz-$target FILE (fuzz/README.md)"
    fi
done
[[ ${#failed[@]} -eq 0 ]] || { echo "fuzz.sh: failed: ${failed[*]}" >&2; exit 1; }
