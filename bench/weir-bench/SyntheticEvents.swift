#if canImport(Glibc)
import Glibc
#endif

/// Synthetic input events shaped like a fraud-scoring stream: a JSON object of about 750 bytes with
/// an id, some string context and 32 numeric features `f0`...`f31`.
enum SyntheticEvents {
    static let featureCount = 32

    /// Event `index`, deterministic, padded with a `note` field to about `targetBytes`.
    static func event(_ index: Int, targetBytes: Int = 750) -> [UInt8] {
        var generator = SplitMix64(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        var json = "{\"id\":\"evt-\(index)\",\"user\":\"u\(index % 5000)\",\"country\":\"NL\",\"channel\":\"web\""
        for feature in 0..<featureCount {
            let value = generator.nextGaussian() * Double(feature % 5 + 1) + Double(feature % 3)
            json += ",\"f\(feature)\":\(formatted(value))"
        }
        let padding = max(0, targetBytes - json.utf8.count - 12)
        json += ",\"note\":\"" + String(repeating: "x", count: padding) + "\"}"
        return Array(json.utf8)
    }

    static func key(_ index: Int) -> [UInt8] { Array("u\(index % 5000)".utf8) }

    /// Six decimals, like a typical producer's float formatting.
    private static func formatted(_ value: Double) -> String {
        let scaled = (value * 1_000_000).rounded()
        let negative = scaled < 0
        let magnitude = Int(abs(scaled))
        let fraction = String(magnitude % 1_000_000)
        return (negative ? "-" : "") + "\(magnitude / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}

/// A small deterministic generator (SplitMix64) so every run and every contender sees the same events.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func nextGaussian() -> Double {
        let u1 = max(nextUnit(), 1e-12), u2 = nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
