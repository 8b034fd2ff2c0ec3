#if canImport(Glibc)
import Glibc
#endif

/// What a decoder reads from an event: feature names in the model's input order, their defaults,
/// and where they live.
public struct FeatureSchema: Sendable {
    /// Feature names, in the order of the model's input columns.
    public let names: [String]
    /// Per feature, the value used when it is missing or null; nil means the event is rejected.
    public let defaults: [Float?]
    /// Object keys leading to the features (`input.features-path`, split on dots); empty: top level.
    /// The last container may be an array, read by position.
    public let featuresPath: [String]
    /// Larger values are rejected as `too-large` without being parsed.
    public let maxBytes: Int

    public init(names: [String], defaults: [Float?]? = nil, featuresPath: [String] = [], maxBytes: Int = 1 << 20) {
        self.names = names
        self.defaults = defaults ?? Array(repeating: nil, count: names.count)
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
    }
    public let code: Code
    public let message: String
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The event's `id`, as the JSON token's byte range in the payload (quotes included for strings),
/// so it can be echoed without allocating.
public struct EventID: Sendable, Equatable {
    public let start: Int
    public let end: Int
    public let isString: Bool
}

/// Decodes event payloads into feature rows in one pass over the bytes: no DOM, and no allocation
/// per event once warm. One decoder per thread.
public final class EventDecoder {
    public let schema: FeatureSchema
    private let table: KeyTable
    /// Per feature: generation of the last value seen, and what it was.
    private var seenGeneration: [UInt32]
    private var state: [FeatureState]
    private var generation: UInt32 = 0
    private var keyScratch: [UInt8] = []
    private var numberScratch: [CChar] = []
    private var pathKeys: [[UInt8]]
    private var failure: DecodeFailure?
    private var id: EventID?
    /// Nesting limit, as jansson's.
    static let maxDepth = 2048

    enum FeatureState { case value, null, wrongType(String) }

    public init(schema: FeatureSchema) {
        self.schema = schema
        table = KeyTable(schema.names)
        seenGeneration = Array(repeating: 0, count: schema.names.count)
        state = Array(repeating: .null, count: schema.names.count)
        pathKeys = schema.featuresPath.map { Array($0.utf8) }
        keyScratch.reserveCapacity(256)
        numberScratch.reserveCapacity(64)
    }

    /// Decodes one payload, writing `schema.names.count` floats to `row`. Returns the event's id
    /// (if it has one) or the reason it is rejected. A rejected event may leave `row` partly written.
    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        if payload.count > schema.maxBytes {
            return .failure(DecodeFailure(code: .tooLarge, message: "value is \(payload.count) bytes; the limit is \(schema.maxBytes)"))
        }
        generation &+= 1
        if generation == 0 {  // wrapped: forget every stale mark
            for i in seenGeneration.indices { seenGeneration[i] = 0 }
            generation = 1
        }
        failure = nil
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
        // Features in schema order: missing or null take the default, else the event is rejected.
        for index in 0..<schema.names.count {
            let seen = seenGeneration[index] == generation
            switch seen ? state[index] : .null {
            case .value:
                continue
            case .wrongType(let what):
                return .failure(DecodeFailure(code: .notANumber, message: "feature '\(schema.names[index])' is \(what), not a number"))
            case .null:
                if let value = schema.defaults[index] {
                    row[index] = value
                } else {
                    return .failure(DecodeFailure(code: .missingFeature,
                                                  message: "feature '\(schema.names[index])' is \(seen ? "null" : "missing") and has no default"))
                }
            }
        }
        return .success(id)
    }

    func fail(_ code: DecodeFailure.Code, _ message: @autoclosure () -> String) {
        if failure == nil || (failure!.code != .malformedJSON && code == .malformedJSON) {
            failure = DecodeFailure(code: code, message: message())
        }
    }

    var isMalformed: Bool { failure?.code == .malformedJSON }

    func enterFeatureContainer() {
        // A repeated container replaces the previous one (last key wins, as in jansson).
        generation &+= 1
        if generation == 0 { for i in seenGeneration.indices { seenGeneration[i] = 0 }; generation = 1 }
    }

    func record(_ index: Int, _ value: FeatureState) {
        seenGeneration[index] = generation
        state[index] = value
    }

    func lookup(_ key: UnsafeBufferPointer<UInt8>) -> Int? { table.find(key) }

    func setID(_ value: EventID?) { id = value }

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

/// Open-addressing table from key bytes to feature index (FNV-1a), built once per schema.
struct KeyTable {
    private let slots: [Int32]
    private let names: [[UInt8]]
    private let mask: Int

    init(_ keys: [String]) {
        names = keys.map { Array($0.utf8) }
        var size = 8
        while size < keys.count * 2 { size <<= 1 }
        mask = size - 1
        var slots = [Int32](repeating: -1, count: size)
        for (index, name) in names.enumerated() {
            var slot = name.withUnsafeBufferPointer { Int(truncatingIfNeeded: KeyTable.hash($0)) } & mask
            while slots[slot] >= 0 {
                if names[Int(slots[slot])] == name { break }  // duplicate name: first wins
                slot = (slot + 1) & mask
            }
            if slots[slot] < 0 { slots[slot] = Int32(index) }
        }
        self.slots = slots
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        var slot = Int(truncatingIfNeeded: KeyTable.hash(key)) & mask
        while true {
            let index = Int(slots[slot])
            if index < 0 { return nil }
            let name = names[index]
            if name.count == key.count && name.withUnsafeBufferPointer({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) {
                return index
            }
            slot = (slot + 1) & mask
        }
    }
}
