import AvroReference
import Foundation
import WeirCodec

/// libavro-c's reading of a framed Avro value with Weir's rules for features applied in feature
/// order (defaults, then missing-feature or not-a-number): the oracle of the Avro differential
/// tests and of the Avro fuzz target.
public final class AvroOracle {
    /// The decision: the row's float bits, or the dead-letter code.
    public enum Outcome: Equatable, Sendable {
        case accepted([UInt32])
        case rejected(DecodeFailure.Code)
    }

    private let reference: OpaquePointer
    private let features: FeatureSchema
    private let scales: [Int32]

    /// Nil when libavro-c cannot parse `schemaText`.
    public init?(schemaText: String, features: FeatureSchema) {
        guard let reference = schemaText.withCString({ weir_avro_reference_new($0, strlen($0)) }),
              let type = try? AvroType.parse(schemaText) else { return nil }
        self.reference = reference
        self.features = features
        scales = AvroOracle.decimalScales(type, features)
    }

    deinit { weir_avro_reference_free(reference) }

    public func decide(_ framed: [UInt8]) -> Outcome {
        guard framed.count >= 5, framed[0] == 0 else { return .rejected(.badWireFormat) }
        var row = [Float](repeating: 0, count: features.names.count)
        var states = [UInt8](repeating: 0, count: features.names.count)
        let body = Array(framed[5...])
        let outcome = withCStrings(features.featuresPath) { path in
            withCStrings(features.names) { names in
                body.withUnsafeBufferPointer { bytes in
                    weir_avro_reference_decode(reference, bytes.baseAddress, bytes.count, path, Int32(features.featuresPath.count), names,
                                               Int32(features.names.count), scales, &row, &states)
                }
            }
        }
        if outcome == Int32(WEIR_AVRO_MALFORMED.rawValue) { return .rejected(.malformedAvro) }
        for index in features.names.indices {
            switch states[index] {
            case UInt8(WEIR_AVRO_VALUE.rawValue): continue
            case UInt8(WEIR_AVRO_NULL.rawValue):
                guard let value = features.defaults[index] else { return .rejected(.missingFeature) }
                row[index] = value
            default: return .rejected(.notANumber)
            }
        }
        return .accepted(row.map(\.bitPattern))
    }

    /// A framed value as libavro-c's JSON encoding of it (tests reading Weir's Avro records); nil
    /// when avro-c cannot read it under this schema.
    public func json(_ framed: [UInt8]) -> String? {
        guard framed.count >= 5, framed[0] == 0 else { return nil }
        var out = [CChar](repeating: 0, count: 1 << 20)
        let body = Array(framed[5...])
        let status = body.withUnsafeBufferPointer { weir_avro_reference_to_json(reference, $0.baseAddress, $0.count, &out, out.count) }
        guard status == 0 else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// What Weir's decoder decides, in the same terms.
    public static func decide(_ decoder: AvroDecoder, _ framed: [UInt8]) -> Outcome {
        var row = [Float](repeating: .nan, count: decoder.schema.names.count)
        let result = framed.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
        switch result {
        case .success: return .accepted(row.map(\.bitPattern))
        case .failure(let failure): return .rejected(failure.code)
        }
    }

    /// Decimal scales per feature, from the writer schema (avro-c 1.11 keeps no logical types).
    static func decimalScales(_ type: AvroType, _ features: FeatureSchema) -> [Int32] {
        func unwrapped(_ type: AvroType) -> AvroType {
            if case .union(let branches) = type, let inner = branches.first(where: { if case .null = $0 { return false }; return true }) { return inner }
            return type
        }
        func record(_ type: AvroType) -> AvroRecord? {
            if case .record(let record) = unwrapped(type) { return record }
            return nil
        }
        func scale(_ type: AvroType) -> Int32? {
            switch type {
            case .bytes(let scale?), .fixed(_, _, let scale?): return Int32(scale)
            case .union(let branches): return branches.lazy.compactMap(scale).first
            default: return nil
            }
        }
        var holder: AvroType? = type
        for name in features.featuresPath { holder = holder.flatMap { record($0)?.fields.first { $0.name == name }?.type } }
        return features.names.map { name in
            guard let holder else { return -1 }
            if let found = record(holder) { return found.fields.first { $0.name == name }.flatMap { scale($0.type) } ?? -1 }
            if case .array(let items) = unwrapped(holder) { return scale(items) ?? -1 }
            return -1
        }
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress ?? UnsafePointer(bitPattern: 8)!) }
}

