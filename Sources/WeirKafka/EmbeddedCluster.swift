import CRdKafka

/// Kafka protocol request types, for fault injection.
public struct KafkaApiKey: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let produce = KafkaApiKey(rawValue: 0)
    public static let fetch = KafkaApiKey(rawValue: 1)
    public static let listOffsets = KafkaApiKey(rawValue: 2)
    public static let metadata = KafkaApiKey(rawValue: 3)
    public static let offsetCommit = KafkaApiKey(rawValue: 8)
    public static let offsetFetch = KafkaApiKey(rawValue: 9)
    public static let findCoordinator = KafkaApiKey(rawValue: 10)
    public static let joinGroup = KafkaApiKey(rawValue: 11)
    public static let heartbeat = KafkaApiKey(rawValue: 12)
    public static let leaveGroup = KafkaApiKey(rawValue: 13)
    public static let syncGroup = KafkaApiKey(rawValue: 14)
    public static let initProducerID = KafkaApiKey(rawValue: 22)
    public static let addPartitionsToTxn = KafkaApiKey(rawValue: 24)
    public static let addOffsetsToTxn = KafkaApiKey(rawValue: 25)
    public static let endTxn = KafkaApiKey(rawValue: 26)
    public static let txnOffsetCommit = KafkaApiKey(rawValue: 28)
}

/// An in-process Kafka cluster (librdkafka's mock brokers) that speaks the real protocol over TCP on
/// loopback. Weir's broker for the demo and every test. Limits: each partition keeps only its last
/// ~5 MiB / 100k message sets, no CreateTopics (use `createTopic`), no TLS/SASL, and a group's first
/// join waits ~3 s.
/// Unchecked: librdkafka's mock-cluster calls are thread-safe; `stopped` is a `Locked` flag.
public final class EmbeddedCluster: @unchecked Sendable {
    private let handle: OpaquePointer
    private let cluster: OpaquePointer
    /// The `bootstrap.servers` string for clients.
    public let bootstrapServers: String
    /// Broker ids, 1 through `brokerCount`.
    public let brokerCount: Int
    private let stopped = Locked(false)

    /// Starts `brokers` brokers and creates `topics` (name and partition count).
    public init(brokers: Int = 1, topics: [(name: String, partitions: Int)] = []) throws {
        let conf = try makeNativeConfiguration([("log_level", "3"), ("client.id", "weir-embedded-broker")])
        handle = try makeClient(type: RD_KAFKA_PRODUCER, conf: conf)
        guard let cluster = rd_kafka_mock_cluster_new(handle, Int32(brokers)) else {
            destroyClient(handle)
            throw KafkaError(operation: "start embedded cluster", code: .transport,
                             message: "librdkafka could not start \(brokers) mock brokers")
        }
        self.cluster = cluster
        brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        for topic in topics { try createTopic(topic.name, partitions: topic.partitions) }
    }

    deinit { stop() }

    /// Stops every broker; clients see their connections close.
    public func stop() {
        let wasStopped = stopped.withLock { flag -> Bool in defer { flag = true }; return flag }
        guard !wasStopped else { return }
        rd_kafka_mock_cluster_destroy(cluster)
        destroyClient(handle)
    }

    /// Creates a topic (the mock broker has no CreateTopics API).
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        try KafkaError.check(
            rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(min(replicationFactor, brokerCount))),
            "create topic '\(name)'")
    }

    /// Makes the next `errors.count` requests of type `api` fail, in order, with these codes.
    /// `.transport` disconnects the client instead.
    public func injectRequestErrors(_ api: KafkaApiKey, _ errors: [KafkaErrorCode]) {
        let native = errors.map(\.native)
        native.withUnsafeBufferPointer {
            rd_kafka_mock_push_request_errors_array(cluster, api.rawValue, $0.count, $0.baseAddress)
        }
    }

    /// Queues `errors` for the next requests of `api` that broker `brokerID` receives, in order.
    /// Unlike `injectRequestErrors`, these can be counted: `pendingRequestErrors` says how many no
    /// request has consumed yet, so a test can show its faults really happened.
    public func injectBrokerRequestErrors(_ api: KafkaApiKey, _ errors: [KafkaErrorCode], broker brokerID: Int32 = 1) throws(KafkaError) {
        for error in errors {
            try KafkaError.check(weir_mock_broker_push_request_error(cluster, brokerID, api.rawValue, error.native),
                                 "inject a broker request error")
        }
    }

    /// Errors queued by `injectBrokerRequestErrors` for `api` on broker `brokerID` that no request
    /// has consumed yet.
    public func pendingRequestErrors(_ api: KafkaApiKey, broker brokerID: Int32 = 1) throws(KafkaError) -> Int {
        var count = 0
        try KafkaError.check(rd_kafka_mock_broker_error_stack_cnt(cluster, brokerID, api.rawValue, &count), "count broker request errors")
        return count
    }

    /// Drops errors still queued for `api`.
    public func clearRequestErrors(_ api: KafkaApiKey) {
        rd_kafka_mock_clear_request_errors(cluster, api.rawValue)
    }

    /// Disconnects a broker (nil: all) and refuses new connections until `setBrokerUp`.
    public func setBrokerDown(_ brokerID: Int32? = nil) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_down(cluster, brokerID ?? -1), "set broker down")
    }

    /// Lets a broker (nil: all) accept connections again.
    public func setBrokerUp(_ brokerID: Int32? = nil) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_up(cluster, brokerID ?? -1), "set broker up")
    }

    /// Delays every response of a broker (nil: all) by `milliseconds`.
    public func setRoundTripDelay(_ milliseconds: Int, broker brokerID: Int32? = nil) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_rtt(cluster, brokerID ?? -1, Int32(milliseconds)),
                             "set round-trip delay")
    }

    /// Moves a partition's leadership to `brokerID` (-1: leaderless).
    public func setPartitionLeader(_ topic: String, _ partition: Int32, broker brokerID: Int32) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID),
                             "set leader of \(topic)[\(partition)]")
    }

    /// Pins the coordinator for a group (`keyType` "group") or transactional id ("transaction").
    public func setCoordinator(keyType: String, key: String, broker brokerID: Int32) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_coordinator_set(cluster, keyType, key, brokerID), "set coordinator")
    }

    /// Makes Metadata (and AddPartitionsToTxn) requests for `topic` fail with `error`.
    public func setTopicError(_ topic: String, _ error: KafkaErrorCode) {
        rd_kafka_mock_topic_set_error(cluster, topic, error.native)
    }
}
