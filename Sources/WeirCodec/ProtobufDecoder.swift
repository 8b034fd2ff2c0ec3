/// Decodes Confluent-framed Protobuf values into feature rows: the frame, the message indexes
/// naming which message of the schema this is, then the message. Per (schema id, message) it
/// builds a plan mapping field numbers to the model's columns; fields are matched by name, so every
/// version of a subject decodes. Proto3 singular scalars read as zero when absent (implicit
/// presence); `optional`, `oneof` and proto2 fields absent are missing. One per model, on one thread.
public final class ProtobufDecoder: SchemaDrivenDecoder, RowDecoder {
    private var plans: [PlanKey: ProtoRowPlan] = [:]
    private var lastPlan: ProtoRowPlan?
    /// Message indexes deeper than this are refused.
    static let maxIndexes = 32

    struct PlanKey: Hashable {
        let schemaID: UInt32
        let path: [Int]
    }


    private func plan(_ key: PlanKey) -> Result<ProtoRowPlan, DecodeFailure> {
        if let lastPlan, lastPlan.key == key { return .success(lastPlan) }
        if let found = plans[key] { lastPlan = found; return .success(found) }
        switch writerSchemas.entry(key.schemaID) {
        case .protobuf(let file)?:
            guard let message = file.message(at: key.path) else {
                return .failure(DecodeFailure(code: .malformedProtobuf, message: "message indexes \(key.path) name no message of schema id \(key.schemaID)"))
            }
            let compiled = ProtoRowPlan(file: file, message: message, key: key, features: schema)
            plans[key] = compiled
            lastPlan = compiled
            return .success(compiled)
        case let other:
            return .failure(WriterSchemas.Entry.refusal(other, id: key.schemaID, readingAs: "Protobuf"))
        }
    }

    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        let schemaID: UInt32, base: UnsafePointer<UInt8>
        switch ConfluentFrame.open(payload, maxBytes: schema.maxBytes) {
        case .success(let frame): (schemaID, base) = frame
        case .failure(let failure): return .failure(failure)
        }
        var reader = ProtoReader(base: base, p: base + ConfluentFrame.headerBytes, end: base + payload.count, marks: states.marks(row: row))
        reader.categories = schema.categories
        // Confluent's message indexes: a zig-zag count, then that many zig-zag indexes; a single 0 is [0].
        guard let count = reader.zigzagVarint(), count >= 0, count <= Int64(Self.maxIndexes) else {
            return .failure(DecodeFailure(code: .malformedProtobuf, message: "the message indexes after the schema id are not readable (schema id \(schemaID))"))
        }
        var path: [Int] = []
        if count == 0 { path = [0] }
        for _ in 0..<Int(count) {
            guard let index = reader.zigzagVarint(), index >= 0, index < 1 << 20 else {
                return .failure(DecodeFailure(code: .malformedProtobuf, message: "a message index is not readable (schema id \(schemaID))"))
            }
            path.append(Int(index))
        }
        let plan: ProtoRowPlan
        switch self.plan(PlanKey(schemaID: schemaID, path: path)) {
        case .success(let found): plan = found
        case .failure(let failure): return .failure(failure)
        }
        states.reset()
        reader.plan = plan
        if plan.levels.count == 1 { reader.applyPresets(plan.levels[0]) }
        if !reader.message(until: reader.end, level: 0, group: nil) {
            return .failure(DecodeFailure(code: .malformedProtobuf,
                                          message: "\(reader.problem) in field \(reader.problemField) at byte \(reader.p - base) (schema id \(schemaID))"))
        }
        if let failure = states.finish(values: reader.marks.values, row: row, schema: schema, schemaID: schemaID) { return .failure(failure) }
        return .success(reader.id)
    }
}

/// What a field of a message on the features path means.
enum ProtoAction {
    case skip
    case feature(column: Int, type: ProtoFieldType)
    case notNumber(column: Int, state: AvroFeatureState)
    /// A string for a categorical feature: its category's code.
    case category(column: Int)
    /// The next message of the features path.
    case descend
    /// A repeated scalar at the end of the path: item i is column i.
    case positional(type: ProtoFieldType)
    case id(type: ProtoFieldType)
    /// A well-known wrapper or timestamp: a number with presence, inside a small message.
    case wrapped(column: Int, type: ProtoFieldType)
}

/// One message of the features path: actions by field number, and the columns that read zero
/// when absent (proto3 implicit presence; applied when the message is present).
struct ProtoLevel {
    var actions: [Int32: ProtoAction] = [:]
    var presets: [Int] = []
    /// Columns whose field is not a number by its declared type: not-a-number whether or not the
    /// value is on the wire (a proto3 zero value is not).
    var mismatches: [(column: Int, state: AvroFeatureState)] = []
}

