import Foundation
import WeirDrift

/// A reproducible source of random test inputs. The seed is `WEIR_TEST_SEED` when set, otherwise
/// drawn fresh; either way it is printed with the test's name, so a failure's inputs can be made
/// again (`WEIR_TEST_SEED=<seed> swift test --filter <test>`).
public struct SeededRandom: RandomNumberGenerator {
    public let seed: UInt64
    private var generator: SplitMix64

    public init(_ test: String = #function) {
        if let text = ProcessInfo.processInfo.environment["WEIR_TEST_SEED"], let fixed = UInt64(text) {
            seed = fixed
        } else {
            var system = SystemRandomNumberGenerator()
            seed = system.next()
        }
        generator = SplitMix64(seed: seed)
        print("\(test): random inputs from seed \(seed) (WEIR_TEST_SEED=\(seed) repeats them)")
    }

    public mutating func next() -> UInt64 { generator.next() }
}
