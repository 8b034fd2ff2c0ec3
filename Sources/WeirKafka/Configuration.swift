import CRdKafka

/// Where a consumer starts in a partition that has no committed offset.
public enum OffsetReset: String, Sendable {
    case earliest, latest
}

/// How partitions are shared in a group. Cooperative-sticky moves only the partitions that must move.
public enum AssignmentStrategy: String, Sendable {
    case cooperativeSticky = "cooperative-sticky"
    case range
    case roundRobin = "roundrobin"
}

/// Settings for a `KafkaConsumer`: typed common ones, plus any librdkafka property by name.
public struct ConsumerConfiguration: Sendable {
    public var bootstrapServers: String
    public var groupID: String
    public var clientID: String = "weir"
    public var assignmentStrategy: AssignmentStrategy = .cooperativeSticky
    public var autoOffsetReset: OffsetReset = .earliest
    /// Periodic commit of *stored* offsets. `nil` (default): offsets are committed only by `commit`.
    public var autoCommitIntervalMs: Int? = nil
    public var sessionTimeoutMs: Int = 45_000
    public var maxPollIntervalMs: Int = 300_000
    /// Deliver an end-of-partition marker to `KafkaConsumer.poll`'s partition-EOF handler.
    public var partitionEOF: Bool = false
    /// Hand records librdkafka cannot read (a corrupt or undecompressable batch: see
    /// `KafkaErrorCode.isUnreadableRecord`) to `poll` as messages whose `error` is set, instead of to
    /// `onError`: librdkafka fetches such a batch again and again, so only its owner, seeking past it,
    /// can move the partition on. Off by default.
    public var deliversRecordErrors: Bool = false
    /// Any librdkafka property (`fetch.wait.max.ms`, `security.protocol`, ...); applied after the typed settings.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String, groupID: String) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
    }

    func orderedProperties() -> [(String, String)] {
        var list: [(String, String)] = [
            ("bootstrap.servers", bootstrapServers),
            ("group.id", groupID),
            ("client.id", clientID),
            ("partition.assignment.strategy", assignmentStrategy.rawValue),
            ("auto.offset.reset", autoOffsetReset.rawValue),
            ("enable.auto.offset.store", "false"),
            ("enable.auto.commit", autoCommitIntervalMs == nil ? "false" : "true"),
            ("session.timeout.ms", String(sessionTimeoutMs)),
            ("max.poll.interval.ms", String(maxPollIntervalMs)),
            ("enable.partition.eof", partitionEOF ? "true" : "false"),
            ("log.connection.close", "false"),
        ]
        if let interval = autoCommitIntervalMs { list.append(("auto.commit.interval.ms", String(interval))) }
        list.append(contentsOf: properties.sorted { $0.key < $1.key })
        return list
    }
}

/// Settings for a `KafkaProducer`. Idempotent with `acks=all` by default, so retries never duplicate.
public struct ProducerConfiguration: Sendable {
    public var bootstrapServers: String
    public var clientID: String = "weir"
    public var idempotent: Bool = true
    /// Set to enable the transactional API (`initTransactions`, ...).
    public var transactionalID: String? = nil
    public var lingerMs: Int = 5
    /// How long librdkafka keeps retrying one message before reporting it failed; nil keeps
    /// librdkafka's default (300 s, or the transaction timeout for transactional producers).
    public var messageTimeoutMs: Int? = nil
    /// Local queue capacity; a full queue makes `send` wait, never drop.
    public var queueBufferingMaxMessages: Int = 100_000
    public var compression: String = "none"
    /// Any librdkafka property; applied after the typed settings.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String) { self.bootstrapServers = bootstrapServers }

    func orderedProperties() -> [(String, String)] {
        var list: [(String, String)] = [
            ("bootstrap.servers", bootstrapServers),
            ("client.id", clientID),
            ("enable.idempotence", idempotent ? "true" : "false"),
            ("linger.ms", String(lingerMs)),
            ("queue.buffering.max.messages", String(queueBufferingMaxMessages)),
            ("compression.codec", compression),
            ("log.connection.close", "false"),
        ]
        if idempotent { list.append(("acks", "all")) }
        if let messageTimeoutMs { list.append(("message.timeout.ms", String(messageTimeoutMs))) }
        if let transactionalID { list.append(("transactional.id", transactionalID)) }
        list.append(contentsOf: properties.sorted { $0.key < $1.key })
        return list
    }
}

