/// An Avro value, for writing whole against its schema (tests, tools).
public indirect enum AvroValue: Sendable, Equatable {
    case null
    case boolean(Bool)
    case int(Int32)
    case long(Int64)
    case float(Float)
    case double(Double)
    case bytes([UInt8])
    case string(String)
    /// Field values in the schema's field order.
    case record([AvroValue])
    /// The symbol's index.
    case enumeration(Int)
    case array([AvroValue])
    case map([(String, AvroValue)])
    /// The branch index and its value.
    case union(Int, AvroValue)
    case fixed([UInt8])

    public static func == (lhs: AvroValue, rhs: AvroValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.boolean(a), .boolean(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.long(a), .long(b)): return a == b
        case let (.float(a), .float(b)): return a.bitPattern == b.bitPattern
        case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
        case let (.bytes(a), .bytes(b)), let (.fixed(a), .fixed(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.record(a), .record(b)), let (.array(a), .array(b)): return a == b
        case let (.enumeration(a), .enumeration(b)): return a == b
        case let (.map(a), .map(b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.union(i, a), .union(j, b)): return i == j && a == b
        default: return false
        }
    }
}

/// A value that does not fit its schema, named by place.
public struct AvroEncodingError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// Whole values (tests, tools): `AvroValue` trees written against their schema.
extension AvroRecordWriter {
    /// Writes `value` as `type`; throws naming the place where they disagree.
    public func write(_ value: AvroValue, as type: AvroType, at place: String = "value") throws {
        switch (type.resolved, value) {
        case (.null, .null): break
        case let (.boolean, .boolean(v)): boolean(v)
        case let (.int, .int(v)): long(Int64(v))
        case let (.long, .long(v)): long(v)
        case let (.float, .float(v)): float(v)
        case let (.double, .double(v)): double(v)
        case let (.bytes, .bytes(v)): string(v)
        case let (.string, .string(v)): string(v)
        case let (.record(record), .record(fields)):
            guard fields.count == record.fields.count else {
                throw AvroEncodingError(description: "\(place): \(fields.count) values for the \(record.fields.count) fields of \(record.fullName)")
            }
            for (field, fieldValue) in zip(record.fields, fields) { try write(fieldValue, as: field.type, at: place + "." + field.name) }
        case let (.enumeration(_, symbols), .enumeration(index)):
            guard symbols.indices.contains(index) else { throw AvroEncodingError(description: "\(place): enum index \(index) out of range") }
            long(Int64(index))
        case let (.array(items), .array(values)):
            if !values.isEmpty {
                long(Int64(values.count))
                for item in values { try write(item, as: items, at: place + "[]") }
            }
            long(0)
        case let (.map(valueType), .map(entries)):
            if !entries.isEmpty {
                long(Int64(entries.count))
                for (key, entry) in entries {
                    string(key)
                    try write(entry, as: valueType, at: place + "{}")
                }
            }
            long(0)
        case let (.union(branches), .union(index, inner)):
            guard branches.indices.contains(index) else { throw AvroEncodingError(description: "\(place): union branch \(index) out of range") }
            long(Int64(index))
            try write(inner, as: branches[index], at: place)
        case let (.fixed(_, size, _), .fixed(v)):
            guard v.count == size else { throw AvroEncodingError(description: "\(place): \(v.count) bytes for a fixed of \(size)") }
            v.withUnsafeBytes { raw($0) }
        default:
            throw AvroEncodingError(description: "\(place): a value that is not a \(type.typeName)")
        }
    }
}
