/// What a schema-driven decoder (Avro, Protobuf) learned of each feature in the current event, in
/// raw storage made once per decoder, and how the event's row is finished: the bundle's defaults
/// for missing features, or the dead letter naming the first feature that cannot be read.
final class FeatureStates {
    let states: UnsafeMutablePointer<UInt8>
    /// Per feature, 1 when it is categorical.
    let categorical: UnsafeMutablePointer<UInt8>
    let count: Int
    /// After a successful finish: how many features took their default.
    private(set) var defaultedCount = 0

    init(count: Int, categorical: [Bool] = []) {
        self.count = count
        states = .allocate(capacity: max(count, 1))
        states.initialize(repeating: AvroFeatureState.absent.rawValue, count: max(count, 1))
        self.categorical = .allocate(capacity: max(count, 1))
        self.categorical.initialize(repeating: 0, count: max(count, 1))
        for (index, flag) in categorical.enumerated() where flag && index < count { self.categorical[index] = 1 }
    }

    deinit {
        states.deallocate()
        categorical.deallocate()
    }

    /// Every feature absent, before an event.
    @inline(__always)
    func reset() { states.update(repeating: AvroFeatureState.absent.rawValue, count: count) }

    @inline(__always)
    func wasDefaulted(_ index: Int) -> Bool { states[index] != AvroFeatureState.value.rawValue }

    /// The marks a reader writes into `row` and these states during one event.
    func marks(row: UnsafeMutablePointer<Float>) -> FeatureMarks {
        FeatureMarks(row: row, states: states, categorical: categorical, featureCount: count)
    }

    /// Finishes the row after a pass that gave `values` features a number: nil, or why the event is refused.
    func finish(values: Int, row: UnsafeMutablePointer<Float>, schema: FeatureSchema, schemaID: UInt32) -> DecodeFailure? {
        defaultedCount = 0
        if values == count { return nil }
        for index in 0..<count {
            let state = AvroFeatureState(rawValue: states[index])!
            switch state {
            case .value:
                continue
            case .absent, .null:
                guard let value = schema.defaults[index] else {
                    return DecodeFailure(code: .missingFeature,
                                         message: "feature '\(schema.names[index])' is \(state == .null ? "null" : "missing") and has no default (schema id \(schemaID))")
                }
                row[index] = value
                defaultedCount += 1
            default:
                if categorical[index] != 0 {
                    return DecodeFailure(code: .notANumber,
                                         message: "feature '\(schema.names[index])' is \(state.description); it is a category, sent as a string or an enum (schema id \(schemaID))")
                }
                return DecodeFailure(code: .notANumber, message: "feature '\(schema.names[index])' is \(state.description), not a number (schema id \(schemaID))")
            }
        }
        return nil
    }
}

/// A reader's writes for one event: numbers into the row, and each feature's state.
struct FeatureMarks {
    let row: UnsafeMutablePointer<Float>
    let states: UnsafeMutablePointer<UInt8>
    let categorical: UnsafeMutablePointer<UInt8>
    let featureCount: Int
    /// Features given a number so far.
    var values = 0

    /// A number for `column`: NaN is missing, beyond float32 is not a number.
    @inline(__always)
    mutating func set(_ column: Int, _ value: Float) {
        if value.isNaN { return mark(column, .null) }
        if !value.isFinite { return mark(column, .beyondFloat) }
        row[column] = value
        if states[column] != AvroFeatureState.value.rawValue {
            states[column] = AvroFeatureState.value.rawValue
            values &+= 1
        }
    }

    @inline(__always)
    mutating func mark(_ column: Int, _ state: AvroFeatureState) {
        if states[column] == AvroFeatureState.value.rawValue { values &-= 1 }
        states[column] = state.rawValue
    }
}

/// What the decoders of registry formats (Avro, Protobuf) share: the model's features, the writer
/// schemas by id, and each feature's state in the current event (which says what was defaulted).
public class SchemaDrivenDecoder {
    public let schema: FeatureSchema
    let writerSchemas: WriterSchemas
    let states: FeatureStates

    public init(schema: FeatureSchema, writerSchemas: WriterSchemas) {
        self.schema = schema
        self.writerSchemas = writerSchemas
        states = FeatureStates(count: schema.names.count, categorical: schema.categorical)
    }

    /// After a successful decode: how many features took their default.
    public final var defaultedCount: Int { states.defaultedCount }

    /// After a successful decode: whether feature `index` took its default.
    @inline(__always)
    public final func wasDefaulted(_ index: Int) -> Bool { states.wasDefaulted(index) }
}
