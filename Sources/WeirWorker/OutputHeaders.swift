import Foundation
import WeirKafka

/// Which input headers an answer carries on (`output.headers`, docs/contracts.md).
public enum HeadersPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Every input header except CloudEvents' `ce_*` and `content-type`: those describe the input
    /// event, and a prediction that repeated them would claim to be it (same id, same type).
    case copyExceptCloudEvents
    /// Every input header (Weir's own CloudEvents headers replace the input's of the same name).
    case copy
    /// None.
    case none
    /// Only these names (Weir's own headers are added whatever the list says).
    case allow([String])

    /// `copy-except-ce`, `copy`, `none`, or a comma-separated list of header names.
    public init(parsing text: String) throws(SettingsError) {
        switch text.trimmingCharacters(in: .whitespaces) {
        case "copy-except-ce": self = .copyExceptCloudEvents
        case "copy": self = .copy
        case "none": self = .none
        default:
            let names = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !names.isEmpty, !names.contains(where: \.isEmpty) else {
                throw SettingsError("output.headers: '\(text)' is not copy-except-ce, copy, none or a comma-separated list of header names")
            }
            if let twice = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
                throw SettingsError("output.headers: '\(twice)' is listed twice")
            }
            self = .allow(names)
        }
    }

    public var description: String {
        switch self {
        case .copyExceptCloudEvents: "copy-except-ce"
        case .copy: "copy"
        case .none: "none"
        case .allow(let names): names.joined(separator: ",")
        }
    }
}

/// Applies the headers policy and adds the CloudEvents binary-mode headers each answer carries as
/// an event of its own: `ce_specversion` 1.0, `ce_type` (`io.weir.prediction.v1`,
/// `io.weir.deadletter.v1`), `ce_source` (`/weir/<worker-id>`), `ce_id` (`<topic>-<partition>-<offset>`
/// of the input, so a repeated answer keeps its id; a shadow answer's ends in `/shadow`), `ce_time`
/// and, for predictions, `content-type`. Poll thread only: the id and time are written into reused
/// buffers, nothing is allocated per answer.
final class CloudEventHeaders {
    enum Kind {
        case prediction, shadow, deadLetter
    }

    static let names: [String] = ["ce_specversion", "ce_type", "ce_source", "ce_id", "ce_time", "content-type"]
    private static let predictionType = Array("io.weir.prediction.v1".utf8)
    private static let deadLetterType = Array("io.weir.deadletter.v1".utf8)
    private static let specVersion = Array("1.0".utf8)
    /// Weir's own names as C strings, for comparing with consumed headers' names.
    private static let ownNames: [[CChar]] = names.map { Array($0.utf8CString) }

    let policy: HeadersPolicy
    /// `output.cloudevents`: false adds none (the policy still applies).
    let isEnabled: Bool
    private let source: [UInt8]
    private let contentType: [UInt8]
    /// The allow list as C strings.
    private let allowed: [[CChar]]
    /// `ce_id` and `ce_time` are written into these fixed buffers (no array bookkeeping per answer).
    private let id = UnsafeMutablePointer<UInt8>.allocate(capacity: 320)
    private var idLength = 0
    private let time = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
    private var timeLength = 0
    private var timeMillis: Int64 = -1
    /// `names` as C strings made once (`append(cName:)` copies no Swift string per header).
    private let cNames: [UnsafeMutablePointer<CChar>]

    init(policy: HeadersPolicy, worker: String, format: OutputFormat, enabled: Bool = true) {
        self.policy = policy
        isEnabled = enabled
        source = Array("/weir/\(worker)".utf8)
        contentType = Array((format == .avro ? "application/avro" : "application/json").utf8)
        if case .allow(let names) = policy { allowed = names.map { Array($0.utf8CString) } } else { allowed = [] }
        cNames = Self.names.map { name in
            let bytes = Array(name.utf8CString)
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
            pointer.initialize(from: bytes, count: bytes.count)
            return pointer
        }
        refreshTime()
    }

    deinit {
        id.deallocate()
        time.deallocate()
        for name in cNames { name.deallocate() }
    }

    /// The input headers an answer of `kind` starts from: `message`'s, copied as the policy allows,
    /// in a list with room for the answer's own. A dead letter keeps the input's `content-type`:
    /// its value is the input's bytes.
    func inputHeaders(of message: KafkaMessage, kind: Kind) -> OutgoingHeaders {
        if case .none = policy { return OutgoingHeaders(capacity: OutgoingHeaders.roomForAnswerHeaders) }
        return OutgoingHeaders(copying: message, room: OutgoingHeaders.roomForAnswerHeaders) { drops($0, kind: kind) }
    }

    /// The same policy on a copied list (the slow paths: a dead letter made smaller, a refused
    /// prediction turned into a dead letter).
    func inputHeaders(_ list: [(name: String, value: [UInt8]?)], kind: Kind) -> [(name: String, value: [UInt8]?)] {
        list.filter { header in header.name.withCString { !drops($0, kind: kind) } }
    }

    /// Whether the policy drops the input header `name` from an answer of `kind` (compared as a C
    /// string: nothing is allocated per header on the hot path).
    private func drops(_ name: UnsafePointer<CChar>, kind: Kind) -> Bool {
        let keepsContentType = kind == .deadLetter
        switch policy {
        case .copyExceptCloudEvents:
            return (name[0] == 0x63 && name[1] == 0x65 && name[2] == 0x5F)  // "ce_"
                || (!keepsContentType && strcmp(name, "content-type") == 0)
        case .copy:
            return Self.isOwn(name, keepingContentType: keepsContentType)
        case .allow:
            return Self.isOwn(name, keepingContentType: keepsContentType) || !allowed.contains { strcmp($0, name) == 0 }
        case .none:
            return true
        }
    }

