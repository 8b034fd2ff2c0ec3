/// A Protobuf schema, parsed from the `.proto` text a Schema Registry returns (proto2 or proto3):
/// its messages (nested ones too) in one flat table, so message fields refer to each other by
/// index and a recursive message holds no reference cycle.
public struct ProtoFile: Sendable {
    public let package: String
    public let isProto3: Bool
    /// Every message, nested ones included, in the order met.
    public let messages: [ProtoMessage]
    /// Indexes into `messages` of the top-level messages, in file order (Confluent's message indexes).
    public let topLevel: [Int]

    /// The message Confluent's message-index path names (`[0]`: the first top-level message).
    public func message(at path: [Int]) -> Int? {
        guard let first = path.first, topLevel.indices.contains(first) else { return nil }
        var current = topLevel[first]
        for index in path.dropFirst() {
            guard messages[current].nested.indices.contains(index) else { return nil }
            current = messages[current].nested[index]
        }
        return current
    }
}

public struct ProtoMessage: Sendable {
    public let fullName: String
    public var fields: [ProtoField]
    /// Indexes into the file's `messages` of the messages declared inside this one, in order.
    public var nested: [Int]
}

public struct ProtoField: Sendable {
    public enum Label: Sendable { case singular, optional, repeated }
    public let name: String
    public let number: Int32
    public let label: Label
    public var type: ProtoFieldType
    /// In a `oneof`: present only when set (no implicit default).
    public let inOneof: Bool

    /// Whether an absent field reads as its zero value (proto3 singular scalars) rather than missing.
    public func hasImplicitDefault(proto3: Bool) -> Bool { proto3 && label == .singular && !inOneof }
}

public enum ProtoFieldType: Sendable, Equatable {
    case double, float, int64, uint64, int32, fixed64, fixed32, bool, string, bytes, uint32, sfixed32, sfixed64, sint32, sint64
    case enumeration
    /// Index into the file's `messages`.
    case message(Int)
    /// A map field (a repeated entry message on the wire): never a feature.
    case map
    /// A well-known wrapper (`google.protobuf.DoubleValue`, `Int64Value`, `BoolValue`...): a
    /// number with presence, the wrapped scalar in its field 1.
    case wrapper(ProtoWrapped)
    /// `google.protobuf.Timestamp` or `Duration`: seconds (field 1) and nanos (field 2), read as milliseconds.
    case timestamp
    /// Another well-known message (`Struct`, `Any`, `Empty`...): never a feature.
    case wellKnown
    /// Resolved after parsing (a message or enum named before or after its use).
    case unresolved(String)

    static let scalars: [String: ProtoFieldType] = [
        "double": .double, "float": .float, "int64": .int64, "uint64": .uint64, "int32": .int32, "fixed64": .fixed64,
        "fixed32": .fixed32, "bool": .bool, "string": .string, "bytes": .bytes, "uint32": .uint32, "sfixed32": .sfixed32,
        "sfixed64": .sfixed64, "sint32": .sint32, "sint64": .sint64,
    ]
}

/// The scalar inside a well-known wrapper message.
public enum ProtoWrapped: Sendable, Equatable {
    case double, float, int64, uint64, int32, uint32, bool

    /// The wrapper's scalar as a field type.
    var fieldType: ProtoFieldType {
        switch self {
        case .double: return .double
        case .float: return .float
        case .int64: return .int64
        case .uint64: return .uint64
        case .int32: return .int32
        case .uint32: return .uint32
        case .bool: return .bool
        }
    }
}

/// The types of the `google/protobuf/*.proto` files every registry knows without a reference.
enum ProtoWellKnown {
    static let files: Set<String> = ["google/protobuf/wrappers.proto", "google/protobuf/timestamp.proto", "google/protobuf/duration.proto",
                                     "google/protobuf/empty.proto", "google/protobuf/struct.proto", "google/protobuf/any.proto",
                                     "google/protobuf/field_mask.proto"]

    static let types: [String: ProtoFieldType] = [
        "google.protobuf.DoubleValue": .wrapper(.double), "google.protobuf.FloatValue": .wrapper(.float),
        "google.protobuf.Int64Value": .wrapper(.int64), "google.protobuf.UInt64Value": .wrapper(.uint64),
        "google.protobuf.Int32Value": .wrapper(.int32), "google.protobuf.UInt32Value": .wrapper(.uint32),
        "google.protobuf.BoolValue": .wrapper(.bool), "google.protobuf.StringValue": .wellKnown, "google.protobuf.BytesValue": .wellKnown,
        "google.protobuf.Timestamp": .timestamp, "google.protobuf.Duration": .timestamp, "google.protobuf.Empty": .wellKnown,
        "google.protobuf.Struct": .wellKnown, "google.protobuf.Value": .wellKnown, "google.protobuf.ListValue": .wellKnown,
        "google.protobuf.Any": .wellKnown, "google.protobuf.FieldMask": .wellKnown,
    ]
}

