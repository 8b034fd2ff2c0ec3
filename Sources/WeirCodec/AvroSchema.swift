import Foundation

/// An Avro schema, as parsed from its JSON form (a Schema Registry's `schema` string). Named
/// records are shared by reference, so a record may contain itself (a recursive type).
public indirect enum AvroType: Sendable {
    case null
    case boolean
    /// `logical`: `date`, `time-millis`, or nil.
    case int(logical: String?)
    /// `logical`: `timestamp-millis`, `timestamp-micros`, `local-timestamp-*`, `time-micros`, or nil.
    case long(logical: String?)
    case float
    case double
    /// `decimalScale`: the scale of a `decimal` logical type; nil for plain bytes.
    case bytes(decimalScale: Int?)
    case string
    case record(AvroRecord)
    case enumeration(name: String, symbols: [String])
    case array(AvroType)
    case map(AvroType)
    case union([AvroType])
    case fixed(name: String, size: Int, decimalScale: Int?)
    /// A record named inside itself (a recursive type, such as a linked list's `next`): an unowned
    /// link, so the schema holds no reference cycle. The enclosing record keeps it alive.
    case recursive(AvroRecordLink)

    /// The type itself, with a recursive reference resolved to its record.
    public var resolved: AvroType {
        if case .recursive(let link) = self { return .record(link.record) }
        return self
    }

    /// The type's name as Avro spells it, for messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .boolean: return "boolean"
        case .int(let logical): return logical ?? "int"
        case .long(let logical): return logical ?? "long"
        case .float: return "float"
        case .double: return "double"
        case .bytes(let scale): return scale == nil ? "bytes" : "decimal"
        case .string: return "string"
        case .record(let record): return "record \(record.fullName)"
        case .recursive(let link): return "record \(link.record.fullName)"
        case .enumeration(let name, _): return "enum \(name)"
        case .array: return "array"
        case .map: return "map"
        case .union(let branches): return "union [" + branches.map(\.typeName).joined(separator: ", ") + "]"
        case .fixed(let name, _, let scale): return scale == nil ? "fixed \(name)" : "decimal"
        }
    }
}

/// A named record: its fields in writing order. A class so that recursive references share it;
/// filled in once while parsing and never changed after.
public final class AvroRecord: @unchecked Sendable {
    public let fullName: String
    public internal(set) var fields: [AvroField] = []

    init(fullName: String) { self.fullName = fullName }
}

/// A reference from inside a record to itself or an enclosing record.
public final class AvroRecordLink: @unchecked Sendable {
    public unowned let record: AvroRecord
    init(_ record: AvroRecord) { self.record = record }
}

public struct AvroField: Sendable {
    public let name: String
    public let type: AvroType
}

/// Why a schema could not be used, naming the place in it.
public struct AvroSchemaError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { "Avro schema: \(message)" }
}

extension AvroType {
    /// Parses a schema's JSON text (Avro 1.11 specification: primitives, records, enums, arrays,
    /// maps, unions, fixed; named types with namespaces; the logical types above).
    /// `references`: the texts of the schemas it names types from (Schema Registry references),
    /// each before those that use it.
    public static func parse(_ text: String, references: [String] = []) throws -> AvroType {
        func json(_ text: String, _ place: String) throws -> Any {
            do { return try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) } catch {
                throw AvroSchemaError(message: "\(place) is not valid JSON")
            }
        }
        var parser = AvroSchemaParser()
        for (index, reference) in references.enumerated() {
            _ = try parser.type(try json(reference, "referenced schema \(index + 1)"), namespace: nil, at: "referenced schema \(index + 1)")
        }
        return try parser.type(try json(text, "the schema"), namespace: nil, at: "schema")
    }
}

/// Resolves names while walking the schema JSON.
private struct AvroSchemaParser {
    var named: [String: AvroType] = [:]
    /// Records whose fields are being parsed: a reference to one of them is recursive.
    var defining: Set<String> = []
    var depth = 0

