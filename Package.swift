// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Weir",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "weir", targets: ["weir"]),
        .library(name: "WeirKafka", targets: ["WeirKafka"]),
        .library(name: "WeirModel", targets: ["WeirModel"]),
        .library(name: "WeirCodec", targets: ["WeirCodec"]),
        .library(name: "WeirRegistry", targets: ["WeirRegistry"]),
        .library(name: "WeirDrift", targets: ["WeirDrift"]),
        .library(name: "WeirControl", targets: ["WeirControl"]),
        .library(name: "WeirStore", targets: ["WeirStore"]),
        .library(name: "WeirWorker", targets: ["WeirWorker"]),
        .library(name: "WeirBatch", targets: ["WeirBatch"]),
        // For the fuzz package (fuzz/): the jansson reference decoder the decoder fuzzer compares with.
        .library(name: "JanssonReference", targets: ["JanssonReference"]),
        // For the fuzz package and the benchmark: libavro-c's reading of Avro, Weir's Avro reference.
        .library(name: "AvroReference", targets: ["AvroReference"]),
        // The fuzz targets' checks, which `make test` also replays over the committed corpus.
        .library(name: "FuzzChecks", targets: ["FuzzChecks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // Test-only: the OTLP/gRPC receiver (already in the graph through swift-otel's gRPC exporter).
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.0.0"),
    ],
    targets: [
        // System libraries from Debian: only the module that wraps each imports it.
        .systemLibrary(
            name: "CRdKafka", path: "Sources/CRdKafka", pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(
            name: "CJansson", path: "Sources/CJansson", pkgConfig: "jansson",
            providers: [.apt(["libjansson-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),

        .target(name: "WeirKafka", dependencies: ["CRdKafka"]),
        .target(name: "WeirCodec"),
        // One blocking HTTP request through libcurl (non-variadic, for Swift): the registry's transport.
        .target(name: "CWeirHTTP", linkerSettings: [.linkedLibrary("curl")]),
        // The Schema Registry: a REST client, and a small in-memory registry for tests and the demo.
        .target(name: "WeirRegistry", dependencies: ["CWeirHTTP"]),
        // The event semantics over jansson's DOM: the reference for differential tests and fuzzing.
        .target(name: "JanssonReference", dependencies: ["WeirCodec", "CJansson"]),
        // The Avro semantics over libavro-c's generic values: the reference for differential tests,
        // fuzzing and the benchmark's peer (C: avro-c's value API is macros).
        .target(name: "AvroReference", linkerSettings: [.linkedLibrary("avro")]),
        // The decoder's differential check and the control-message properties: one copy, run by
        // the libFuzzer targets (fuzz/) and by the corpus replay test.
        .target(name: "FuzzChecks", dependencies: ["WeirCodec", "JanssonReference", "AvroReference", "WeirControl"]),
        // Integer and float GEMM kernels: AVX2 through target attributes, chosen at run time.
        .target(name: "CWeirKernels"),
        .target(
            name: "WeirModel",
            dependencies: ["CWeirKernels", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Drift: reference profiles, window statistics (PSI, JS, Wasserstein, KS).
        .target(name: "WeirDrift"),
        // Bundles (manifest, hashes, packaging); control messages and signatures join it later.
        .target(name: "WeirControl", dependencies: ["WeirModel", "WeirDrift", "COpenSSL"]),
        // Tracing: OpenTelemetry spans per batch, exported over OTLP (swift-otel).
        .target(
            name: "WeirTracing",
            dependencies: [
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Bundle locations: s3:// (SigV4, the AWS credential chain), https://, file://, and the
        // content-addressed download cache.
        .target(name: "WeirStore", dependencies: ["WeirControl", "CWeirHTTP"]),
        // The pipeline: settings, poll loop, batcher, offsets, outputs, metrics, HTTP, demo.
        .target(
            name: "WeirWorker",
            dependencies: [
                "WeirKafka", "WeirModel", "WeirCodec", "WeirControl", "WeirDrift", "WeirRegistry", "WeirStore", "WeirTracing",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        // Offline runs: `weir score` (batch scoring on every core) and `weir backtest` (two bundles
        // over the same records, a report and gates).
        .target(name: "WeirBatch", dependencies: ["WeirKafka", "WeirModel", "WeirCodec", "WeirControl", "WeirDrift", "WeirRegistry", "WeirWorker"]),
        .executableTarget(
            name: "weir",
            dependencies: [
                "WeirKafka", "WeirModel", "WeirControl", "WeirWorker", "WeirRegistry", "WeirBatch", "WeirStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Benchmarks: a Swift passthrough over WeirKafka, its C twin written against
        // librdkafka directly, and the driver that runs both against one broker.
        .executableTarget(
            name: "weir-bench", dependencies: ["WeirKafka", "WeirModel", "WeirCodec", "WeirDrift", "WeirWorker", "WeirBatch", "WeirRegistry", "AvroReference",
                                               "WeirTestSupport", "WeirControl"],
            path: "bench/weir-bench"),
        .executableTarget(
            name: "jansson-peer", dependencies: ["CJansson"], path: "bench/jansson-peer"),
        .executableTarget(
            name: "c-passthrough", dependencies: ["CRdKafka"], path: "bench/c-passthrough"),

        .target(name: "WeirTestSupport", dependencies: [
            "WeirDrift", "WeirKafka", "WeirModel", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "GRPCCore", package: "grpc-swift-2"), .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ], path: "Tests/WeirTestSupport"),
        // Counts the calling thread's mallocs (tests of allocation-free paths).
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(name: "WeirCodecTests", dependencies: ["WeirCodec", "JanssonReference", "FuzzChecks", "WeirTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "WeirKafkaTests", dependencies: ["WeirKafka", "WeirTestSupport"]),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzChecks"]),
        .testTarget(
            name: "WeirModelTests",
            dependencies: ["WeirModel", "CWeirKernels", "WeirTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Fixtures"]),
        .testTarget(name: "WeirDriftTests", dependencies: ["WeirDrift", "WeirTestSupport"], exclude: ["Fixtures"]),
        .testTarget(
            name: "WeirWorkerTests",
            dependencies: ["WeirWorker", "WeirBatch", "WeirStore", "WeirKafka", "WeirModel", "WeirCodec", "WeirControl", "WeirDrift", "WeirRegistry", "FuzzChecks", "WeirTestSupport", "CAllocationCounter",
                           .product(name: "Yams", package: "Yams")],
            exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
