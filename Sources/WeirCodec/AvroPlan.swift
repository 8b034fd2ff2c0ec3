/// One step of an Avro row plan. Plans are flat arrays of these; a composite step (union, array,
/// map, a skipped record) names the sequences it runs by their place in the same array.
struct AvroOp {
    enum Kind: UInt8 {
        /// Skips a long (a zig-zag varint of at most 10 bytes).
        case skipVarint
        /// Skips an int (a varint whose value fits 32 bits).
        case skipInt
        /// Skips an enum index, which must be below `a` (the symbol count).
        case skipEnum
        /// Skips `a` bytes (boolean 1, float 4, double 8, fixed n).
        case skipFixed
        /// Skips a length-prefixed string or bytes.
        case skipBytes
        /// Reads a long (any logical type) into the feature.
        case readVarint
        /// Reads an int (any logical type) into the feature.
        case readInt
        case readFloat
        case readDouble
        /// Reads a boolean as 0 or 1.
        case readBoolean
        /// Reads a `decimal` in bytes with scale `b`.
        case readDecimalBytes
        /// Reads a `decimal` in `a` fixed bytes with scale `b`.
        case readDecimalFixed
        /// The feature is null here (a union's null branch).
        case markNull
        /// The feature's writer type is not a number (`a` is a `AvroFeatureState`); the steps
        /// after this one skip the value.
        case markNotNumber
        /// Reads a union's branch index and runs branch sequence `a + index` (`b` branches);
        /// each entry of the table at `a` is a `.sequence`.
        case union
        /// A table entry: the steps `a..<a + b`.
        case sequence
        /// Array blocks, running sequence (a, b) per item; item `i` of a features array is the
        /// row's column `i` (positional steps). `target` is the least encoded size of an item.
        case array
        /// Map blocks: skips each key and runs sequence (a, b) per value.
        case map
        /// Runs slot `a`'s sequence (a record that is skipped; slots allow recursive types).
        case call
        /// The event id as a string, or as a long (an int when `a` is 1).
        case idString
        case idInteger
        /// A string for a feature: its category's code when the feature is categorical, else not a number.
        case readCategoryString
        /// An enum for a feature: its symbol's code (the plan's `enumCodes[a + index]`, `b` symbols)
        /// when the feature is categorical, else not a number.
        case readCategoryEnum
    }

    var kind: Kind
    /// The feature column written, `AvroOp.discard` for none, or `AvroOp.positional`: the item's
    /// position in the features array. For `.array`, the least encoded size of one item.
    var target: Int32
    var a: Int32
    var b: Int32
    /// Index of the field's dotted name in the plan's `fieldNames` (messages).
    var name: Int32

    static let discard: Int32 = -1
    static let positional: Int32 = -2
}

/// What a feature's value was in the current event.
enum AvroFeatureState: UInt8 {
    /// `numeric`: a number given for a categorical feature.
    case absent, value, null, string, bytes, boolean, enumeration, record, array, map, beyondFloat, numeric

    var description: String {
        switch self {
        case .string: return "a string"
        case .bytes: return "bytes"
        case .boolean: return "a boolean"
        case .enumeration: return "an enum"
        case .record: return "a record"
        case .array: return "an array"
        case .map: return "a map"
        case .beyondFloat: return "a number beyond float32"
        default: return "a number"
        }
    }
}

/// A writer schema compiled for one model's features: the steps that read the fields the model
/// needs straight into its row and skip the rest, with no value tree.
final class AvroRowPlan {
    let ops: UnsafeMutableBufferPointer<AvroOp>
    let rootStart: Int32
    let rootCount: Int32
    /// Per slot (skipped records): (start, count) of its sequence.
    let slots: UnsafeMutableBufferPointer<SIMD2<Int32>>
    let fieldNames: [String]
    let schemaID: UInt32
    /// Enum symbols' category codes, for `.readCategoryEnum`.
    let enumCodes: UnsafeMutableBufferPointer<Int64>

    init(schema: AvroType, schemaID: UInt32, features: FeatureSchema) {
        var compiler = AvroPlanCompiler(features: features)
        let root = compiler.emit(compiler.value(schema, .path(0), name: "", depth: 0))
        ops = .allocate(capacity: max(compiler.ops.count, 1))
        _ = ops.initialize(from: compiler.ops)
        slots = .allocate(capacity: max(compiler.slots.count, 1))
        _ = slots.initialize(from: compiler.slots)
        rootStart = root.start
        rootCount = root.count
        fieldNames = compiler.names
        self.schemaID = schemaID
        enumCodes = .allocate(capacity: max(compiler.enumCodes.count, 1))
        _ = enumCodes.initialize(from: compiler.enumCodes)
    }