    mutating func type(_ json: Any, namespace: String?, at place: String) throws -> AvroType {
        depth += 1
        defer { depth -= 1 }
        guard depth < 256 else { throw AvroSchemaError(message: "nesting deeper than 256 at \(place)") }
        if let name = json as? String {
            return try reference(name, namespace: namespace, at: place)
        }
        if let branches = json as? [Any] {
            guard !branches.isEmpty else { throw AvroSchemaError(message: "empty union at \(place)") }
            var types: [AvroType] = []
            for (index, branch) in branches.enumerated() {
                let parsed = try type(branch, namespace: namespace, at: "\(place)[\(index)]")
                if case .union = parsed { throw AvroSchemaError(message: "a union directly inside a union at \(place)") }
                types.append(parsed)
            }
            return .union(types)
        }
        guard let object = json as? [String: Any] else {
            throw AvroSchemaError(message: "expected a type name, an object or a union at \(place)")
        }
        guard let kind = object["type"] else { throw AvroSchemaError(message: "no \"type\" at \(place)") }
        guard let kindName = kind as? String else {
            // {"type": {...}} or {"type": [...]}: the inner type.
            return try type(kind, namespace: namespace, at: place)
        }
        let logical = object["logicalType"] as? String
        switch kindName {
        case "record", "error":
            let fullName = try qualified(object, namespace: namespace, at: place)
            let record = AvroRecord(fullName: fullName)
            try define(fullName, .record(record), at: place)
            let inner = enclosingNamespace(of: fullName)
            defining.insert(fullName)
            defer { defining.remove(fullName) }
            guard let fields = object["fields"] as? [Any] else { throw AvroSchemaError(message: "record \(fullName) has no \"fields\" array") }
            var seen = Set<String>()
            for (index, field) in fields.enumerated() {
                guard let field = field as? [String: Any], let name = field["name"] as? String, let fieldType = field["type"] else {
                    throw AvroSchemaError(message: "field \(index) of \(fullName) needs a \"name\" and a \"type\"")
                }
                guard seen.insert(name).inserted else { throw AvroSchemaError(message: "field '\(name)' appears twice in \(fullName)") }
                record.fields.append(AvroField(name: name, type: try type(fieldType, namespace: inner, at: "\(fullName).\(name)")))
            }
            return .record(record)
        case "enum":
            let fullName = try qualified(object, namespace: namespace, at: place)
            guard let symbols = object["symbols"] as? [String] else { throw AvroSchemaError(message: "enum \(fullName) has no \"symbols\"") }
            let parsed = AvroType.enumeration(name: fullName, symbols: symbols)
            try define(fullName, parsed, at: place)
            return parsed
        case "array":
            guard let items = object["items"] else { throw AvroSchemaError(message: "array at \(place) has no \"items\"") }
            return .array(try type(items, namespace: namespace, at: "\(place)[]"))
        case "map":
            guard let values = object["values"] else { throw AvroSchemaError(message: "map at \(place) has no \"values\"") }
            return .map(try type(values, namespace: namespace, at: "\(place){}"))
        case "fixed":
            let fullName = try qualified(object, namespace: namespace, at: place)
            guard let size = object["size"] as? Int, size >= 0 else { throw AvroSchemaError(message: "fixed \(fullName) needs a \"size\" of 0 or more") }
            let parsed = AvroType.fixed(name: fullName, size: size, decimalScale: logical == "decimal" ? decimalScale(object) : nil)
            try define(fullName, parsed, at: place)
            return parsed
        default:
            // A primitive, perhaps with a logical type.
            switch kindName {
            case "bytes": return .bytes(decimalScale: logical == "decimal" ? decimalScale(object) : nil)
            case "int": return .int(logical: logical)
            case "long": return .long(logical: logical)
            default: return try reference(kindName, namespace: namespace, at: place)
            }
        }
    }

    /// A primitive's name or a named type defined before.
    func reference(_ name: String, namespace: String?, at place: String) throws -> AvroType {
        switch name {
        case "null": return .null
        case "boolean": return .boolean
        case "int": return .int(logical: nil)
        case "long": return .long(logical: nil)
        case "float": return .float
        case "double": return .double
        case "bytes": return .bytes(decimalScale: nil)
        case "string": return .string
        default:
            let fullName = named[name] != nil || name.contains(".") ? name : (namespace.map { $0 + "." + name } ?? name)
            guard let found = named[fullName] else { throw AvroSchemaError(message: "unknown type '\(name)' at \(place)") }
            if defining.contains(fullName), case .record(let record) = found { return .recursive(AvroRecordLink(record)) }
            return found
        }
    }

    func qualified(_ object: [String: Any], namespace: String?, at place: String) throws -> String {
        guard let name = object["name"] as? String, !name.isEmpty else { throw AvroSchemaError(message: "a named type at \(place) has no \"name\"") }
        if name.contains(".") { return name }
        let space = (object["namespace"] as? String) ?? namespace
        if let space, !space.isEmpty { return space + "." + name }
        return name
    }

    func enclosingNamespace(of fullName: String) -> String? {
        guard let dot = fullName.lastIndex(of: ".") else { return nil }
        return String(fullName[..<dot])
    }

    mutating func define(_ fullName: String, _ type: AvroType, at place: String) throws {
        guard named[fullName] == nil else { throw AvroSchemaError(message: "type \(fullName) is defined twice (at \(place))") }
        named[fullName] = type
    }

    func decimalScale(_ object: [String: Any]) -> Int { max(0, min((object["scale"] as? Int) ?? 0, 38)) }
}
