// swift-tools-version: 6.1
// libFuzzer targets, kept out of the main package: they have no `main` (libFuzzer supplies it) and
// only build with `-sanitize=fuzzer`. Run them with `make fuzz` (scripts/fuzz).
import PackageDescription

let package = Package(
    name: "WeirFuzz",
    dependencies: [.package(name: "Weir", path: "..")],
    targets: [
        // EventDecoder against the jansson reference: the same decision, the same floats.
        .executableTarget(
            name: "fuzz-decoder",
            dependencies: [.product(name: "FuzzChecks", package: "Weir")]),
        // AvroDecoder against the libavro-c reference: the same decision, the same floats.
        .executableTarget(name: "fuzz-avro", dependencies: [.product(name: "FuzzChecks", package: "Weir")]),
        // Control messages: parse, re-encode, sign and verify, and the rollout state machine.
        .executableTarget(name: "fuzz-control", dependencies: [.product(name: "FuzzChecks", package: "Weir")]),
    ],
    swiftLanguageModes: [.v6]
)
