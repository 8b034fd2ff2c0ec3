import CRdKafka
#if canImport(Glibc)
import Glibc
#endif

/// One of librdkafka's own log lines (connection failures, timeouts, protocol notes).
public struct KafkaLogLine: Sendable {
    /// Syslog level: 0 emergency ... 3 error, 4 warning, 5 notice, 6 info, 7 debug.
    public let level: Int32
    /// librdkafka's facility, e.g. `FAIL`, `REQTMOUT`, `COMMITFAIL`.
    public let facility: String
    public let message: String
    /// The client's `client.id` (librdkafka's instance name without its `#consumer-N` suffix).
    public let clientID: String
}

/// Where librdkafka's log lines go. By default they print to stderr in librdkafka's own format;
/// a worker routes the lines of its clients (by `client.id`) into its logger, so `--log-format json`
/// sees no stray text lines.
public enum KafkaLog {
    private static let routes = Locked([UInt64: (clientID: String, handler: @Sendable (KafkaLogLine) -> Void)]())
    private static let fallback = Locked<(@Sendable (KafkaLogLine) -> Void)?>(nil)
    private static let nextToken = Locked<UInt64>(0)

    /// Sends the lines of clients whose `client.id` is `clientID` to `handler` until the returned
    /// route is cancelled or released. The newest route for an id wins.
    public static func route(clientID: String, to handler: @escaping @Sendable (KafkaLogLine) -> Void) -> KafkaLogRoute {
        let token = nextToken.withLock { value -> UInt64 in value += 1; return value }
        routes.withLock { $0[token] = (clientID, handler) }
        return KafkaLogRoute(token: token)
    }

    /// Receives the lines no route claims; nil restores librdkafka's stderr format.
    public static func setFallback(_ handler: (@Sendable (KafkaLogLine) -> Void)?) {
        fallback.withLock { $0 = handler }
    }

    static func cancel(_ token: UInt64) { _ = routes.withLock { $0.removeValue(forKey: token) } }

    static func dispatch(_ line: KafkaLogLine) {
        let handler = routes.withLock { table in
            table.filter { $0.value.clientID == line.clientID }.max { $0.key < $1.key }?.value.handler
        } ?? fallback.withLock { $0 }
        if let handler {
            handler(line)
        } else {
            let text = Array("%\(line.level)|\(line.facility)|\(line.clientID)| \(line.message)\n".utf8)
            _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
    }
}

/// A claim on one client id's librdkafka lines; cancelled on release.
public final class KafkaLogRoute: Sendable {
    private let token: UInt64
    init(token: UInt64) { self.token = token }
    /// Stops routing; later lines go to the fallback.
    public func cancel() { KafkaLog.cancel(token) }
    deinit { KafkaLog.cancel(token) }
}

/// Installed on every client Weir creates; runs on librdkafka's threads, so it only copies and hands off.
func kafkaLogCallback(_ client: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?,
                      _ text: UnsafePointer<CChar>?) {
    var name = client.map { String(cString: rd_kafka_name($0)) } ?? ""
    if let hash = name.lastIndex(of: "#") { name = String(name[..<hash]) }
    KafkaLog.dispatch(KafkaLogLine(level: level, facility: facility.map { String(cString: $0) } ?? "",
                                   message: text.map { String(cString: $0) } ?? "", clientID: name))
}
