# Sourced by the snapshot benchmarks (load-snapshot.sh, load-cluster.sh): `make_conversation PORT` makes,
# on the server at 127.0.0.1:PORT (started with --dev), Alice and Bob's conversation of 20 messages
# with Bob online, and sets `id` (the conversation) and `alice` (her token). Needs `bin`.
make_conversation() {
    local port=$1 gateway
    alice=$("$bin" token --dev --user alice --ttl 1h)
    gateway=$("$bin" token --dev --user gw-1 --gateway --ttl 1h)
    id=$(curl -s -H "Authorization: Bearer $alice" -d '{"members":["alice","bob"]}' "localhost:$port/v1/conversations" | cut -d'"' -f4)
    for i in $(seq 20); do
        curl -s -o /dev/null -H "Authorization: Bearer $alice" -d "{\"content\":\"message number $i, about this long\"}" "localhost:$port/v1/conversations/$id/messages"
    done
    # Bob's connect at the current time: the server's own heartbeats move the log's clock to now, and an
    # older event could fall outside the late-arrival horizon.
    printf '{"type":"connect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":%s}\n' "$(date +%s%3N)" \
        | curl -s -o /dev/null -H "Authorization: Bearer $gateway" --data-binary @- "localhost:$port/v1/events"
}
