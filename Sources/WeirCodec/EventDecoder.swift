#if canImport(Glibc)
import Glibc
#endif

/// Finds a category's number from its UTF-8 bytes without allocating: the model's symbol table,
/// which the worker hands to the decoders. A category the model does not know gets its own number
/// for "unknown" (the model's encoders treat it as no category).
public protocol CategoryLookup: AnyObject, Sendable {
    func code(utf8 text: UnsafeRawBufferPointer) -> Int64
}

/// What a decoder reads from an event: feature names in the model's input order, their defaults,
/// and where they live.
public struct FeatureSchema: Sendable {
    /// Feature names, in the order of the model's input columns.
    public let names: [String]
    /// Per feature, the value used when it is missing or null; nil means the event is rejected.
    /// A categorical feature's default is its category's code.
    public let defaults: [Float?]
    /// Per feature, whether it is a category (a JSON string; an Avro string or enum), written to
    /// the row as its code from `categories`, rather than a number.
    public let categorical: [Bool]
    /// The codes of categories, for the categorical features.
    public let categories: (any CategoryLookup)?
    /// Object keys leading to the features (`input.features-path`, split on dots); empty: top level.
    /// The last container may be an array, read by position.
    public let featuresPath: [String]
    /// Larger values are rejected as `too-large` without being parsed.
    public let maxBytes: Int

    public init(names: [String], defaults: [Float?]? = nil, featuresPath: [String] = [], maxBytes: Int = 1 << 20,
                categorical: [Bool]? = nil, categories: (any CategoryLookup)? = nil) {
        self.names = names
        self.defaults = defaults ?? Array(repeating: nil, count: names.count)
        self.categorical = categorical ?? Array(repeating: false, count: names.count)
        self.categories = categories
        self.featuresPath = featuresPath
        self.maxBytes = maxBytes
    }
}

/// Why an event was rejected: a stable code for the dead-letter header and a message naming the field.
public struct DecodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case malformedJSON = "malformed-json"
        case missingFeature = "missing-feature"
        case notANumber = "not-a-number"
        case tooLarge = "too-large"
        /// A framed format's value without Confluent's magic byte and schema id.
        case badWireFormat = "bad-wire-format"
        /// An Avro value that ends early or does not match its writer schema.
        case malformedAvro = "malformed-avro"
        /// A Protobuf value that ends early or breaks the wire format.
        case malformedProtobuf = "malformed-protobuf"
        /// A schema id the Schema Registry says does not exist.
        case unknownSchema = "unknown-schema"
        /// A CSV row with an unterminated quote or more cells than its header (`weir score`).
        case malformedCSV = "malformed-csv"
    }
    public let code: Code
    public let message: String
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The event's `id`, echoed without allocating: a byte range of the payload, or a number.
public struct EventID: Sendable, Equatable {
    /// How the id is written into a JSON record.
    public enum Form: UInt8, Sendable {
        /// `start..<end` is a JSON token, copied as is (quotes included for strings).
        case jsonToken
        /// `start..<end` is raw UTF-8 text (an Avro string), written as a JSON string.
        case text
        /// `integer` is the id (an Avro int or long).
        case integer
    }
    public let start: Int
    public let end: Int
    public let isString: Bool
    public let form: Form
    public let integer: Int64

    /// A JSON token at `start..<end` of the payload.
    public init(start: Int, end: Int, isString: Bool) {
        self.start = start
        self.end = end
        self.isString = isString
        form = .jsonToken
        integer = 0
    }

    /// Raw text at `start..<end` of the payload.
    public static func text(start: Int, end: Int) -> EventID { EventID(start: start, end: end, form: .text, integer: 0) }

    /// A number read from the payload.
    public static func integer(_ value: Int64) -> EventID { EventID(start: 0, end: 0, form: .integer, integer: value) }

    private init(start: Int, end: Int, form: Form, integer: Int64) {
        self.start = start
        self.end = end
        isString = form == .text
        self.form = form
        self.integer = integer
    }
}

/// Decodes event payloads into feature rows in one pass over the bytes: no DOM, and no allocation
/// per event once warm. One decoder per thread.
public final class EventDecoder {
    public let schema: FeatureSchema
    let table: KeyTable
    /// Per feature: the generation of its last value, and what that value was (`FeatureState`).
    /// Raw storage, reached by the parser without reference counting or exclusivity checks.
    let seenGeneration: UnsafeMutablePointer<UInt32>
    let state: UnsafeMutablePointer<UInt8>
    /// The current generation, in a raw cell the parser reads without exclusivity checks.
    let generationCell: UnsafeMutablePointer<UInt32>
    var generation: UInt32 {
        get { generationCell.pointee }
        set { generationCell.pointee = newValue }
    }
    /// Per generation: [0] how many distinct features have a mark, [1] how many marks were not a
    /// number. With every feature marked and none other than a number, `decode` skips its check of
    /// each feature.
    let tally: UnsafeMutablePointer<Int>
    /// The features object's keys by position, learned from the events before (see `MemberLayout`).
    let layout = MemberLayout()
    private var keyScratch: [UInt8] = []
    private var numberScratch: [CChar] = []
    private var pathKeys: [[UInt8]]
    private var failure: DecodeFailure?
    /// Set with a malformed-JSON failure; checked after every value, so kept apart from the message.
    private(set) var isMalformed = false
    private var id: EventID?
    /// Nesting limit, as jansson's.
    static let maxDepth = 2048

