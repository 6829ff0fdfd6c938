// swift-tools-version:6.0
import PackageDescription

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
]
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let metrics: [Target.Dependency] = [
    .product(name: "Metrics", package: "swift-metrics"),
    .product(name: "Prometheus", package: "swift-prometheus"),
]

let package = Package(
    name: "parley",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "parley-server", targets: ["parley-server"]),
        .executable(name: "parley", targets: ["parley"]),
        .executable(name: "parley-bench", targets: ["parley-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // JSON files (the default trait) and environment variables; no Yams, no polling reloader.
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
    ],
    targets: [
        // OpenSSL 3 from the system (Debian's libssl-dev): headers only, no code.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // BSD libedit for the terminal client's line editor (history, cursor keys, completion).
        .systemLibrary(name: "CLibEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        // One-line wrappers for what Swift cannot call (macros, variadics, callbacks). No policy.
        .target(name: "CParleyShims", dependencies: ["COpenSSL"]),
        // Password hashing, randomness, constant-time compare, fingerprints (OpenSSL's libcrypto).
        .target(name: "ParleyCrypto", dependencies: ["COpenSSL", "CParleyShims"]),
        // TLS contexts and the SwiftNIO channel handler that drives OpenSSL through memory BIOs.
        .target(name: "ParleyTLS", dependencies: ["COpenSSL", "CParleyShims", "ParleyCrypto", logging] + nio),
        // Wire protocol: JSON codec, requests, replies, server messages, private frames, error codes.
        // No I/O and no NIO, so the fuzz targets build it alone. Full cross-module optimization lets
        // ParleyProtocolNIO specialize the generic encoders for ByteBuffer as when they shared a module.
        .target(name: "ParleyProtocol", swiftSettings: [.unsafeFlags(["-cross-module-optimization"])]),
        // The protocol on SwiftNIO: newline framing (FrameDecoder) and ByteBuffer encode/decode.
        .target(name: "ParleyProtocolNIO", dependencies: ["ParleyProtocol", .product(name: "NIOCore", package: "swift-nio")]),
        // The terminal client's typed-command grammar: parsing, usage and help text, suggestions.
        // Only the client uses it (re-exported by ParleyClient); no dependencies, so it is fuzzable alone.
        .target(name: "ParleyCommands"),
        // Durable state behind a storage protocol; SQLite backend.
        .target(name: "ParleyStore", dependencies: [.product(name: "SQLiteNIO", package: "sqlite-nio"), logging] + nio),
        // ChatStore on PostgreSQL (postgres-nio's pool), for several servers sharing one database. Its own
        // module so that ParleyStore (and whatever links only SQLite) does not pull in postgres-nio.
        .target(name: "ParleyPostgres", dependencies: [
            "ParleyStore", .product(name: "PostgresNIO", package: "postgres-nio"), logging,
        ] + nio),
        // The cluster's pure parts: the notification payloads and their strict codec, the membership
        // (lease) state machine. No I/O, no NIO: fuzzable and unit-tested alone.
        .target(name: "ParleyCluster", dependencies: ["ParleyProtocol"]),
        // Several servers on one PostgreSQL database: LISTEN/NOTIFY routing, leases, the online directory.
        .target(name: "ParleyClusterPostgres", dependencies: [
            "ParleyCluster", logging,
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
        ] + nio),
        .target(name: "ParleyServer", dependencies: [
            "ParleyTLS", "ParleyProtocol", "ParleyProtocolNIO", "ParleyStore", "ParleyPostgres", "ParleyCrypto", "ParleyCluster",
            "ParleyClusterPostgres", "CParleyShims", logging,
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ] + nio + metrics),
        .target(name: "ParleyClient", dependencies: ["ParleyTLS", "ParleyProtocol", "ParleyProtocolNIO", "ParleyCommands", "ParleyCrypto", logging] + nio),
        .target(name: "ParleyTestSupport", dependencies: ["ParleyTLS", "ParleyProtocol", "ParleyProtocolNIO", "ParleyServer", "ParleyClient", "ParleyCrypto"] + nio + metrics),
        // parley-server's settings: one table of descriptors read from flags, environment and a
        // JSON file (swift-configuration), validated into a ServerConfiguration; `check`.
        .target(name: "ParleyServerSettings", dependencies: [
            "ParleyServer", "ParleyTLS", "ParleyStore", "ParleyPostgres", "ParleyCrypto", logging,
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "SystemPackage", package: "swift-system"),
        ] + nio),
        .executableTarget(name: "parley-server", dependencies: [
            "ParleyServer", "ParleyServerSettings", "ParleyTLS", "ParleyStore", "ParleyPostgres", "ParleyCrypto", logging,
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ] + nio + metrics),
        .executableTarget(name: "parley", dependencies: [
            "ParleyClient", "ParleyTLS", "ParleyProtocol", "ParleyProtocolNIO", "CLibEdit", logging,
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ] + nio),
        // Load generator and measurements for docs/PERFORMANCE.md (not part of the test suite).
        .executableTarget(name: "parley-bench", dependencies: [
            "ParleyClient", "ParleyTLS", "ParleyProtocol", "ParleyProtocolNIO", "ParleyCrypto", logging,
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ] + nio),
        // libFuzzer entry points (scripts/fuzz.sh builds them with -sanitize=fuzzer -DFUZZING; a
        // plain build makes them replay the inputs named on the command line).
        .target(name: "FuzzDriver", path: "Fuzz/Driver"),
        .executableTarget(name: "fuzz-protocol", dependencies: ["FuzzDriver", "ParleyProtocol"], path: "Fuzz/ParleyProtocol"),
        .executableTarget(name: "fuzz-commands", dependencies: ["FuzzDriver", "ParleyCommands", "ParleyProtocol"], path: "Fuzz/ParleyCommands"),
        .executableTarget(name: "fuzz-cluster", dependencies: ["FuzzDriver", "ParleyCluster"], path: "Fuzz/ParleyCluster"),
        .testTarget(name: "ParleyCryptoTests", dependencies: ["ParleyCrypto"]),
        .testTarget(name: "ParleyTLSTests", dependencies: [
            "ParleyTLS", "ParleyTestSupport", .product(name: "NIOEmbedded", package: "swift-nio"),
        ] + nio),
        .testTarget(name: "ParleyProtocolTests", dependencies: [
            "ParleyProtocol", "ParleyProtocolNIO", .product(name: "NIOEmbedded", package: "swift-nio"),
        ] + nio),
        .testTarget(name: "ParleyStoreTests", dependencies: ["ParleyStore", "ParleyPostgres", "ParleyTestSupport"] + nio),
        .testTarget(name: "ParleyClientTests", dependencies: [
            "ParleyClient", "ParleyCommands", "ParleyProtocol", "ParleyProtocolNIO", "ParleyTestSupport", "ParleyServer",
        ] + nio),
        .testTarget(name: "ParleyClusterTests", dependencies: ["ParleyCluster"]),
        // Real parley-server nodes on one throwaway PostgreSQL (PostgresProcess).
        .testTarget(name: "ParleyClusterEndToEndTests", dependencies: [
            "ParleyCluster", "ParleyServer", "ParleyTestSupport", "ParleyProtocol",
        ] + nio),
        .testTarget(name: "ParleyServerTests", dependencies: [
            "ParleyServer", "ParleyServerSettings", "ParleyTLS", "ParleyClient", "ParleyTestSupport", "ParleyProtocol", "ParleyProtocolNIO", "ParleyStore",
            "ParleyPostgres",
            // The crash test reads the database file itself (PRAGMA quick_check, what survived).
            .product(name: "SQLiteNIO", package: "sqlite-nio"),
        ] + nio + metrics),
    ]
)
