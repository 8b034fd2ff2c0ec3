import Foundation
import WeirCodec
import WeirDrift

/// Synthetic input events shaped like a fraud-scoring stream: a JSON object of about 750 bytes with
/// an id, three categories (merchant category, country, channel), a user and 32 numeric features
/// `f0`...`f31`. `models/payments` (the demo's model) reads f0...f7 and the categories;
/// `models/demo` (the benchmarks') the 32 numbers.
public enum SyntheticEvents {
    public static let featureCount = 32

    /// The categories' values, drawn uniformly per event (scripts/make-demo-bundle.py trains on the
    /// same lists).
    public static let merchantCategories = ["5411", "5812", "5999", "4111", "5732", "7995", "4829", "5311"]
    public static let countries = ["NL", "DE", "FR", "GB", "US", "NG"]
    public static let channels = ["web", "app", "pos"]

    /// Event `index`'s merchant category, country and channel.
    public static func categories(_ index: Int) -> (merchantCategory: String, country: String, channel: String) {
        var generator = SplitMix64(seed: UInt64(index) &* 0xD1B5_4A32_D192_ED03 &+ 0x5EED)
        let draw = generator.next()
        return (merchantCategories[Int(draw % UInt64(merchantCategories.count))],
                countries[Int((draw >> 16) % UInt64(countries.count))],
                channels[Int((draw >> 32) % UInt64(channels.count))])
    }