/// The Avro decoder's differential check against libavro-c, shared by the libFuzzer target and
/// the corpus replay in `make test`. One input: byte 0 picks a writer schema and features (below);
/// the rest is the Avro body, framed under id 1. Weir and the oracle must reach the same decision
/// and, when accepted, the same float bits. The schemas cover every type, unions, nesting, a
/// features path and positional arrays, but no enum and no array or map items of zero bytes:
/// libavro-c reads an enum index as a long and truncates it to an int unchecked (Weir refuses an
/// index beyond 32 bits; the unit tests cover enums with values libavro-c reads as written), and
/// it would spin on the forged counts of empty items (Weir bounds them: `AvroDecoderTests.forgedInputs`).
public final class AvroDifferential {
    public static let schemas: [(text: String, features: FeatureSchema)] = [
        (#"{"type":"record","name":"A","fields":[{"name":"id","type":"string"},{"name":"a","type":"double"},{"name":"b","type":"float"},{"name":"c","type":"int"},{"name":"d","type":"long"},{"name":"e","type":"boolean"}]}"#,
         FeatureSchema(names: ["a", "b", "c", "d", "e"])),
        (#"{"type":"record","name":"B","fields":[{"name":"a","type":["null","double"]},{"name":"s","type":"string"},{"name":"b","type":["null","string","long"]},{"name":"k","type":"int"}]}"#,
         FeatureSchema(names: ["a", "b", "k"], defaults: [-1, nil, nil])),
        (#"{"type":"record","name":"C","fields":[{"name":"m","type":{"type":"map","values":"long"}},{"name":"t","type":{"type":"array","items":{"type":"array","items":"double"}}},{"name":"x","type":{"type":"fixed","name":"F","size":3}},{"name":"v","type":"double"}]}"#,
         FeatureSchema(names: ["v", "absent"], defaults: [nil, 0])),
        (#"{"type":"record","name":"D","fields":[{"name":"p","type":["null",{"type":"record","name":"P","fields":[{"name":"q","type":"double"},{"name":"r","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}]}]}"#,
         FeatureSchema(names: ["q", "r"], defaults: [nil, 7], featuresPath: ["p"])),
        (#"{"type":"record","name":"E","fields":[{"name":"id","type":"int"},{"name":"vals","type":{"type":"array","items":["null","float"]}}]}"#,
         FeatureSchema(names: ["v0", "v1", "v2"], defaults: [nil, 0, nil], featuresPath: ["vals"])),
        (#"{"type":"record","name":"N","fields":[{"name":"v","type":"double"},{"name":"next","type":["null","N"]}]}"#,
         FeatureSchema(names: ["v"])),
        (#"{"type":"record","name":"G","fields":[{"name":"d","type":{"type":"fixed","name":"Dec","size":5,"logicalType":"decimal","precision":11,"scale":3}},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"day","type":{"type":"int","logicalType":"date"}}]}"#,
         FeatureSchema(names: ["d", "ts", "day"])),
        (#"{"type":"record","name":"H","fields":[{"name":"r","type":{"type":"record","name":"R","fields":[{"name":"a","type":"double"}]}},{"name":"a","type":"string"},{"name":"b","type":"bytes"}]}"#,
         FeatureSchema(names: ["r", "a", "b"], defaults: [0, 0, 0])),
    ]

    private let decoders: [AvroDecoder]
    /// Fuzzing: each input gets a fresh libavro-c oracle and, once it is freed, every block
    /// avro-c still holds is freed too (it leaks on some error paths). Only where nothing else
    /// uses avro-c at the same time.
    private let sweeps: Bool

    public init(sweepingLibavroLeaks sweeps: Bool = false) {
        self.sweeps = sweeps
        decoders = Self.schemas.enumerated().map { index, entry in
            let store = WriterSchemas()
            store.store(.avro(try! AvroType.parse(entry.text)), for: UInt32(index + 1))
            return AvroDecoder(schema: entry.features, writerSchemas: store)
        }
    }

    /// Any difference from libavro-c, described; nil when the decoders agree.
    public func check(_ input: UnsafeRawBufferPointer) -> String? {
        guard let first = input.first else { return nil }
        let variant = Int(first) % Self.schemas.count
        let framed = ConfluentFrame.header(schemaID: UInt32(variant + 1)) + Array(input[1...])
        let ours = AvroOracle.decide(decoders[variant], framed)
        let reference: AvroOracle.Outcome = {
            let oracle = AvroOracle(schemaText: Self.schemas[variant].text, features: Self.schemas[variant].features)!
            return oracle.decide(framed)
        }()
        if sweeps { weir_avro_reference_sweep() }
        return ours == reference ? nil : "schema \(variant), body \(Array(input[1...])): Weir \(ours), libavro-c \(reference)"
    }
}