    deinit {
        enumCodes.deallocate()
        ops.deallocate()
        slots.deallocate()
    }
}

/// Builds a plan: a value's steps for a target (skip, a feature, the id, or the path down to the
/// features record).
struct AvroPlanCompiler {
    enum Target {
        case skip
        case feature(Int32)
        case id
        /// Walking `input.features-path`: `level` names matched so far.
        case path(Int)
    }

    var ops: [AvroOp] = []
    var slots: [SIMD2<Int32>] = []
    var names: [String] = []
    var enumCodes: [Int64] = []
    private let categories: (any CategoryLookup)?
    private var slotOfRecord: [ObjectIdentifier: Int32] = [:]
    private var nameIndex: [String: Int32] = [:]
    private let featureIndex: [String: Int32]
    private let path: [String]

    init(features: FeatureSchema) {
        var index: [String: Int32] = [:]
        for (position, name) in features.names.enumerated() where index[name] == nil { index[name] = Int32(position) }
        featureIndex = index
        path = features.featuresPath
        categories = features.categories
    }

    /// Appends a sequence to the plan: its (start, count).
    mutating func emit(_ sequence: [AvroOp]) -> (start: Int32, count: Int32) {
        let start = Int32(ops.count)
        ops.append(contentsOf: sequence)
        return (start, Int32(sequence.count))
    }

    mutating func nameID(_ name: String) -> Int32 {
        if let found = nameIndex[name] { return found }
        let id = Int32(names.count)
        names.append(name.isEmpty ? "(the record)" : name)
        nameIndex[name] = id
        return id
    }

    static func joined(_ base: String, _ field: String) -> String { base.isEmpty ? field : base + "." + field }

    /// The steps reading one value of `type` for `target`, to be placed inline by the caller.
    mutating func value(_ type: AvroType, _ target: Target, name: String, depth: Int) -> [AvroOp] {
        let type = type.resolved
        let label = nameID(name)
        func op(_ kind: AvroOp.Kind, _ target: Int32 = AvroOp.discard, _ a: Int32 = 0, _ b: Int32 = 0) -> AvroOp {
            AvroOp(kind: kind, target: target, a: a, b: b, name: label)
        }
        switch target {
        case .skip:
            switch type {
            case .null: return []
            case .boolean: return [op(.skipFixed, AvroOp.discard, 1)]
            case .int: return [op(.skipInt)]
            case .long: return [op(.skipVarint)]
            case .enumeration(_, let symbols): return [op(.skipEnum, AvroOp.discard, Int32(clamping: symbols.count))]
            case .float: return [op(.skipFixed, AvroOp.discard, 4)]
            case .double: return [op(.skipFixed, AvroOp.discard, 8)]
            case .bytes, .string: return [op(.skipBytes)]
            case .fixed(_, let size, _): return size == 0 ? [] : [op(.skipFixed, AvroOp.discard, Int32(clamping: size))]
            case .record(let record): return [op(.call, AvroOp.discard, recordSlot(record, name: name, depth: depth))]
            case .recursive: return []  // `resolved` above: never reached
            case .array(let items):
                let body = emit(value(items, .skip, name: name + "[]", depth: depth + 1))
                return [op(.array, Int32(clamping: AvroPlanCompiler.leastSize(items)), body.start, body.count)]
            case .map(let values):
                let body = emit(value(values, .skip, name: name + "{}", depth: depth + 1))
                return [op(.map, AvroOp.discard, body.start, body.count)]
            case .union(let branches):
                return union(branches, .skip, name: name, depth: depth, label: label)
            }
        case .feature(let column):
            switch type {
            case .null: return [op(.markNull, column)]
            case .boolean: return [op(.readBoolean, column)]
            case .int: return [op(.readInt, column)]
            case .long: return [op(.readVarint, column)]
            case .float: return [op(.readFloat, column)]
            case .double: return [op(.readDouble, column)]
            case .bytes(let scale?): return [op(.readDecimalBytes, column, 0, Int32(scale))]
            case .fixed(_, let size, let scale?): return [op(.readDecimalFixed, column, Int32(clamping: size), Int32(scale))]
            case .union(let branches): return union(branches, target, name: name, depth: depth, label: label)
            case .string: return [op(.readCategoryString, column)]
            case .enumeration(_, let symbols):
                let start = Int32(clamping: enumCodes.count)
                for symbol in symbols {
                    var text = symbol
                    enumCodes.append(text.withUTF8 { categories?.code(utf8: UnsafeRawBufferPointer($0)) ?? -1 })
                }
                return [op(.readCategoryEnum, column, start, Int32(clamping: symbols.count))]
            default:
                let state: AvroFeatureState
                switch type {
                case .string: state = .string
                case .enumeration: state = .enumeration
                case .record: state = .record
                case .array: state = .array
                case .map: state = .map
                default: state = .bytes
                }
                return [op(.markNotNumber, column, Int32(state.rawValue))] + value(type, .skip, name: name, depth: depth)
            }
        case .id:
            switch type {
            case .string: return [op(.idString)]
            case .int: return [op(.idInteger, AvroOp.discard, 1)]
            case .long: return [op(.idInteger)]
            case .union(let branches): return union(branches, target, name: name, depth: depth, label: label)
            default: return value(type, .skip, name: name, depth: depth)
            }
        case .path(let level):
            switch type {
            case .record(let record) where depth < 64:
                var steps: [AvroOp] = []
                for field in record.fields {
                    let fieldName = AvroPlanCompiler.joined(name, field.name)
                    let fieldTarget: Target
                    if level == 0 && field.name == "id" && !(level == path.count && featureIndex[field.name] != nil) {
                        fieldTarget = .id
                    } else if level < path.count {
                        fieldTarget = field.name == path[level] ? .path(level + 1) : .skip
                    } else if let column = featureIndex[field.name] {
                        fieldTarget = .feature(column)
                    } else {
                        fieldTarget = .skip
                    }
                    steps += value(field.type, fieldTarget, name: fieldName, depth: depth + 1)
                }
                return steps
            case .array(let items) where level == path.count:
                // Features by position: item i is column i.
                let body = emit(value(items, .feature(AvroOp.positional), name: name + "[]", depth: depth + 1))
                return [op(.array, Int32(clamping: AvroPlanCompiler.leastSize(items)), body.start, body.count)]
            case .union(let branches):
                return union(branches, target, name: name, depth: depth, label: label)
            default:
                return value(type, .skip, name: name, depth: depth)
            }
        }
    }