    /// Event `index`'s features `f0`...`f31` as a producer would print them (six decimals):
    /// deterministic, shared by the JSON and Avro forms of the event.
    static func featureTexts(_ index: Int) -> [String] {
        var generator = SplitMix64(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        return (0..<featureCount).map { feature in
            formatted(generator.nextGaussian() * Double(feature % 5 + 1) + Double(feature % 3))
        }
    }

    /// Event `index`'s observed outcome (1: fraud), as scripts/make-demo-bundle.py labels its training
    /// rows: a risk of f0, f1, f5 and the categories plus noise, above the 85th percentile of risk.
    /// What `weir produce --outcomes` publishes, so live outcome windows have something true to measure.
    public static func outcome(_ index: Int) -> Int {
        risk(index) > outcomeThreshold ? 1 : 0
    }

    static func risk(_ index: Int) -> Double {
        var generator = SplitMix64(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        var x = [Double](repeating: 0, count: 6)
        for feature in 0..<6 { x[feature] = generator.nextGaussian() * Double(feature % 5 + 1) + Double(feature % 3) }
        let context = categories(index)
        var noise = SplitMix64(seed: UInt64(index) &* 0xA24B_AED4_963E_E407 &+ 0x0C7)
        return 0.8 * x[0] - 0.5 * x[1] + 0.3 * x[5] + (context.merchantCategory == "7995" ? 1.5 : 0)
            + (context.country == "NG" ? 1.0 : 0) + (context.channel == "web" ? 0.7 : 0) + 0.5 * noise.nextGaussian()
    }

    /// The 85th percentile of the first 20,000 events' risk.
    static let outcomeThreshold: Double = {
        let risks = (0..<20_000).map(risk).sorted()
        return risks[17_000]
    }()

    /// Event `index`, deterministic, padded with a `note` field to about `targetBytes`.
    public static func event(_ index: Int, targetBytes: Int = 750) -> [UInt8] {
        let context = categories(index)
        var json = "{\"id\":\"evt-\(index)\",\"user\":\"u\(index % 5000)\",\"merchant_category\":\"\(context.merchantCategory)\","
            + "\"country\":\"\(context.country)\",\"channel\":\"\(context.channel)\""
        for (feature, text) in featureTexts(index).enumerated() { json += ",\"f\(feature)\":\(text)" }
        let padding = max(0, targetBytes - json.utf8.count - 12)
        json += ",\"note\":\"" + String(repeating: "x", count: padding) + "\"}"
        return Array(json.utf8)
    }

    public static func key(_ index: Int) -> [UInt8] { Array("u\(index % 5000)".utf8) }

    /// The same events as Avro: the writer schema a producer registers under `<topic>-value`.
    public static let avroSchema: String = {
        let features = (0..<featureCount).map { #"{"name":"f\#($0)","type":"double"}"# }.joined(separator: ",")
        return #"{"type":"record","name":"Event","namespace":"weir.demo","fields":[{"name":"id","type":"string"},"#
            + #"{"name":"user","type":"string"},{"name":"merchant_category","type":"string"},{"name":"country","type":"string"},"#
            + #"{"name":"channel","type":"string"},"#
            + features + #",{"name":"note","type":"string"}]}"#
    }()

    /// Event `index` as Confluent-framed Avro under `schemaID`: the same fields and the same
    /// doubles as the JSON event (each the double its JSON text reads as), padded alike.
    public static func avroEvent(_ index: Int, schemaID: UInt32, targetBytes: Int = 750) -> [UInt8] {
        let writer = AvroRecordWriter(capacity: targetBytes + 16)
        writer.frame(schemaID: schemaID)
        writer.string("evt-\(index)")
        writer.string("u\(index % 5000)")
        let context = categories(index)
        writer.string(context.merchantCategory)
        writer.string(context.country)
        writer.string(context.channel)
        for text in featureTexts(index) { writer.double(Double(text)!) }
        writer.string(String(repeating: "x", count: max(0, targetBytes - writer.count - 2)))
        return writer.array
    }

    /// The bad Avro events a demo stream mixes in, one per dead-letter code they produce.
    public static let avroBadKinds = ["bad-wire-format", "malformed-avro", "unknown-schema", "too-large"]

    /// A schema id no registry the demo uses holds.
    public static let unregisteredSchemaID: UInt32 = 999_999

    /// A bad Avro event of `kind` (see `avroBadKinds`), made from good event `index`.
    public static func badAvroEvent(_ index: Int, kind: String, schemaID: UInt32, maxBytes: Int = 1 << 20) -> [UInt8] {
        var good = avroEvent(index, schemaID: schemaID)
        switch kind {
        case "bad-wire-format":
            good[0] = 1
            return good
        case "malformed-avro":
            return Array(good.prefix(60))
        case "unknown-schema":
            return avroEvent(index, schemaID: unregisteredSchemaID)
        default:
            return avroEvent(index, schemaID: schemaID, targetBytes: maxBytes + 100)
        }
    }

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

    /// The poison records a soak mixes in (docs/reliability.md): each must be answered, none may
    /// stop or slow the worker.
    public static let poisonKinds = ["nanosecond-timestamp", "year-3000-timestamp", "deep-nesting", "many-keys",
                                     "duplicate-keys", "byte-order-mark", "large-key"]

    /// `{"x0":0,...,"x4999":0,`: 5,000 keys no model reads, made once.
    private static let manyKeysPrefix = Array(("{" + (0..<5_000).map { "\"x\($0)\":0," }.joined()).utf8)

    /// A poison record of `kind` made from good event `index`: key, value and timestamp (0: now).
    public static func poison(_ index: Int, kind: String) -> (key: [UInt8], value: [UInt8], timestampMs: Int64) {
        let good = event(index)
        let body = good.dropFirst()
        switch kind {
        case "nanosecond-timestamp":
            return (key(index), good, 1_733_000_000_000_000_000)
        case "year-3000-timestamp":
            return (key(index), good, 32_503_680_000_000)
        case "deep-nesting":
            return (key(index), Array("{\"deep\":".utf8) + Array(repeating: UInt8(ascii: "["), count: 5_000)
                        + Array(repeating: UInt8(ascii: "]"), count: 5_000) + Array(",".utf8) + body, 0)
        case "many-keys":
            return (key(index), manyKeysPrefix + body, 0)
        case "duplicate-keys":
            return (key(index), Array("{\"f0\":1,\"f0\":2,".utf8) + body, 0)
        case "byte-order-mark":
            return (key(index), [0xEF, 0xBB, 0xBF] + good, 0)
        default:
            // 100 KB: over a worker producer limited to 64 KiB, so its answer must be made smaller.
            return (Array(repeating: UInt8(ascii: "k"), count: 100_000), good, 0)
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