public struct ProtoSchemaError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { "Protobuf schema: \(message)" }
}

extension ProtoFile {
    /// Parses `.proto` text. Imports are refused (their types are not at hand); options, reserved
    /// ranges, extensions and services are read past.
    /// `imports`: the texts of the files it imports, by import path (Schema Registry references).
    public static func parse(_ text: String, imports: [String: String] = [:]) throws -> ProtoFile {
        var parser = ProtoParser(tokens: try ProtoTokenizer.tokens(text))
        parser.imports = imports
        return try parser.file()
    }
}

/// Splits `.proto` text into identifiers, numbers, strings and symbols; drops comments.
enum ProtoTokenizer {
    static func tokens(_ text: String) throws -> [String] {
        let bytes = Array(text.utf8)
        var tokens: [String] = []
        var i = 0
        func isIdentifier(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1; continue }
            if b == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "/") {
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                continue
            }
            if b == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "*") {
                i += 2
                while i + 1 < bytes.count && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 2
                continue
            }
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") {
                var j = i + 1
                while j < bytes.count && bytes[j] != b { j += bytes[j] == UInt8(ascii: "\\") ? 2 : 1 }
                guard j < bytes.count else { throw ProtoSchemaError(message: "a string that does not end") }
                tokens.append(String(decoding: bytes[i...j], as: UTF8.self))
                i = j + 1
                continue
            }
            if isIdentifier(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
                var j = i + 1
                while j < bytes.count && isIdentifier(bytes[j]) { j += 1 }
                tokens.append(String(decoding: bytes[i..<j], as: UTF8.self))
                i = j
                continue
            }
            tokens.append(String(UnicodeScalar(b)))
            i += 1
        }
        return tokens
    }
}

/// Recursive descent over the tokens; types resolve once every message is known.
struct ProtoParser {
    let tokens: [String]
    var position = 0
    var package = ""
    var isProto3 = false
    var messages: [ProtoMessage] = []
    var enums: Set<String> = []
    var depth = 0
    /// Texts of importable files by path; files read so far (an import is read once).
    var imports: [String: String] = [:]
    var imported: Set<String> = []

    init(tokens: [String]) { self.tokens = tokens }

    var peek: String? { position < tokens.count ? tokens[position] : nil }

    mutating func next() throws -> String {
        guard position < tokens.count else { throw ProtoSchemaError(message: "the text ends early") }
        defer { position += 1 }
        return tokens[position]
    }

    mutating func expect(_ token: String) throws {
        let got = try next()
        guard got == token else { throw ProtoSchemaError(message: "expected '\(token)' but found '\(got)'") }
    }

    /// Reads past a statement up to its `;`, or past a balanced `{...}` block.
    mutating func skipStatement() throws {
        var level = 0
        while true {
            let token = try next()
            if token == "{" { level += 1 }
            if token == "}" { level -= 1; if level == 0 { return } }
            if token == ";" && level == 0 { return }
        }
    }

    /// Reads past `[ ... ]` field options.
    mutating func skipOptions() throws {
        guard peek == "[" else { return }
        var level = 0
        repeat {
            let token = try next()
            if token == "[" { level += 1 }
            if token == "]" { level -= 1 }
        } while level > 0
    }

    mutating func file() throws -> ProtoFile {
        var topLevel: [Int] = []
        while let token = peek {
            switch token {
            case "syntax", "edition":
                _ = try next(); try expect("=")
                isProto3 = try next().contains("proto3"); try expect(";")
            case "package":
                _ = try next(); package = try next(); try expect(";")
            case "import":
                // The well-known types need no reference; any other file would.
                _ = try next()
                var file = try next()
                if file == "public" || file == "weak" { file = try next() }
                let path = String(file.dropFirst().dropLast())
                try expect(";")
                if ProtoWellKnown.files.contains(path) { continue }
                guard let importedText = imports[path] else {
                    throw ProtoSchemaError(message: "it imports '\(path)', which the registry did not reference")
                }
                try readImport(path, importedText)
            case "message":
                _ = try next()
                topLevel.append(try message(scope: package))
            case "enum":
                _ = try next()
                let name = try next()
                enums.insert(package.isEmpty ? name : package + "." + name)
                try skipStatement()
            case ";":
                _ = try next()
            default:
                try skipStatement()  // option, service, extend
            }
        }
        for index in messages.indices where resolvesTypes {
            for field in messages[index].fields.indices {
                if case .unresolved(let name) = messages[index].fields[field].type {
                    messages[index].fields[field].type = try resolve(name, from: messages[index].fullName)
                }
            }
        }
        return ProtoFile(package: package, isProto3: isProto3, messages: messages, topLevel: topLevel)
    }