    /// What a feature's last value was (`number`: a number given for a categorical feature).
    enum FeatureState: UInt8 {
        case value, null, string, boolean, object, array, beyondFloat, number
        var description: String {
            switch self {
            case .string: return "a string"
            case .boolean: return "a boolean"
            case .object: return "an object"
            case .array: return "an array"
            case .beyondFloat: return "a number beyond float32"
            default: return "a number"
            }
        }
    }

    /// Per feature, 1 when it is categorical (the parser reads it without reference counting).
    let categoricalFlags: UnsafeMutablePointer<UInt8>

    public init(schema: FeatureSchema) {
        self.schema = schema
        categoricalFlags = .allocate(capacity: max(schema.names.count, 1))
        categoricalFlags.initialize(repeating: 0, count: max(schema.names.count, 1))
        for (index, flag) in schema.categorical.enumerated() where flag && index < schema.names.count { categoricalFlags[index] = 1 }
        table = KeyTable(schema.names)
        seenGeneration = .allocate(capacity: max(schema.names.count, 1))
        seenGeneration.initialize(repeating: 0, count: max(schema.names.count, 1))
        state = .allocate(capacity: max(schema.names.count, 1))
        state.initialize(repeating: FeatureState.null.rawValue, count: max(schema.names.count, 1))
        generationCell = .allocate(capacity: 1)
        generationCell.initialize(to: 0)
        tally = .allocate(capacity: 2)
        tally.initialize(repeating: 0, count: 2)
        pathKeys = schema.featuresPath.map { Array($0.utf8) }
        keyScratch.reserveCapacity(256)
        numberScratch.reserveCapacity(64)
    }

    deinit {
        categoricalFlags.deallocate()
        seenGeneration.deallocate()
        state.deallocate()
        generationCell.deallocate()
        tally.deallocate()
    }

    /// Decodes one payload, writing `schema.names.count` floats to `row`. Returns the event's id
    /// (if it has one) or the reason it is rejected. A rejected event may leave `row` partly written.
    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        if payload.count > schema.maxBytes {
            return .failure(DecodeFailure(code: .tooLarge, message: "value is \(payload.count) bytes; the limit is \(schema.maxBytes)"))
        }
        bumpGeneration()
        layout.startEvent()
        failure = nil
        isMalformed = false
        id = nil
        guard let base = payload.baseAddress?.assumingMemoryBound(to: UInt8.self), payload.count > 0 else {
            return .failure(DecodeFailure(code: .malformedJSON, message: "empty value"))
        }
        var parser = Parser(base: base, end: base + payload.count, decoder: self, row: row)
        parser.skipWhitespace()
        if parser.p < parser.end && parser.p.pointee == UInt8(ascii: "{") {
            parser.parseObject(depth: 1, pathLevel: 0)
        } else if failure == nil {
            // Still validate, so a malformed document reports as such.
            parser.skipValue(depth: 1)
            if failure == nil { fail(.malformedJSON, "value is not a JSON object") }
        }
        if failure == nil {
            parser.skipWhitespace()
            if parser.p != parser.end { fail(.malformedJSON, "unexpected data after the JSON value at byte \(parser.offset)") }
        }
        if let failure { return .failure(failure) }
        defaultedCount = 0
        // The common case: every feature was given a number.
        if tally[0] == schema.names.count && tally[1] == 0 { return .success(id) }
        // Features in schema order: missing or null take the default, else the event is rejected.
        for index in 0..<schema.names.count {
            let seen = seenGeneration[index] == generation
            let kind = seen ? FeatureState(rawValue: state[index])! : .null
            switch kind {
            case .value:
                continue
            case .string, .boolean, .object, .array, .beyondFloat, .number:
                if categoricalFlags[index] != 0 {
                    return .failure(DecodeFailure(code: .notANumber,
                                                  message: "feature '\(schema.names[index])' is \(kind.description); it is a category, sent as a string"))
                }
                return .failure(DecodeFailure(code: .notANumber, message: "feature '\(schema.names[index])' is \(kind.description), not a number"))
            case .null:
                if let value = schema.defaults[index] {
                    row[index] = value
                    defaultedCount += 1
                } else {
                    return .failure(DecodeFailure(code: .missingFeature,
                                                  message: "feature '\(schema.names[index])' is \(seen ? "null" : "missing") and has no default"))
                }
            }
        }
        return .success(id)
    }

    /// After a successful `decode`: how many features were missing or null (their defaults used).
    public private(set) var defaultedCount = 0

    /// After a successful `decode`: whether feature `index` was missing or null (its default used).
    @inline(__always)
    public func wasDefaulted(_ index: Int) -> Bool {
        seenGeneration[index] != generation || state[index] == FeatureState.null.rawValue
    }

    func fail(_ code: DecodeFailure.Code, _ message: @autoclosure () -> String) {
        if failure == nil || (!isMalformed && code == .malformedJSON) {
            failure = DecodeFailure(code: code, message: message())
            isMalformed = code == .malformedJSON
        }
    }

    /// Starts a new generation of feature marks: a new event, or a repeated features container
    /// (which replaces the previous one: last key wins, as in jansson).
    func bumpGeneration() {
        tally[0] = 0
        tally[1] = 0
        generation &+= 1
        if generation == 0 {  // wrapped: forget every stale mark
            seenGeneration.update(repeating: 0, count: max(schema.names.count, 1))
            generation = 1
        }
    }

    func setID(_ value: EventID?) { id = value }

    /// Forgets the key layout learned from earlier events, so the next decode takes the full path
    /// for every member (tests and fuzzing use it to make one decode independent of the ones before).
    public func forgetLayout() { layout.reset() }

    func pathKey(_ level: Int) -> [UInt8] { pathKeys[level] }

    var pathDepth: Int { pathKeys.count }

    func withKeyScratch<R>(_ body: (inout [UInt8]) -> R) -> R { body(&keyScratch) }

    /// strtod on a NUL-terminated copy, for numbers the fast path cannot round exactly.
    func slowParse(_ start: UnsafePointer<UInt8>, _ count: Int) -> Double {
        numberScratch.removeAll(keepingCapacity: true)
        for i in 0..<count { numberScratch.append(CChar(bitPattern: start[i])) }
        numberScratch.append(0)
        return numberScratch.withUnsafeBufferPointer { strtod($0.baseAddress!, nil) }
    }
}

