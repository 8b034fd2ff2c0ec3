import Foundation
import Synchronization
import WeirKafka

/// How bad a log line is. librdkafka's syslog levels map onto these.
public enum LogLevel: String, Sendable, Comparable, CaseIterable {
    case debug, info, warning, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rank < rhs.rank }
    private var rank: Int { LogLevel.allCases.firstIndex(of: self)! }

    /// The level of a librdkafka log line (syslog numbering: 0 emergency ... 7 debug).
    public init(syslog: Int32) {
        switch syslog {
        case ...3: self = .error
        case 4: self = .warning
        case 5, 6: self = .info
        default: self = .debug
        }
    }
}

/// How log lines are written: `human` (timestamp, level, text) or `json` (one object per line).
public enum LogFormat: String, Sendable, CaseIterable {
    case human, json
}

/// One log event with the context it belongs to. Fields that do not apply are nil and left out.
public struct LogRecord: Sendable {
    public var time: Date
    public var level: LogLevel
    public var message: String
    /// The worker that wrote it (`worker-id`).
    public var worker: String?
    /// The model name and the version the line is about (the serving primary unless the line
    /// concerns another, such as a candidate being loaded).
    public var model: String?
    public var version: String?
    /// The topic, partition and offset the line is about, when it is about one.
    public var topic: String?
    public var partition: Int32?
    public var offset: Int64?
    /// Several partitions (assignment, revocation, pause), as `topic[partition]`.
    public var partitions: [String]?
    /// Where the line comes from when not from Weir itself: `kafka` for librdkafka's own lines.
    public var source: String?
    /// librdkafka's facility (`FAIL`, `REQTMOUT`, ...) on its lines.
    public var facility: String?
    /// The trace and span the line belongs to (`tracing otlp`, a sampled batch), as lowercase hex.
    public var traceID: String?
    public var spanID: String?

    public init(level: LogLevel = .info, message: String, time: Date = Date()) {
        self.time = time
        self.level = level
        self.message = message
    }

    /// The record as one line in `format`, without a trailing newline.
    public func rendered(as format: LogFormat) -> String {
        let stamp = LogRecord.timestamp(time)
        switch format {
        case .human:
            var context = [String]()
            if let source { context.append(facility.map { "\(source) \($0)" } ?? source) }
            if let partition, let topic { context.append(offset.map { "\(topic)[\(partition)]@\($0)" } ?? "\(topic)[\(partition)]") }
            if let traceID { context.append("trace \(traceID)") }
            let prefix = context.isEmpty ? "" : "[\(context.joined(separator: " "))] "
            // One record, one line: line breaks inside the message are shown escaped.
            let text = message.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
            return "\(stamp) \(level.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) \(prefix)\(text)"
        case .json:
            var line = "{\"ts\":\"\(stamp)\",\"level\":\"\(level.rawValue)\",\"msg\":" + jsonString(message)
            for (name, value) in [("worker", worker), ("model", model), ("version", version), ("topic", topic),
                                  ("source", source), ("facility", facility), ("trace_id", traceID), ("span_id", spanID)] {
                if let value { line += ",\"\(name)\":" + jsonString(value) }
            }
            if let partition { line += ",\"partition\":\(partition)" }
            if let offset { line += ",\"offset\":\(offset)" }
            if let partitions { line += ",\"partitions\":[" + partitions.map(jsonString).joined(separator: ",") + "]" }
            return line + "}"
        }
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T16:04:05.123Z`.
    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(millis / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let fraction = String(millis % 1000)
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)Z"
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped; other text as is.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The trace and span a log line or a metric exemplar names: the ids of a W3C `traceparent`
/// (`00-<trace>-<span>-<flags>`).
struct TraceIDs: Sendable {
    let traceID: String
    let spanID: String

    init?(traceparent: String) {
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
    }
}

/// The worker's logger: stamps every line with the worker id, the model and the serving version.
final class WorkerLog: Sendable {
    private let sink: @Sendable (LogRecord) -> Void
    let worker: String
    let model: String
    private let primaryVersion: Mutex<String>

    init(worker: String, model: String, version: String, sink: @escaping @Sendable (LogRecord) -> Void) {
        self.worker = worker
        self.model = model
        self.sink = sink
        primaryVersion = Mutex(version)
    }

    /// Called when the primary route changes version, so later lines carry the new one.
    func setServingVersion(_ version: String) { primaryVersion.withLock { $0 = version } }

    /// Writes one line. `version` overrides the serving version for lines about another model.
    func callAsFunction(_ message: String, level: LogLevel = .info, version: String? = nil,
                        topic: String? = nil, partition: Int32? = nil, offset: Int64? = nil,
                        partitions: [TopicPartition]? = nil, trace: TraceIDs? = nil) {
        var record = LogRecord(level: level, message: message)
        record.worker = worker
        record.model = model
        record.version = version ?? primaryVersion.withLock { $0 }
        record.topic = topic
        record.partition = partition
        record.offset = offset
        record.partitions = partitions.map { $0.map(\.description).sorted() }
        record.traceID = trace?.traceID
        record.spanID = trace?.spanID
        sink(record)
    }

    /// Writes a line another library reported (`source`: `kafka` for librdkafka, `otel` for the
    /// trace exporter; `facility`: librdkafka's), with the worker context.
    func external(_ message: String, level: LogLevel, source: String, facility: String? = nil) {
        var record = LogRecord(level: level, message: message)
        record.worker = worker
        record.model = model
        record.version = primaryVersion.withLock { $0 }
        record.source = source
        record.facility = facility
        sink(record)
    }

    /// Forwards one of librdkafka's own lines, with the worker context.
    func kafka(_ line: KafkaLogLine) {
        external(line.message, level: LogLevel(syslog: line.level), source: "kafka", facility: line.facility)
    }
}