    /// Declares an imported file's messages and enums (in its own package) for type resolution;
    /// they are not among the file's top-level messages (message indexes).
    mutating func readImport(_ path: String, _ text: String) throws {
        guard imported.insert(path).inserted else { return }
        var inner = ProtoParser(tokens: try ProtoTokenizer.tokens(text))
        inner.imports = imports
        inner.imported = imported
        inner.messages = messages
        inner.enums = enums
        inner.resolvesTypes = false
        _ = try inner.file()
        messages = inner.messages
        enums = inner.enums
        imported = inner.imported
    }

    /// Off while reading an imported file: its types resolve with the importing file's.
    var resolvesTypes = true

    /// A message body after `message`; its index in the table.
    mutating func message(scope: String) throws -> Int {
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { throw ProtoSchemaError(message: "messages nested deeper than 64") }
        let name = try next()
        let fullName = scope.isEmpty ? name : scope + "." + name
        let index = messages.count
        messages.append(ProtoMessage(fullName: fullName, fields: [], nested: []))
        try expect("{")
        var numbers = Set<Int32>()
        func add(_ field: ProtoField) throws {
            guard numbers.insert(field.number).inserted else {
                throw ProtoSchemaError(message: "field number \(field.number) is used twice in \(fullName)")
            }
            messages[index].fields.append(field)
        }
        while let token = peek, token != "}" {
            switch token {
            case "message":
                _ = try next()
                let nested = try message(scope: fullName)
                messages[index].nested.append(nested)
            case "enum":
                _ = try next()
                enums.insert(fullName + "." + (try next()))
                try skipStatement()
            case "oneof":
                _ = try next(); _ = try next(); try expect("{")
                while let inner = peek, inner != "}" {
                    if inner == "option" { try skipStatement(); continue }
                    try add(try field(label: .optional, inOneof: true, scope: fullName))
                }
                try expect("}")
            case "option", "reserved", "extensions", "extend":
                try skipStatement()
            case ";":
                _ = try next()
            default:
                var label = ProtoField.Label.singular
                if token == "repeated" { label = .repeated; _ = try next() }
                else if token == "optional" || token == "required" { label = token == "optional" || !isProto3 ? .optional : .singular; _ = try next() }
                else if !isProto3 { label = .optional }
                try add(try field(label: label, inOneof: false, scope: fullName))
            }
        }
        try expect("}")
        return index
    }

    /// `type name = number [options];`, or `map<k, v> name = number;`.
    mutating func field(label: ProtoField.Label, inOneof: Bool, scope: String) throws -> ProtoField {
        var typeName = try next()
        var type: ProtoFieldType
        if typeName == "map" {
            try expect("<"); _ = try next(); try expect(","); _ = try next(); try expect(">")
            type = .map
            typeName = "map"
        } else {
            type = ProtoFieldType.scalars[typeName] ?? .unresolved(typeName)
        }
        let name = try next()
        try expect("=")
        let numberText = try next()
        guard let number = Int32(numberText), number >= 1, number <= 536_870_911 else {
            throw ProtoSchemaError(message: "field '\(name)' in \(scope) has number '\(numberText)'")
        }
        try skipOptions()
        try expect(";")
        return ProtoField(name: name, number: number, label: type == .map ? .repeated : label, type: type, inOneof: inOneof)
    }

    /// A type name as protoc resolves it: innermost scope first, then outward; a leading dot is absolute.
    func resolve(_ name: String, from scope: String) throws -> ProtoFieldType {
        if name.hasPrefix(".") { return try lookup(String(name.dropFirst()), name) }
        var parts = scope.split(separator: ".").map(String.init)
        while true {
            let candidate = (parts + [name]).joined(separator: ".")
            if let found = try? lookup(candidate, name) { return found }
            if parts.isEmpty { break }
            parts.removeLast()
        }
        throw ProtoSchemaError(message: "unknown type '\(name)' in \(scope)")
    }

    func lookup(_ fullName: String, _ written: String) throws -> ProtoFieldType {
        if let index = messages.firstIndex(where: { $0.fullName == fullName }) { return .message(index) }
        if enums.contains(fullName) { return .enumeration }
        if let known = ProtoWellKnown.types[fullName] { return known }
        throw ProtoSchemaError(message: "unknown type '\(written)'")
    }
}
