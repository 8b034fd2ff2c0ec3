import JanssonReference
import WeirCodec

/// The decoder's differential check against jansson, shared by the libFuzzer target (`make fuzz`)
/// and the corpus replay in `make test`: both run exactly this code on an input.
///
/// One input: byte 0 picks the schema (bits 0-2) and how the decoder's learned key layout is primed
/// (bit 3); the rest is the event value. Bit 3 clear: the value is decoded twice, the second time
/// with the layout learned from itself. Bit 3 set: the value is split at its first 0xFF byte (never
/// valid in JSON), and the part before primes the layout for the part after. Each decode starts from
/// a forgotten layout plus the primer only, so an input always replays the same way.
public final class DecoderDifferential {
    /// The schemas an input can pick: required or defaulted features, features at the top level or
    /// under a path, and a small size limit.
    private let schemas: [FeatureSchema]
    private let decoders: [EventDecoder]
    private var row = [Float](repeating: 0, count: 4)

    public init() {
        var list = [FeatureSchema]()
        for variant in 0..<8 {
            let names = ["amount", "score", "caf\u{e9}", "n"]
            let defaults: [Float?]? = variant & 1 == 0 ? nil : [nil, 0.5, nil, -1]
            let path = variant & 2 == 0 ? [] : ["payload", "features"]
            let limit = variant & 4 == 0 ? 1 << 20 : 48
            list.append(FeatureSchema(names: names, defaults: defaults, featuresPath: path, maxBytes: limit))
        }
        schemas = list
        decoders = list.map { EventDecoder(schema: $0) }
    }

    /// Any difference from jansson (decision, dead-letter code or a float's bits), described; nil
    /// when the decoder agrees.
    public func check(_ input: UnsafeRawBufferPointer) -> String? {
        guard let first = input.first else { return nil }
        let variant = Int(first) & 7
        let payload = UnsafeRawBufferPointer(rebasing: input[1...])
        decoders[variant].forgetLayout()
        if first & 8 != 0, let split = payload.firstIndex(of: 0xFF) {
            return compare(UnsafeRawBufferPointer(rebasing: payload[..<split]), variant)
                ?? compare(UnsafeRawBufferPointer(rebasing: payload[(split + 1)...]), variant)
        }
        return compare(payload, variant) ?? compare(payload, variant)
    }

    private func compare(_ payload: UnsafeRawBufferPointer, _ variant: Int) -> String? {
        for index in row.indices { row[index] = .nan }
        let ours = row.withUnsafeMutableBufferPointer { decoders[variant].decode(payload, into: $0.baseAddress!) }
        let reference = referenceDecode(Array(payload), schemas[variant])
        switch (ours, reference) {
        case (.success, .accepted(let values)):
            if row.map(\.bitPattern) != values.map(\.bitPattern) {
                return "values differ for \(Array(payload)): ours \(row), jansson \(values)"
            }
            return nil
        case (.failure(let failure), .rejected(let code)):
            return failure.code == code ? nil : "codes differ for \(Array(payload)): ours \(failure), jansson \(code)"
        case (_, .undecided):
            return nil  // a \u0000 in a key: valid JSON that jansson refuses; our decoder's answer stands
        default:
            return "decisions differ for \(Array(payload)) (schema \(variant)): ours \(ours), jansson \(reference)"
        }
    }
}
