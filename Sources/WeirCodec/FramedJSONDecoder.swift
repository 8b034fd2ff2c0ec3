/// JSON Schema events: Confluent's frame, then a JSON object read by the plain JSON decoder. The
/// schema id must be one the registry knows (else `unknown-schema`); the JSON Schema itself is not
/// needed to read features by name.
public final class FramedJSONDecoder: RowDecoder {
    private let inner: EventDecoder
    private let writerSchemas: WriterSchemas
    /// The last id found present: saves the shared store's lock per event.
    private var lastPresent: UInt32?
    public var schema: FeatureSchema { inner.schema }
    public var defaultedCount: Int { inner.defaultedCount }

    public init(schema: FeatureSchema, writerSchemas: WriterSchemas) {
        inner = EventDecoder(schema: schema)
        self.writerSchemas = writerSchemas
    }

    public func wasDefaulted(_ index: Int) -> Bool { inner.wasDefaulted(index) }

    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        guard let id = ConfluentFrame.schemaID(of: payload) else { return .failure(ConfluentFrame.failure(for: payload)) }
        if id != lastPresent {
            switch writerSchemas.entry(id) {
            case .present?, .avro?, .protobuf?: lastPresent = id
            case let other: return .failure(WriterSchemas.Entry.refusal(other, id: id, readingAs: "JSON Schema"))
            }
        }
        let body = UnsafeRawBufferPointer(rebasing: payload[ConfluentFrame.headerBytes...])
        switch inner.decode(body, into: row) {
        case .success(let eventID?):
            // Offsets into the whole value, which is what the answer echoes from.
            return .success(EventID(start: eventID.start + ConfluentFrame.headerBytes, end: eventID.end + ConfluentFrame.headerBytes,
                                    isString: eventID.isString))
        case let other: return other
        }
    }
}