    /// Whether a header name is one Weir sets on its answers (`content-type` only when asked).
    private static func isOwn(_ name: UnsafePointer<CChar>, keepingContentType: Bool) -> Bool {
        ownNames.indices.contains { index in
            (!keepingContentType || index != ownNames.count - 1) && strcmp(ownNames[index], name) == 0
        }
    }

    /// Appends the CloudEvents headers of an answer to `message`. `ce_time` is the time of the last
    /// `refreshTime()` (the batcher calls it once per batch; dead letters each time).
    func append(to headers: inout OutgoingHeaders, kind: Kind, message: KafkaMessage) {
        guard isEnabled else { return }
        writeID(topic: message.topicNamePointer, partition: message.partition, offset: message.offset, shadow: kind == .shadow)
        Self.specVersion.withUnsafeBytes { headers.append(cName: specVersionName, value: $0) }
        (kind == .deadLetter ? Self.deadLetterType : Self.predictionType).withUnsafeBytes { headers.append(cName: typeName, value: $0) }
        source.withUnsafeBytes { headers.append(cName: sourceName, value: $0) }
        headers.append(cName: idName, value: UnsafeRawBufferPointer(start: id, count: idLength))
        headers.append(cName: timeName, value: UnsafeRawBufferPointer(start: time, count: timeLength))
        if kind != .deadLetter { contentType.withUnsafeBytes { headers.append(cName: contentTypeName, value: $0) } }
    }

    private var specVersionName: UnsafePointer<CChar> { UnsafePointer(cNames[0]) }
    private var typeName: UnsafePointer<CChar> { UnsafePointer(cNames[1]) }
    private var sourceName: UnsafePointer<CChar> { UnsafePointer(cNames[2]) }
    private var idName: UnsafePointer<CChar> { UnsafePointer(cNames[3]) }
    private var timeName: UnsafePointer<CChar> { UnsafePointer(cNames[4]) }
    private var contentTypeName: UnsafePointer<CChar> { UnsafePointer(cNames[5]) }

    /// The same headers as a list (slow paths).
    func list(kind: Kind, topic: String, partition: Int32, offset: Int64) -> [(name: String, value: [UInt8]?)] {
        guard isEnabled else { return [] }
        topic.withCString { writeID(topic: $0, partition: partition, offset: offset, shadow: kind == .shadow) }
        refreshTime()
        var list: [(name: String, value: [UInt8]?)] = [
            ("ce_specversion", Self.specVersion), ("ce_type", kind == .deadLetter ? Self.deadLetterType : Self.predictionType),
            ("ce_source", source), ("ce_id", Array(UnsafeBufferPointer(start: id, count: idLength))),
            ("ce_time", Array(UnsafeBufferPointer(start: time, count: timeLength))),
        ]
        if kind != .deadLetter { list.append(("content-type", contentType)) }
        return list
    }

    /// `<topic>-<partition>-<offset>` (and `/shadow`) into `id`; a topic name is at most 249 bytes.
    private func writeID(topic: UnsafePointer<CChar>, partition: Int32, offset: Int64, shadow: Bool) {
        var length = 0
        var cursor = topic
        while cursor.pointee != 0 && length < 249 {
            id[length] = UInt8(bitPattern: cursor.pointee)
            length += 1
            cursor += 1
        }
        id[length] = UInt8(ascii: "-")
        length = writeDecimal(Int64(partition), at: length + 1)
        id[length] = UInt8(ascii: "-")
        length = writeDecimal(offset, at: length + 1)
        if shadow {
            for byte in "/shadow".utf8 {
                id[length] = byte
                length += 1
            }
        }
        idLength = length
    }

    /// Writes `value` in decimal at `position` of `id`; returns the position after it.
    private func writeDecimal(_ value: Int64, at position: Int) -> Int {
        var position = position
        if value < 0 {
            id[position] = UInt8(ascii: "-")
            position += 1
        }
        var magnitude = value.magnitude
        var digits = 1
        var probe = magnitude
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var index = position + digits - 1
        repeat {
            id[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
            index -= 1
        } while magnitude > 0
        return position + digits
    }

    /// `ce_time`: now in RFC 3339 with milliseconds, formatted again only when the millisecond changed.
    func refreshTime() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let millis = Int64(now.tv_sec) &* 1000 &+ Int64(now.tv_nsec / 1_000_000)
        guard millis != timeMillis else { return }
        timeMillis = millis
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        var length = 0
        func put(_ value: Int, _ count: Int) {
            var rest = value
            for index in stride(from: count - 1, through: 0, by: -1) {
                time[length + index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
            }
            length += count
        }
        func mark(_ byte: UInt8) {
            time[length] = byte
            length += 1
        }
        put(Int(parts.tm_year) + 1900, 4); mark(UInt8(ascii: "-"))
        put(Int(parts.tm_mon) + 1, 2); mark(UInt8(ascii: "-"))
        put(Int(parts.tm_mday), 2); mark(UInt8(ascii: "T"))
        put(Int(parts.tm_hour), 2); mark(UInt8(ascii: ":"))
        put(Int(parts.tm_min), 2); mark(UInt8(ascii: ":"))
        put(Int(parts.tm_sec), 2); mark(UInt8(ascii: "."))
        put(Int(now.tv_nsec / 1_000_000), 3); mark(UInt8(ascii: "Z"))
        timeLength = length
    }
}
