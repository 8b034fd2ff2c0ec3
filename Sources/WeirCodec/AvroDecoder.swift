#if canImport(Glibc)
import Glibc
#endif

/// Decodes Confluent-framed Avro values into feature rows. Per writer schema id it compiles a
/// plan (`AvroRowPlan`) that reads the model's fields and skips the rest; schema evolution within
/// a subject works because fields are matched by name in each writer schema. One per model, on
/// one thread; the writer schemas come from the shared `WriterSchemas`.
public final class AvroDecoder: SchemaDrivenDecoder, RowDecoder {
    private var plans: [UInt32: AvroRowPlan] = [:]
    /// The plan used last: events of one stream nearly always share their schema id.
    private var lastPlan: AvroRowPlan?
    /// Deeper nesting of values is refused (recursive schemas).
    static let maxDepth = 128

    /// The plan for a schema id, compiled on first use; a failure when the id is not usable.
    private func plan(for id: UInt32) -> Result<AvroRowPlan, DecodeFailure> {
        if let lastPlan, lastPlan.schemaID == id { return .success(lastPlan) }
        if let found = plans[id] {
            lastPlan = found
            return .success(found)
        }
        switch writerSchemas.entry(id) {
        case .avro(let type)?:
            let compiled = AvroRowPlan(schema: type, schemaID: id, features: schema)
            plans[id] = compiled
            lastPlan = compiled
            return .success(compiled)
        case let other:
            return .failure(WriterSchemas.Entry.refusal(other, id: id, readingAs: "Avro", unusableCode: .malformedAvro))
        }
    }

    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        let schemaID: UInt32, base: UnsafePointer<UInt8>
        switch ConfluentFrame.open(payload, maxBytes: schema.maxBytes) {
        case .success(let frame): (schemaID, base) = frame
        case .failure(let failure): return .failure(failure)
        }
        let plan: AvroRowPlan
        switch self.plan(for: schemaID) {
        case .success(let found): plan = found
        case .failure(let failure): return .failure(failure)
        }
        states.reset()
        var reader = AvroReader(base: base, p: base + ConfluentFrame.headerBytes, end: base + payload.count, plan: plan,
                                marks: states.marks(row: row), categories: schema.categories)
        if !reader.run(plan.rootStart, plan.rootCount, depth: 0, position: 0) {
            return .failure(DecodeFailure(code: .malformedAvro,
                                          message: "\(reader.problem) in field '\(plan.fieldNames[Int(reader.problemField)])' at byte \(reader.p - base) (schema id \(schemaID))"))
        }
        if reader.p != reader.end {
            return .failure(DecodeFailure(code: .malformedAvro,
                                          message: "\(reader.end - reader.p) bytes left after the record (schema id \(schemaID)): the value does not match its writer schema"))
        }
        if let failure = states.finish(values: reader.marks.values, row: row, schema: schema, schemaID: schemaID) { return .failure(failure) }
        return .success(reader.id)
    }
}

/// One pass of a plan over one value. Stops at the first problem.
private struct AvroReader {
    let base: UnsafePointer<UInt8>
    var p: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    let ops: UnsafeMutablePointer<AvroOp>
    let slots: UnsafeMutablePointer<SIMD2<Int32>>
    var marks: FeatureMarks
    let enumCodes: UnsafeMutablePointer<Int64>
    let categories: (any CategoryLookup)?
    var id: EventID?
    var problem: StaticString = ""
    var problemField: Int32 = 0
    var hasProblem = false

    init(base: UnsafePointer<UInt8>, p: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, plan: AvroRowPlan, marks: FeatureMarks,
         categories categories_: (any CategoryLookup)?) {
        self.base = base
        self.p = p
        self.end = end
        ops = plan.ops.baseAddress!
        slots = plan.slots.baseAddress!
        enumCodes = plan.enumCodes.baseAddress!
        self.marks = marks
        categories = categories_
    }

    @inline(__always)
    private mutating func fail(_ what: StaticString, _ op: AvroOp) -> Bool {
        problem = what
        problemField = op.name
        hasProblem = true
        return false
    }

