import Synchronization

/// The writer schemas met so far, by Schema Registry id: filled by the registry client (any
/// thread), read by every model's decoder on the poll thread. Ids are global to a registry and a
/// schema under an id never changes, so an entry is kept for the life of the process.
public final class WriterSchemas: Sendable {
    /// What is known of one id.
    public enum Entry: Sendable {
        /// An Avro schema, parsed.
        case avro(AvroType)
        /// A Protobuf schema, parsed.
        case protobuf(ProtoFile)
        /// A schema the registry holds that this input format cannot read (wrong type, bad text).
        case unusable(String)
        /// The registry says the id does not exist.
        case unknown(String)
        /// The id's schema is known to exist; its text is not needed (JSON Schema input).
        case present
    }

    private let entries = Mutex<[UInt32: Entry]>([:])

    public init() {}

    public func entry(_ id: UInt32) -> Entry? { entries.withLock { $0[id] } }

    public func store(_ entry: Entry, for id: UInt32) { entries.withLock { $0[id] = entry } }

    /// How many ids are known (the `weir_schema_registry_schemas` gauge).
    public var count: Int { entries.withLock { $0.count } }
}

extension WriterSchemas.Entry {
    /// The dead letter for a value framed with schema `id` whose entry is not one a `name` decoder
    /// reads (`nil`: never fetched): every framed decoder refuses the same way, and `unusableCode`
    /// is what a schema of its own kind that it cannot use gives.
    static func refusal(_ entry: WriterSchemas.Entry?, id: UInt32, readingAs name: String,
                        unusableCode: DecodeFailure.Code = .badWireFormat) -> DecodeFailure {
        switch entry {
        case .unusable(let why)?:
            return DecodeFailure(code: unusableCode, message: "schema id \(id) cannot be read as \(name): \(why)")
        case .unknown(let why)?:
            return DecodeFailure(code: .unknownSchema, message: "schema id \(id): \(why)")
        case nil:
            return DecodeFailure(code: .unknownSchema, message: "schema id \(id) has not been fetched from the Schema Registry")
        case .avro?, .protobuf?, .present?:
            return DecodeFailure(code: .badWireFormat, message: "schema id \(id) is not a schema a \(name) decoder reads")
        }
    }
}
