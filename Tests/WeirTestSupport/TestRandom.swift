import WeirDrift

/// SplitMix64 with the draws test corpora and property tests use: the same sequence on every run,
/// no global random state.
public struct TestRandom {
    private var generator: SplitMix64
    public init(state: UInt64) { generator = SplitMix64(seed: state) }

    public mutating func next() -> UInt64 { generator.next() }
    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { generator.nextUnit() }
    public mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    public mutating func pick<T>(_ values: [T]) -> T { values[int(0..<values.count)] }
}