final class ProtoRowPlan {
    let key: ProtobufDecoder.PlanKey
    /// Level 0 is the value's message; level k + 1 the message in field `featuresPath[k]`.
    let levels: [ProtoLevel]

    init(file: ProtoFile, message root: Int, key: ProtobufDecoder.PlanKey, features: FeatureSchema) {
        self.key = key
        var columns: [String: Int] = [:]
        for (index, name) in features.names.enumerated() where columns[name] == nil { columns[name] = index }
        let path = features.featuresPath
        var levels: [ProtoLevel] = []
        var current: Int? = root
        for level in 0...path.count {
            guard let messageIndex = current else { break }
            var plan = ProtoLevel()
            current = nil
            for field in file.messages[messageIndex].fields {
                if level == 0 && field.name == "id" && !(path.isEmpty && columns["id"] != nil) {
                    switch field.type {
                    case .string, .int32, .int64, .uint32, .uint64, .sint32, .sint64, .fixed32, .fixed64, .sfixed32, .sfixed64:
                        if field.label != .repeated { plan.actions[field.number] = .id(type: field.type) }
                    default: break
                    }
                    continue
                }
                if level < path.count {
                    guard field.name == path[level] else { continue }
                    if case .message(let next) = field.type, field.label != .repeated {
                        plan.actions[field.number] = .descend
                        current = next
                    } else if level == path.count - 1, field.label == .repeated, ProtoRowPlan.isNumeric(field.type) {
                        plan.actions[field.number] = .positional(type: field.type)
                    }
                    continue
                }
                guard let column = columns[field.name] else { continue }
                if features.categorical[column] && field.label != .repeated {
                    // A category: a string; a number (or an enum, whose names the plan does not keep) is refused.
                    if case .string = field.type {
                        plan.actions[field.number] = .category(column: column)
                    } else {
                        let state = ProtoRowPlan.isNumeric(field.type) ? .numeric : ProtoRowPlan.state(of: field.type)
                        plan.actions[field.number] = .notNumber(column: column, state: state)
                        plan.mismatches.append((column, state))
                    }
                    continue
                }
                if field.label == .repeated {
                    plan.actions[field.number] = .notNumber(column: column, state: .array)
                    plan.mismatches.append((column, .array))
                } else if ProtoRowPlan.isWrapped(field.type) {
                    plan.actions[field.number] = .wrapped(column: column, type: field.type)
                } else if ProtoRowPlan.isNumeric(field.type) {
                    plan.actions[field.number] = .feature(column: column, type: field.type)
                    if field.hasImplicitDefault(proto3: file.isProto3) { plan.presets.append(column) }
                } else {
                    let state = ProtoRowPlan.state(of: field.type)
                    plan.actions[field.number] = .notNumber(column: column, state: state)
                    plan.mismatches.append((column, state))
                }
            }
            levels.append(plan)
        }
        self.levels = levels
    }

    /// What a field of a type that is not a number reads as, for the dead letter.
    static func state(of type: ProtoFieldType) -> AvroFeatureState {
        switch type {
        case .string: return .string
        case .enumeration: return .enumeration
        case .message: return .record
        default: return .bytes
        }
    }

    static func isWrapped(_ type: ProtoFieldType) -> Bool {
        switch type {
        case .wrapper, .timestamp: return true
        default: return false
        }
    }

    static func isNumeric(_ type: ProtoFieldType) -> Bool {
        switch type {
        case .double, .float, .int64, .uint64, .int32, .fixed64, .fixed32, .bool, .uint32, .sfixed32, .sfixed64, .sint32, .sint64: return true
        default: return false
        }
    }
}

/// One pass over a Protobuf message. Stops at the first problem.
struct ProtoReader {
    let base: UnsafePointer<UInt8>
    var p: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    var marks: FeatureMarks
    var categories: (any CategoryLookup)?
    var plan: ProtoRowPlan?
    var id: EventID?
    var problem: StaticString = ""
    var problemField: Int64 = 0
    /// Whether the features message has had its implicit zeros applied (merged occurrences keep values).
    var presetsApplied = false

    init(base: UnsafePointer<UInt8>, p: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, marks: FeatureMarks) {
        self.base = base
        self.p = p
        self.end = end
        self.marks = marks
    }