    /// A zig-zag varint of at most 10 bytes.
    @inline(__always)
    private mutating func varint(_ op: AvroOp) -> Int64? {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        while p < end {
            let byte = p.pointee
            p += 1
            raw |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))) }
            shift += 7
            if shift >= 70 { _ = fail("a varint longer than 10 bytes", op); return nil }
        }
        _ = fail("the value ends inside a number", op)
        return nil
    }

    /// An int: a varint as for a long, whose value must fit 32 bits (as libavro-c reads it).
    @inline(__always)
    private mutating func varint32(_ op: AvroOp) -> Int32? {
        guard let value = varint(op) else { return nil }
        guard let narrow = Int32(exactly: value) else { _ = fail("an int beyond 32 bits", op); return nil }
        return narrow
    }

    /// The column a feature step writes: its own, or the item's position in a features array;
    /// nil when a position is beyond the model's features.
    @inline(__always)
    private func column(_ op: AvroOp, _ position: Int) -> Int? {
        if op.target >= 0 { return Int(op.target) }
        return position < marks.featureCount ? position : nil
    }

    /// A number for a feature (a categorical feature refuses it).
    @inline(__always)
    private mutating func set(_ column: Int?, _ value: Float) {
        if let column {
            if marks.categorical[column] != 0 { marks.mark(column, .numeric) } else { marks.set(column, value) }
        }
    }

    @inline(__always)
    private mutating func mark(_ column: Int?, _ state: AvroFeatureState) {
        if let column { marks.mark(column, state) }
    }

    /// Runs steps `start..<start + count`; `position` is the current features-array item.
    mutating func run(_ start: Int32, _ count: Int32, depth: Int, position: Int) -> Bool {
        var index = Int(start)
        let stop = index + Int(count)
        while index < stop {
            let op = ops[index]
            index += 1
            switch op.kind {
            case .skipVarint:
                guard varint(op) != nil else { return false }
            case .skipInt:
                guard varint32(op) != nil else { return false }
            case .skipEnum:
                guard let index = varint32(op) else { return false }
                guard index >= 0 && index < op.a else { return fail("an enum index out of range", op) }
            case .skipFixed:
                guard end - p >= Int(op.a) else { return fail("the value ends early", op) }
                p += Int(op.a)
            case .skipBytes:
                guard let length = varint(op) else { return false }
                guard length >= 0 else { return fail("a negative length", op) }
                guard length <= end - p else { return fail("a length beyond the end of the value", op) }
                p += Int(length)
            case .readVarint:
                guard let value = varint(op) else { return false }
                set(column(op, position), Float(value))
            case .readInt:
                guard let value = varint32(op) else { return false }
                set(column(op, position), Float(value))
            case .readFloat:
                guard end - p >= 4 else { return fail("the value ends inside a float", op) }
                let value = Float(bitPattern: UnsafeRawPointer(p).loadUnaligned(as: UInt32.self).littleEndian)
                p += 4
                set(column(op, position), value)
            case .readDouble:
                guard end - p >= 8 else { return fail("the value ends inside a double", op) }
                let value = Double(bitPattern: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self).littleEndian)
                p += 8
                if value.isNaN { mark(column(op, position), .null) } else { set(column(op, position), Float(value)) }
            case .readBoolean:
                guard p < end else { return fail("the value ends inside a boolean", op) }
                let byte = p.pointee
                p += 1
                // Any byte but 0 is true, as avro-c reads it.
                set(column(op, position), byte == 0 ? 0 : 1)
            case .readDecimalBytes:
                guard let length = varint(op) else { return false }
                guard length >= 0 else { return fail("a negative length", op) }
                guard length <= end - p else { return fail("a length beyond the end of the value", op) }
                set(column(op, position), decimal(Int(length), scale: Int(op.b)))
            case .readDecimalFixed:
                guard end - p >= Int(op.a) else { return fail("the value ends inside a decimal", op) }
                set(column(op, position), decimal(Int(op.a), scale: Int(op.b)))
            case .markNull:
                mark(column(op, position), .null)
            case .readCategoryString:
                guard let length = varint(op) else { return false }
                guard length >= 0 else { return fail("a negative length", op) }
                guard length <= end - p else { return fail("a length beyond the end of the value", op) }
                let text = UnsafeRawBufferPointer(start: p, count: Int(length))
                p += Int(length)
                if let column = column(op, position) {
                    if marks.categorical[column] != 0, let categories {
                        marks.set(column, Float(categories.code(utf8: text)))
                    } else {
                        marks.mark(column, .string)
                    }
                }
            case .readCategoryEnum:
                guard let index = varint32(op) else { return false }
                guard index >= 0 && index < op.b else { return fail("an enum index out of range", op) }
                if let column = column(op, position) {
                    if marks.categorical[column] != 0 {
                        marks.set(column, Float(enumCodes[Int(op.a) + Int(index)]))
                    } else {
                        marks.mark(column, .enumeration)
                    }
                }
            case .markNotNumber:
                mark(column(op, position), AvroFeatureState(rawValue: UInt8(op.a)) ?? .bytes)
            case .union:
                guard let branch = varint(op) else { return false }
                guard branch >= 0 && branch < Int64(op.b) else { return fail("a union branch index out of range", op) }
                let body = ops[Int(op.a) + Int(branch)]
                guard run(body.a, body.b, depth: depth, position: position) else { return false }
            case .sequence:
                guard run(op.a, op.b, depth: depth, position: position) else { return false }
            case .array, .map:
                guard depth < AvroDecoder.maxDepth else { return fail("values nested deeper than 128", op) }
                guard blocks(op, depth: depth) else { return false }
            case .call:
                guard depth < AvroDecoder.maxDepth else { return fail("values nested deeper than 128", op) }
                let body = slots[Int(op.a)]
                guard run(body[0], body[1], depth: depth + 1, position: position) else { return false }
            case .idString:
                guard let length = varint(op) else { return false }
                guard length >= 0 else { return fail("a negative length", op) }
                guard length <= end - p else { return fail("a length beyond the end of the value", op) }
                id = .text(start: p - base, end: p - base + Int(length))
                p += Int(length)
            case .idInteger:
                guard let value = op.a == 1 ? varint32(op).map(Int64.init) : varint(op) else { return false }
                id = .integer(value)
            }
        }
        return true
    }

    /// An array's or a map's blocks: a count (negative: followed by the block's size in bytes),
    /// the items, until a count of 0. Counts are bounded by the bytes left, so a forged count
    /// cannot spin.
    private mutating func blocks(_ op: AvroOp, depth: Int) -> Bool {
        let isMap = op.kind == .map
        let leastItem = isMap ? 1 : Int(op.target)
        var position = 0
        // Items of no bytes (nulls, empty records) cost nothing to forge: at most this many.
        var freeItems = 1 << 16
        while true {
            guard var count = varint(op) else { return false }
            if count == 0 { return true }
            if count < 0 {
                guard count != Int64.min else { return fail("a block count out of range", op) }
                count = -count
                // The block's size in bytes, a hint for skipping: read and not trusted (as
                // libavro-c and fastavro read it), since the count bounds the work.
                guard varint(op) != nil else { return false }
            }
            if leastItem > 0 {
                guard count <= Int64((end - p) / leastItem) else { return fail("a block count beyond the end of the value", op) }
            } else {
                guard count <= Int64(freeItems) else { return fail("a block of more empty items than allowed (65,536)", op) }
                freeItems -= Int(count)
            }
            for _ in 0..<Int(count) {
                if isMap {
                    guard let length = varint(op), length >= 0, length <= end - p else {
                        return !hasProblem ? fail("a map key beyond the end of the value", op) : false
                    }
                    p += Int(length)
                }
                guard run(op.a, op.b, depth: depth + 1, position: position) else { return false }
                position &+= 1
            }
        }
    }

    /// A decimal's unscaled big-endian two's-complement integer of `length` bytes, scaled.
    private mutating func decimal(_ length: Int, scale: Int) -> Float {
        var value: Double
        if length == 0 {
            value = 0
        } else if length <= 8 {
            var raw: Int64 = Int64(Int8(bitPattern: p[0]))
            for i in 1..<length { raw = raw << 8 | Int64(p[i]) }
            value = Double(raw)
        } else {
            value = Double(Int8(bitPattern: p[0]))
            for i in 1..<length { value = value * 256 + Double(p[i]) }
        }
        p += length
        var divisor = 1.0
        for _ in 0..<scale { divisor *= 10 }
        value /= divisor
        return Float(value)
    }
}
