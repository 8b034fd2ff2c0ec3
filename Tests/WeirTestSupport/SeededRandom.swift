import Foundation

/// A reproducible source of random test inputs. The seed is `WEIR_TEST_SEED` when set, otherwise
/// drawn fresh; either way it is printed with the test's name, so a failure's inputs can be made
/// again (`WEIR_TEST_SEED=<seed> swift test --filter <test>`).
public struct SeededRandom: RandomNumberGenerator {
    public let seed: UInt64
    private var state: UInt64

    public init(_ test: String = #function) {
        if let text = ProcessInfo.processInfo.environment["WEIR_TEST_SEED"], let fixed = UInt64(text) {
            seed = fixed
        } else {
            var system = SystemRandomNumberGenerator()
            seed = system.next()
        }
        state = seed
        print("\(test): random inputs from seed \(seed) (WEIR_TEST_SEED=\(seed) repeats them)")
    }

    /// SplitMix64: small, fast and good enough for test inputs.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
