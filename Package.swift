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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
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
        // Integer and float GEMM kernels: AVX2 through target attributes, chosen at run time.
        .target(name: "CWeirKernels"),
        .target(
            name: "WeirModel",
            dependencies: ["CWeirKernels", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(
            name: "weir",
            dependencies: [
                "WeirKafka", "WeirModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Benchmarks: a Swift passthrough over WeirKafka, its C twin written against
        // librdkafka directly, and the driver that runs both against one broker.
        .executableTarget(
            name: "weir-bench", dependencies: ["WeirKafka", "WeirModel", "WeirCodec"], path: "bench/weir-bench"),
        .executableTarget(
            name: "jansson-peer", dependencies: ["CJansson"], path: "bench/jansson-peer"),
        .executableTarget(
            name: "c-passthrough", dependencies: ["CRdKafka"], path: "bench/c-passthrough"),

        .target(name: "WeirTestSupport", path: "Tests/WeirTestSupport"),
        .testTarget(name: "WeirCodecTests", dependencies: ["WeirCodec", "CJansson"]),
        .testTarget(name: "WeirKafkaTests", dependencies: ["WeirKafka", "WeirTestSupport"]),
        .testTarget(
            name: "WeirModelTests",
            dependencies: ["WeirModel", "CWeirKernels", "WeirTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