    @inline(__always)
    mutating func varint(before limit: UnsafePointer<UInt8>) -> UInt64? {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        while p < limit {
            let byte = p.pointee
            p += 1
            raw |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return raw }
            shift += 7
            if shift >= 70 { problem = "a varint longer than 10 bytes"; return nil }
        }
        problem = "the value ends inside a varint"
        return nil
    }

    mutating func zigzagVarint() -> Int64? {
        guard let raw = varint(before: end) else { return nil }
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func applyPresets(_ level: ProtoLevel) {
        guard !presetsApplied else { return }
        presetsApplied = true
        for column in level.presets { set(column, 0) }
        for (column, state) in level.mismatches { mark(column, state) }
    }

    @inline(__always)
    mutating func set(_ column: Int, _ value: Float) { marks.set(column, value) }

    @inline(__always)
    mutating func mark(_ column: Int, _ state: AvroFeatureState) { marks.mark(column, state) }

    /// A scalar of `type` sent with wire type `wire`, as a number; nil (and `problem`) when the
    /// value is cut short. `matches` is false for a wire type the field's type does not use.
    mutating func scalar(_ type: ProtoFieldType, wire: UInt64, before limit: UnsafePointer<UInt8>) -> (value: Float, matches: Bool)? {
        switch wire {
        case 0:
            guard let raw = varint(before: limit) else { return nil }
            switch type {
            case .int32: return (Float(Int32(truncatingIfNeeded: raw)), true)
            case .int64: return (Float(Int64(bitPattern: raw)), true)
            case .uint32: return (Float(UInt32(truncatingIfNeeded: raw)), true)
            case .uint64: return (Float(raw), true)
            case .bool: return (raw != 0 ? 1 : 0, true)
            case .sint32:
                let narrow = UInt32(truncatingIfNeeded: raw)
                return (Float(Int32(bitPattern: (narrow >> 1) ^ (0 &- (narrow & 1)))), true)
            case .sint64: return (Float(Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))), true)
            default: return (0, false)
            }
        case 1:
            guard limit - p >= 8 else { problem = "the value ends inside a 64-bit field"; return nil }
            let bits = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self).littleEndian
            p += 8
            switch type {
            case .double:
                let value = Double(bitPattern: bits)
                return (value.isNaN ? .nan : Float(value), true)
            case .fixed64: return (Float(bits), true)
            case .sfixed64: return (Float(Int64(bitPattern: bits)), true)
            default: return (0, false)
            }
        case 5:
            guard limit - p >= 4 else { problem = "the value ends inside a 32-bit field"; return nil }
            let bits = UnsafeRawPointer(p).loadUnaligned(as: UInt32.self).littleEndian
            p += 4
            switch type {
            case .float: return (Float(bitPattern: bits), true)
            case .fixed32: return (Float(bits), true)
            case .sfixed32: return (Float(Int32(bitPattern: bits)), true)
            default: return (0, false)
            }
        default:
            return (0, false)
        }
    }

    /// The fields of a message up to `limit` (or, inside a group, up to its end tag).
    mutating func message(until limit: UnsafePointer<UInt8>, level: Int, group: Int64?) -> Bool {
        let actions = level >= 0 ? plan!.levels[level].actions : [:]
        while p < limit {
            guard let key = varint(before: limit) else { return false }
            let field = Int64(key >> 3), wire = key & 7
            problemField = field
            guard field >= 1 && field <= 536_870_911 else { problem = "a field number out of range"; return false }
            if wire == 4 {
                guard let group, group == field else { problem = "an end-group tag without its start"; return false }
                return true
            }
            let action = level >= 0 ? actions[Int32(field)] ?? .skip : .skip
            switch action {
            case .feature(let column, let type):
                if wire == 2 || wire == 3 {
                    guard skip(wire: wire, field: field, before: limit) else { return false }
                    continue
                }
                guard let read = scalar(type, wire: wire, before: limit) else { return false }
                if !read.matches { if wire > 5 { problem = "a wire type that does not exist"; return false }; continue }
                set(column, read.value)
            case .descend where wire == 2:
                guard let length = varint(before: limit) else { return false }
                guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
                let inner = p + Int(length)
                if level + 1 == plan!.levels.count - 1 { applyPresets(plan!.levels[level + 1]) }
                guard message(until: inner, level: level + 1, group: nil) else { return false }
                p = inner
            case .positional(let type):
                if wire == 2 {
                    guard let length = varint(before: limit) else { return false }
                    guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
                    let inner = p + Int(length)
                    let itemWire: UInt64
                    switch type {
                    case .double, .fixed64, .sfixed64: itemWire = 1
                    case .float, .fixed32, .sfixed32: itemWire = 5
                    default: itemWire = 0
                    }
                    while p < inner {
                        guard let read = scalar(type, wire: itemWire, before: inner) else { return false }
                        positionalItem(read.value)
                    }
                } else {
                    guard let read = scalar(type, wire: wire, before: limit) else { return false }
                    if read.matches { positionalItem(read.value) } else if wire > 5 { problem = "a wire type that does not exist"; return false }
                    else if wire == 3, !skip(wire: wire, field: field, before: limit) { return false }
                }
            case .id(let type) where wire == 2 && type == .string:
                guard let length = varint(before: limit) else { return false }
                guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
                id = .text(start: p - base, end: p - base + Int(length))
                p += Int(length)
            case .id(let type) where wire == 0 && type != .string:
                guard let raw = varint(before: limit) else { return false }
                switch type {
                case .sint32, .sint64: id = .integer(Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))))
                case .int32: id = .integer(Int64(Int32(truncatingIfNeeded: raw)))
                case .uint32: id = .integer(Int64(UInt32(truncatingIfNeeded: raw)))
                default: id = .integer(Int64(bitPattern: raw))
                }
            case .wrapped(let column, let type) where wire == 2:
                guard let length = varint(before: limit) else { return false }
                guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
                let inner = p + Int(length)
                guard let value = wrapped(type, until: inner) else { return false }
                set(column, value)
                p = inner
            case .category(let column) where wire == 2:
                guard let length = varint(before: limit) else { return false }
                guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
                let text = UnsafeRawBufferPointer(start: p, count: Int(length))
                p += Int(length)
                set(column, Float(categories?.code(utf8: text) ?? -1))
            case .notNumber(let column, let state):
                mark(column, state)
                guard skip(wire: wire, field: field, before: limit) else { return false }
            default:
                guard skip(wire: wire, field: field, before: limit) else { return false }
            }
        }
        if group != nil { problem = "a group without its end tag"; return false }
        return p == limit
    }

    private var position = 0

    /// The number inside a wrapper (field 1; absent is 0) or a timestamp/duration (seconds in field
    /// 1, nanos in field 2: milliseconds). Other fields are skipped.
    mutating func wrapped(_ type: ProtoFieldType, until limit: UnsafePointer<UInt8>) -> Float? {
        var value: Float = 0
        var seconds: Int64 = 0, nanos: Int64 = 0
        while p < limit {
            guard let key = varint(before: limit) else { return nil }
            let field = Int64(key >> 3), wire = key & 7
            guard field >= 1 else { problem = "a field number out of range"; return nil }
            switch (type, field, wire) {
            case (.wrapper(let scalarType), 1, _):
                guard let read = scalar(scalarType.fieldType, wire: wire, before: limit) else { return nil }
                if read.matches { value = read.value } else if wire > 5 { problem = "a wire type that does not exist"; return nil }
                else if wire == 2 || wire == 3, !skip(wire: wire, field: field, before: limit) { return nil }
            case (.timestamp, 1, 0):
                guard let raw = varint(before: limit) else { return nil }
                seconds = Int64(bitPattern: raw)
            case (.timestamp, 2, 0):
                guard let raw = varint(before: limit) else { return nil }
                nanos = Int64(Int32(truncatingIfNeeded: raw))
            default:
                guard skip(wire: wire, field: field, before: limit) else { return nil }
            }
        }
        if case .timestamp = type {
            // Milliseconds as a double first: seconds up to ±2^63 cannot trap.
            value = Float(Double(seconds) * 1000 + Double(nanos) / 1e6)
        }
        return value
    }

    mutating func positionalItem(_ value: Float) {
        if position < marks.featureCount { set(position, value) }
        position &+= 1
    }

    /// Skips a value of wire type `wire`.
    mutating func skip(wire: UInt64, field: Int64, before limit: UnsafePointer<UInt8>) -> Bool {
        switch wire {
        case 0: return varint(before: limit) != nil
        case 1:
            guard limit - p >= 8 else { problem = "the value ends inside a 64-bit field"; return false }
            p += 8
        case 5:
            guard limit - p >= 4 else { problem = "the value ends inside a 32-bit field"; return false }
            p += 4
        case 2:
            guard let length = varint(before: limit) else { return false }
            guard length <= UInt64(limit - p) else { problem = "a length beyond the end of the value"; return false }
            p += Int(length)
        case 3:
            groupDepth += 1
            defer { groupDepth -= 1 }
            guard groupDepth < 64 else { problem = "groups nested deeper than 64"; return false }
            return message(until: limit, level: -1, group: field)
        default:
            problem = wire == 4 ? "an end-group tag without its start" : "a wire type that does not exist"
            return false
        }
        return true
    }

    private var groupDepth = 0
}