    private mutating func union(_ branches: [AvroType], _ target: Target, name: String, depth: Int, label: Int32) -> [AvroOp] {
        var bodies: [AvroOp] = []
        for branch in branches {
            let body = emit(value(branch, target, name: name, depth: depth + 1))
            bodies.append(AvroOp(kind: .sequence, target: AvroOp.discard, a: body.start, b: body.count, name: label))
        }
        let table = emit(bodies)
        return [AvroOp(kind: .union, target: AvroOp.discard, a: table.start, b: table.count, name: label)]
    }

    /// The slot whose sequence skips `record`; made once per record type, so recursion ends.
    private mutating func recordSlot(_ record: AvroRecord, name: String, depth: Int) -> Int32 {
        let key = ObjectIdentifier(record)
        if let slot = slotOfRecord[key] { return slot }
        let slot = Int32(slots.count)
        slots.append(SIMD2(0, 0))
        slotOfRecord[key] = slot
        var steps: [AvroOp] = []
        for field in record.fields {
            steps += value(field.type, .skip, name: AvroPlanCompiler.joined(name, field.name), depth: depth + 1)
        }
        let body = emit(steps)
        slots[Int(slot)] = SIMD2(body.start, body.count)
        return slot
    }

    /// The fewest bytes one value of `type` takes: bounds an array's item count by the bytes left.
    static func leastSize(_ type: AvroType, visiting: Set<ObjectIdentifier> = []) -> Int {
        switch type.resolved {
        case .null: return 0
        case .boolean, .int, .long, .enumeration, .bytes, .string, .array, .map, .union: return 1
        case .float: return 4
        case .double: return 8
        case .fixed(_, let size, _): return size
        case .recursive: return 0
        case .record(let record):
            let key = ObjectIdentifier(record)
            if visiting.contains(key) { return 0 }
            var inner = visiting
            inner.insert(key)
            var total = 0
            for field in record.fields { total = min(total + leastSize(field.type, visiting: inner), 1 << 20) }
            return total
        }
    }
}
