// swift-tools-version:6.1
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "PresenceLog",
    products: [
        .executable(name: "presence", targets: ["PresenceCLI"]),
        .library(name: "SegmentLog", targets: ["SegmentLog"]),
        .library(name: "Presence", targets: ["Presence"]),
        .library(name: "Projector", targets: ["Projector"]),
        .library(name: "Chat", targets: ["Chat"]),
        .library(name: "NATS", targets: ["NATS"]),
        .library(name: "JetStream", targets: ["JetStream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // Graceful shutdown on SIGTERM/SIGINT (already in the graph through hummingbird): serve's deadline.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // HMAC-SHA256 for erasure records (already in the graph through jwt-kit).
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // Debian's liblz4, found through pkg-config.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // CRC-32C with the SSE 4.2 instruction where the CPU has it, a table otherwise.
        .target(name: "CCRC32C"),
        // A cache prefetch hint for the projector's batched lookups.
        .target(name: "CPrefetch"),
        // The storage engine: Kafka-format segments, indexes, recovery, group commit. Knows nothing of presence.
        .target(name: "SegmentLog", dependencies: ["CLZ4", "CCRC32C"], swiftSettings: strictSwift),
        // Presence events: schema, NDJSON parsing, the binary value codec.
        .target(name: "Presence", dependencies: ["SegmentLog"], swiftSettings: strictSwift),
        // The projector: folds presence events into online / last-seen state.
        .target(name: "Projector", dependencies: ["Presence", "SegmentLog", "CPrefetch", "CCRC32C"], swiftSettings: strictSwift),
        // The chat domain: conversations, membership, messages (their own log), and who may see what
        // (`Access`). Knows nothing of HTTP.
        .target(name: "Chat", dependencies: ["SegmentLog", "Presence"], swiftSettings: strictSwift),
        // Erasure of one user (`presence forget`): segments rewritten with gaps, snapshots without the
        // user, and the erasure records that account for the gaps (keyed hashes, never the id).
        .target(
            name: "Erasure",
            dependencies: ["SegmentLog", "Presence", "Projector", "Chat", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSwift
        ),
        // Cluster mode: a log replicated through a JetStream stream and materialized, in stream order,
        // into each node's local log. Knows nothing of presence.
        .target(
            name: "Cluster",
            dependencies: [
                "SegmentLog", "NATS", "JetStream",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // What clients send, read before any state is touched (the snapshot fast path's HTTP/1 request
        // heads and framing, JSON bodies and WebSocket frames): tested and fuzzed without a server.
        .target(name: "ClientInput", dependencies: ["Presence"], swiftSettings: strictSwift),
        // The query server: HTTP API over the log writer and the live projection.
        .target(
            name: "PresenceServer",
            dependencies: [
                "SegmentLog", "Presence", "Projector", "Chat", "Cluster", "ClientInput", "Erasure",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            // The web console's HTML, CSS and JavaScript, embedded in the binary by the EmbedConsole plugin.
            exclude: ["Console"],
            swiftSettings: strictSwift,
            plugins: ["EmbedConsole"]
        ),
        // Writes files as Swift string literals (run by the EmbedConsole build plugin).
        .executableTarget(name: "embed-files", path: "tools/embed-files", swiftSettings: strictSwift),
        // Embeds Sources/PresenceServer/Console in the server: `presence` stays one self-contained binary.
        .plugin(name: "EmbedConsole", capability: .buildTool(), dependencies: ["embed-files"]),
        // The `presence` command-line tool.
        .executableTarget(
            name: "PresenceCLI",
            dependencies: [
                "SegmentLog", "Presence", "Projector", "Chat", "Erasure", "PresenceServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // A NATS client on SwiftNIO: the core protocol, request/reply, reconnect. Knows nothing of presence or JetStream.
        .target(
            name: "NATS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // JetStream on top of the NATS client: JSON requests on `$JS.API.*`, publish with an ack, pull consumers.
        .target(
            name: "JetStream",
            dependencies: ["NATS", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSwift
        ),
        // Starts real `nats-server` processes on loopback (single servers and JetStream clusters) for tests and benchmarks.
        .target(name: "NATSServerHarness", swiftSettings: strictSwift),
        // Publish and catch-up rates of one JetStream stream, measured with the NATS client.
        .executableTarget(
            name: "nats-bench",
            dependencies: ["NATS", "JetStream", "NATSServerHarness", .product(name: "NIOCore", package: "swift-nio")],
            path: "tools/nats-bench",
            swiftSettings: strictSwift
        ),
        // Deterministic generator of realistic event streams.
        .executableTarget(name: "presence-gen", dependencies: ["Presence"], path: "tools/generate", swiftSettings: strictSwift),
        // A messages log of a chosen size written straight into a data directory (the message-store benchmarks).
        .executableTarget(name: "presence-message-gen", dependencies: ["Chat", "SegmentLog"], path: "tools/message-gen", swiftSettings: strictSwift),
        // What an HTTP/1.1 server on NIO alone answers on this machine (the snapshot's ceiling).
        .executableTarget(
            name: "presence-http-ceiling",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "tools/http-ceiling",
            swiftSettings: strictSwift
        ),
        // Read-path benchmark.
        .executableTarget(name: "presence-bench", dependencies: ["SegmentLog", "Presence", "Projector", "CPrefetch"], path: "tools/bench", swiftSettings: strictSwift),
        // Fuzz targets (fuzz/README.md): each an executable that runs the files named on its command line,
        // or, built for fuzzing by tools/fuzz.sh (-DFUZZING, AddressSanitizer, libFuzzer), libFuzzer's.
        .target(name: "CFuzzing", path: "fuzz/Support/CFuzzing"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzing", "CCRC32C"], path: "fuzz/Support/FuzzSupport", swiftSettings: strictSwift),
        .target(
            name: "HTTPDifferential",
            dependencies: [
                "ClientInput", .product(name: "HummingbirdCore", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "fuzz/Support/HTTPDifferential",
            swiftSettings: strictSwift
        ),
        .executableTarget(name: "fuzz-record-batch", dependencies: ["FuzzSupport", "SegmentLog", "Presence"], path: "fuzz/record-batch",
                          exclude: ["corpus"], swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-ndjson", dependencies: ["FuzzSupport", "Presence", "SegmentLog"], path: "fuzz/ndjson",
                          exclude: ["corpus"], swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-http", dependencies: ["FuzzSupport", "HTTPDifferential"], path: "fuzz/http",
                          exclude: ["corpus", "http.dict"], swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-checkpoint", dependencies: ["FuzzSupport", "Projector", "Presence", "SegmentLog", "CCRC32C"],
                          path: "fuzz/checkpoint", exclude: ["corpus", "make-seeds.sh"], swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-cluster-message", dependencies: ["FuzzSupport", "Cluster", "SegmentLog", "Presence", .product(name: "NIOCore", package: "swift-nio")],
                          path: "fuzz/cluster-message", exclude: ["corpus"], swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-ws-frame", dependencies: ["FuzzSupport", "ClientInput", "Presence", "Chat"], path: "fuzz/ws-frame",
                          exclude: ["corpus"], swiftSettings: strictSwift),
        // What several test targets share (a scratch directory): a module, not copied code.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strictSwift),
        .testTarget(name: "SegmentLogTests", dependencies: ["SegmentLog", "TestSupport"], swiftSettings: strictSwift),
        .testTarget(name: "PresenceTests", dependencies: ["Presence", "TestSupport"], swiftSettings: strictSwift),
        .testTarget(name: "ProjectorTests", dependencies: ["Projector", "Presence", "SegmentLog", "TestSupport"], swiftSettings: strictSwift),
        .testTarget(name: "ChatTests", dependencies: ["Chat", "SegmentLog", "TestSupport"], swiftSettings: strictSwift),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS", "JetStream", "NATSServerHarness",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(name: "ClientInputTests", dependencies: ["ClientInput", "HTTPDifferential", "Presence"], swiftSettings: strictSwift),
        .testTarget(
            name: "PresenceServerTests",
            dependencies: [
                "PresenceServer", "ClientInput", "Chat", "Erasure", "Presence", "Projector", "SegmentLog", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: ["Cluster", "SegmentLog", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["SegmentLog", "Presence", "PresenceCLI", "presence-gen", "TestSupport", "NATS", "JetStream", "NATSServerHarness"],
            swiftSettings: strictSwift
        ),
    ]
)
