import Foundation
import WeirDrift

/// Synthetic input events shaped like a fraud-scoring stream: a JSON object of about 750 bytes with
/// an id, some string context and 32 numeric features `f0`...`f31`.
public enum SyntheticEvents {
    public static let featureCount = 32

    /// Event `index`, deterministic, padded with a `note` field to about `targetBytes`.
    public static func event(_ index: Int, targetBytes: Int = 750) -> [UInt8] {
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

    public static func key(_ index: Int) -> [UInt8] { Array("u\(index % 5000)".utf8) }

    /// The kinds of bad input a demo stream mixes in, one per dead-letter code.
    public static let badKinds = ["malformed-json", "missing-feature", "not-a-number", "too-large"]

    /// A bad event of `kind` (see `badKinds`), made from good event `index`.
    public static func badEvent(_ index: Int, kind: String, maxBytes: Int = 1 << 20) -> [UInt8] {
        let good = event(index)
        switch kind {
        case "malformed-json":
            return Array(good.dropLast(5))
        case "missing-feature":
            return Array(String(decoding: good, as: UTF8.self).replacingOccurrences(of: "\"f7\":", with: "\"g7\":").utf8)
        case "not-a-number":
            var text = String(decoding: good, as: UTF8.self)
            if let range = text.range(of: "\"f3\":"), let valueEnd = text[range.upperBound...].firstIndex(of: ",") {
                text.replaceSubrange(range.upperBound..<valueEnd, with: "\"n/a\"")
            }
            return Array(text.utf8)
        default:
            return Array(good.dropLast(2)) + Array(repeating: UInt8(ascii: "x"), count: maxBytes) + Array("\"}".utf8)
        }
    }

    /// Six decimals, like a typical producer's float formatting.
    private static func formatted(_ value: Double) -> String {
        let scaled = (value * 1_000_000).rounded()
        let negative = scaled < 0
        let magnitude = Int(abs(scaled))
        let fraction = String(magnitude % 1_000_000)
        return (negative ? "-" : "") + "\(magnitude / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}
