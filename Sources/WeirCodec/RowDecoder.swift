/// What every event format's decoder offers the worker: one payload in, one feature row out.
/// The worker holds one per serving model, on the poll thread only (not `Sendable`).
public protocol RowDecoder: AnyObject {
    /// The features it reads, in the model's input order.
    var schema: FeatureSchema { get }
    /// Decodes one payload, writing `schema.names.count` floats to `row`: the event's id (if it
    /// has one) or why it is rejected. A rejected event may leave `row` partly written.
    func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure>
    /// After a successful `decode`: how many features were missing or null (defaults used).
    var defaultedCount: Int { get }
    /// After a successful `decode`: whether feature `index` was missing or null (its default used).
    func wasDefaulted(_ index: Int) -> Bool
}

extension EventDecoder: RowDecoder {}

/// How event values are written (`input.format`).
public enum InputFormat: String, Sendable, CaseIterable {
    /// A JSON object (the default).
    case json
    /// Avro binary in Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, the record.
    case avro
    /// Protobuf in Confluent's wire format (message indexes after the schema id).
    case protobuf
    /// A JSON object in Confluent's wire format (JSON Schema serializer).
    case jsonSchema = "json-schema"

    /// Whether values carry Confluent's frame and need a Schema Registry.
    public var isFramed: Bool { self != .json }

    /// The `schemaType` a registry gives this format's schemas (it omits `AVRO`); nil for plain JSON.
    public var registrySchemaType: String? {
        switch self {
        case .json: return nil
        case .avro: return "AVRO"
        case .protobuf: return "PROTOBUF"
        case .jsonSchema: return "JSON"
        }
    }
}

/// Confluent's wire format: `0x00`, the schema id (4 bytes, big-endian), then the serialized value.
public enum ConfluentFrame {
    /// Bytes before the serialized value.
    public static let headerBytes = 5

    /// The schema id of a framed value, or nil when the value is not framed (too short, or its
    /// first byte is not the magic 0).
    @inline(__always)
    public static func schemaID(of payload: UnsafeRawBufferPointer) -> UInt32? {
        guard payload.count >= headerBytes, payload[0] == 0 else { return nil }
        return UInt32(payload[1]) << 24 | UInt32(payload[2]) << 16 | UInt32(payload[3]) << 8 | UInt32(payload[4])
    }

    /// The dead letter for a value that is not framed, naming what is wrong.
    public static func failure(for payload: UnsafeRawBufferPointer) -> DecodeFailure {
        if payload.count == 0 {
            return DecodeFailure(code: .badWireFormat, message: "empty value; expected Confluent's wire format (magic byte 0, 4-byte schema id)")
        }
        if payload[0] != 0 {
            return DecodeFailure(code: .badWireFormat,
                                 message: "first byte is \(payload[0]), not the magic byte 0 of Confluent's wire format (is the producer using a Schema Registry serializer?)")
        }
        return DecodeFailure(code: .badWireFormat, message: "value is \(payload.count) bytes, shorter than the 5-byte frame header")
    }

    /// A value's schema id and bytes, after the checks every framed decoder makes first: no larger
    /// than `maxBytes` (else `too-large`), and framed (else `bad-wire-format`).
    static func open(_ payload: UnsafeRawBufferPointer, maxBytes: Int) -> Result<(schemaID: UInt32, base: UnsafePointer<UInt8>), DecodeFailure> {
        if payload.count > maxBytes {
            return .failure(DecodeFailure(code: .tooLarge, message: "value is \(payload.count) bytes; the limit is \(maxBytes)"))
        }
        guard let schemaID = schemaID(of: payload), let base = payload.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            return .failure(failure(for: payload))
        }
        return .success((schemaID, base))
    }

    /// Writes a frame header for `schemaID` (producers: the demo, tests, Avro outputs).
    public static func header(schemaID: UInt32) -> [UInt8] {
        [0, UInt8(schemaID >> 24), UInt8(truncatingIfNeeded: schemaID >> 16), UInt8(truncatingIfNeeded: schemaID >> 8),
         UInt8(truncatingIfNeeded: schemaID)]
    }
}