/// Open-addressing table from key bytes to feature index (FNV-1a), built once per schema, in flat
/// raw storage so lookups cost no reference counting.
final class KeyTable {
    private let slots: UnsafeMutablePointer<Int32>
    private let bytes: UnsafeMutablePointer<UInt8>
    private let offsets: UnsafeMutablePointer<Int>  // names[i] = bytes[offsets[i]..<offsets[i + 1]]
    private let mask: Int

    init(_ keys: [String]) {
        let names = keys.map { Array($0.utf8) }
        var size = 8
        while size < keys.count * 2 { size <<= 1 }
        mask = size - 1
        slots = .allocate(capacity: size)
        slots.initialize(repeating: -1, count: size)
        let total = names.reduce(0) { $0 + $1.count }
        bytes = .allocate(capacity: max(total, 1))
        offsets = .allocate(capacity: names.count + 1)
        var position = 0
        for (index, name) in names.enumerated() {
            offsets[index] = position
            for b in name { bytes[position] = b; position += 1 }
        }
        offsets[names.count] = position
        for (index, name) in names.enumerated() {
            var slot = name.withUnsafeBufferPointer { Int(truncatingIfNeeded: KeyTable.hash($0)) } & mask
            var duplicate = false
            while slots[slot] >= 0 {
                if names[Int(slots[slot])] == name { duplicate = true; break }  // duplicate name: first wins
                slot = (slot + 1) & mask
            }
            if !duplicate { slots[slot] = Int32(index) }
        }
    }

    deinit {
        slots.deallocate()
        bytes.deallocate()
        offsets.deallocate()
    }

    /// Raw pointers to the table, valid while the table lives: lookups without reference counting.
    var view: KeyTableView { KeyTableView(slots: slots, bytes: bytes, offsets: offsets, mask: mask) }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

/// The lookup half of `KeyTable`, as plain pointers.
struct KeyTableView {
    let slots: UnsafeMutablePointer<Int32>
    let bytes: UnsafeMutablePointer<UInt8>
    let offsets: UnsafeMutablePointer<Int>
    let mask: Int

    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        var slot = Int(truncatingIfNeeded: KeyTable.hash(key)) & mask
        while true {
            let index = Int(slots[slot])
            if index < 0 { return nil }
            let start = offsets[index], count = offsets[index + 1] - start
            if count == key.count {
                // Feature names are short: a byte loop beats a call to memcmp.
                if count <= 16 {
                    var i = 0
                    while i < count && bytes[start + i] == key[i] { i += 1 }
                    if i == count { return index }
                } else if memcmp(bytes + start, key.baseAddress!, count) == 0 {
                    return index
                }
            }
            slot = (slot + 1) & mask
        }
    }
}
