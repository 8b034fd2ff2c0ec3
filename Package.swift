// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Weir",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "weir", targets: ["weir"]),
        .library(name: "WeirKafka", targets: ["WeirKafka"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .executableTarget(
            name: "weir",
            dependencies: [
                "WeirKafka",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Benchmarks: a Swift passthrough over WeirKafka, its C twin written against
        // librdkafka directly, and the driver that runs both against one broker.
        .executableTarget(
            name: "weir-bench", dependencies: ["WeirKafka"], path: "bench/weir-bench"),
        .executableTarget(
            name: "c-passthrough", dependencies: ["CRdKafka"], path: "bench/c-passthrough"),

        .testTarget(name: "WeirKafkaTests", dependencies: ["WeirKafka"]),
    ],
    swiftLanguageModes: [.v6]
)
