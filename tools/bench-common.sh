# Sourced by the benchmarks on the generated event stream (bench.sh, bench-retention.sh,
# bench-erasure.sh) once they have set `events` and `users`: the binaries' folder `bin` (BIN, default
# .build/release, built here in release when it is the default: a debug BIN only checks a script, its
# figures mean nothing), the stream generated once into bench-data/ (ignored by git) and reused, and
# the timing helpers `now` and `best`.
bin="${BIN:-.build/release}"
if [[ "$bin" == .build/release ]]; then
    for product in ${BENCH_PRODUCTS:-presence presence-gen}; do
        swift build -c release --product "$product" 2>&1 | grep -Ev '^\[|^Building|^Compiling|^Write' || true
    done
fi
mkdir -p bench-data
stream="bench-data/stream-$events-$users.ndjson"
if [[ ! -s "$stream" ]]; then
    echo "generating $stream"
    "$bin/presence-gen" --events "$events" --users "$users" --seed 42 > "$stream.tmp"
    mv "$stream.tmp" "$stream"
fi
now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -n | head -1; }