/// Property names whose values are secrets: never logged, never printed.
public func isSecretProperty(_ name: String) -> Bool {
    let lowered = name.lowercased()
    return ["password", "secret", "key", "token"].contains { lowered.contains($0) }
        && !lowered.hasSuffix(".location")
}

/// Builds a native `rd_kafka_conf_t`; on failure names the property librdkafka refused.
func makeNativeConfiguration(_ properties: [(String, String)]) throws(KafkaConfigurationError) -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    rd_kafka_conf_set_log_cb(conf, kafkaLogCallback)
    var errorBuffer = [CChar](repeating: 0, count: 512)
    for (name, value) in properties {
        let result = rd_kafka_conf_set(conf, name, value, &errorBuffer, errorBuffer.count)
        if result != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            var reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if isSecretProperty(name) && !value.isEmpty { reason = reason.split(separator: value, omittingEmptySubsequences: false).joined(separator: "<redacted>") }
            throw KafkaConfigurationError(property: name, value: isSecretProperty(name) ? "<redacted>" : value,
                                          reason: reason)
        }
    }
    return conf
}

/// Creates a client handle; the conf is consumed whether or not this succeeds.
func makeClient(type: rd_kafka_type_t, conf: OpaquePointer) throws(KafkaConfigurationError) -> OpaquePointer {
    var bootstrap = [CChar](repeating: 0, count: 1024)
    var bootstrapSize = bootstrap.count
    if rd_kafka_conf_get(conf, "bootstrap.servers", &bootstrap, &bootstrapSize) != RD_KAFKA_CONF_OK { bootstrap[0] = 0 }
    var errorBuffer = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
        rd_kafka_conf_destroy(conf)
        let reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw KafkaConfigurationError(property: propertyNamed(in: reason) ?? "(client)", value: nil, reason: reason)
    }
    KafkaClients.opened(handle, bootstrap: String(decoding: bootstrap.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    return handle
}

/// Destroys a client handle made by `makeClient` (and forgets it in `KafkaClients`).
func destroyClient(_ handle: OpaquePointer, skippingConsumerClose: Bool = false) {
    KafkaClients.closed(handle)
    if skippingConsumerClose {
        rd_kafka_destroy_flags(handle, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
    } else {
        rd_kafka_destroy(handle)
    }
}

/// The librdkafka clients this process holds open: a test can check that every client it opened
/// was destroyed (a leaked one keeps reconnecting to a stopped broker, flooding the log).
public enum KafkaClients {
    private static let open = Locked([UInt: (name: String, bootstrap: String)]())

    private static func key(_ handle: OpaquePointer) -> UInt { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle))) }

    static func opened(_ handle: OpaquePointer, bootstrap: String) {
        let name = String(cString: rd_kafka_name(handle))
        open.withLock { $0[key(handle)] = (name, bootstrap) }
    }

    /// Raised whenever a client is destroyed.
    private static let closedSignal = EventSignal()

    static func closed(_ handle: OpaquePointer) {
        _ = open.withLock { $0.removeValue(forKey: key(handle)) }
        closedSignal.raise()
    }

    /// Waits (at most `timeoutMs`) until no client connecting to `bootstrap` is open, and returns
    /// those still open then. A producer dropped by its owner is destroyed by its delivery thread
    /// once that finishes serving its current round, a moment later.
    public static func waitUntilClosed(connectingTo bootstrap: String, timeoutMs: Int) -> [String] {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        while true {
            let left = live(connectingTo: bootstrap)
            let remaining = deadline - monotonicMilliseconds()
            if left.isEmpty || remaining <= 0 { return left }
            closedSignal.wait(timeoutMs: Int(min(remaining, 100)))
        }
    }

    /// Instance names (`client.id#consumer-N`) of the clients not yet destroyed whose
    /// `bootstrap.servers` is `bootstrap`.
    public static func live(connectingTo bootstrap: String) -> [String] {
        open.withLock { clients in clients.values.filter { $0.bootstrap == bootstrap }.map(\.name).sorted() }
    }
}

/// librdkafka's cross-property errors quote the property: `` `acks` must be set to `all` ``.
private func propertyNamed(in reason: String) -> String? {
    guard let start = reason.firstIndex(of: "`") else { return nil }
    let rest = reason[reason.index(after: start)...]
    guard let end = rest.firstIndex(of: "`") else { return nil }
    return String(rest[..<end])
}
