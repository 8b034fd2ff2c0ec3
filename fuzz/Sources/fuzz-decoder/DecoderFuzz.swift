import JanssonReference
import WeirCodec

/// The schemas an input can pick with its first byte: required or defaulted features, features at
/// the top level or under a path, and a small size limit.
private let schemas: [FeatureSchema] = {
    var list = [FeatureSchema]()
    for variant in 0..<8 {
        let names = ["amount", "score", "caf\u{e9}", "n"]
        let defaults: [Float?]? = variant & 1 == 0 ? nil : [nil, 0.5, nil, -1]
        let path = variant & 2 == 0 ? [] : ["payload", "features"]
        let limit = variant & 4 == 0 ? 1 << 20 : 48
        list.append(FeatureSchema(names: names, defaults: defaults, featuresPath: path, maxBytes: limit))
    }
    return list
}()

nonisolated(unsafe) private let decoders = schemas.map { EventDecoder(schema: $0) }
nonisolated(unsafe) private var row = [Float](repeating: 0, count: 4)

/// One input: byte 0 picks the schema (bits 0-2) and how the decoder's learned key layout is primed
/// (bit 3); the rest is the event value. Bit 3 clear: the value is decoded twice, the second time
/// with the layout learned from itself. Bit 3 set: the value is split at its first 0xFF byte (never
/// valid in JSON), and the part before primes the layout for the part after. Each decode starts from
/// a forgotten layout plus the primer only, so an input always replays the same way. Any difference
/// from jansson (decision, dead-letter code or a float's bits) is a crash, so libFuzzer keeps the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let variant = Int(data[0]) & 7
    let payload = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let decoder = decoders[variant]
    decoder.forgetLayout()
    if data[0] & 8 != 0, let split = payload.firstIndex(of: 0xFF) {
        compare(UnsafeRawBufferPointer(rebasing: payload[..<split]), variant)
        compare(UnsafeRawBufferPointer(rebasing: payload[(split + 1)...]), variant)
    } else {
        compare(payload, variant)
        compare(payload, variant)
    }
    return 0
}

private func compare(_ payload: UnsafeRawBufferPointer, _ variant: Int) {
    for index in row.indices { row[index] = .nan }
    let ours = row.withUnsafeMutableBufferPointer { decoders[variant].decode(payload, into: $0.baseAddress!) }
    let reference = referenceDecode(Array(payload), schemas[variant])
    switch (ours, reference) {
    case (.success, .accepted(let values)):
        if row.map(\.bitPattern) != values.map(\.bitPattern) {
            fatalError("values differ for \(Array(payload)): ours \(row), jansson \(values)")
        }
    case (.failure(let failure), .rejected(let code)):
        if failure.code != code { fatalError("codes differ for \(Array(payload)): ours \(failure), jansson \(code)") }
    case (_, .undecided):
        break  // a \u0000 in a key: valid JSON that jansson refuses; our decoder's answer stands
    default:
        fatalError("decisions differ for \(Array(payload)) (schema \(variant)): ours \(ours), jansson \(reference)")
    }
}
