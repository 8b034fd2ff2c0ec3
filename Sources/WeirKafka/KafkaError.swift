import CRdKafka

/// A librdkafka error code (`rd_kafka_resp_err_t`), broker-side (positive) or client-side (negative).
public struct KafkaErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ native: rd_kafka_resp_err_t) { self.rawValue = native.rawValue }

    var native: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

    public static let noError = KafkaErrorCode(rawValue: 0)
    public static let offsetOutOfRange = KafkaErrorCode(rawValue: 1)
    public static let unknownTopicOrPartition = KafkaErrorCode(rawValue: 3)
    public static let leaderNotAvailable = KafkaErrorCode(rawValue: 5)
    public static let notLeaderForPartition = KafkaErrorCode(rawValue: 6)
    public static let requestTimedOut = KafkaErrorCode(rawValue: 7)
    public static let networkException = KafkaErrorCode(rawValue: 13)
    public static let coordinatorLoadInProgress = KafkaErrorCode(rawValue: 14)
    public static let coordinatorNotAvailable = KafkaErrorCode(rawValue: 15)
    public static let notCoordinator = KafkaErrorCode(rawValue: 16)
    /// The record is over `message.max.bytes` (the producer's, or the broker's for the topic).
    public static let messageTooLarge = KafkaErrorCode(rawValue: 10)
    public static let recordListTooLarge = KafkaErrorCode(rawValue: 18)
    public static let notEnoughReplicas = KafkaErrorCode(rawValue: 19)
    public static let illegalGeneration = KafkaErrorCode(rawValue: 22)
    public static let rebalanceInProgress = KafkaErrorCode(rawValue: 27)
    public static let producerFenced = KafkaErrorCode(rawValue: 47)  // INVALID_PRODUCER_EPOCH
    public static let concurrentTransactions = KafkaErrorCode(rawValue: 51)
    /// Client-side: the connection to the broker went away (`_TRANSPORT`).
    public static let transport = KafkaErrorCode(RD_KAFKA_RESP_ERR__TRANSPORT)
    /// Client-side: the local producer queue is full (`_QUEUE_FULL`).
    public static let queueFull = KafkaErrorCode(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    /// Client-side: a message timed out before delivery (`_MSG_TIMED_OUT`).
    public static let messageTimedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    /// Client-side: end of partition reached (only with `enable.partition.eof`).
    public static let partitionEOF = KafkaErrorCode(RD_KAFKA_RESP_ERR__PARTITION_EOF)
    /// Client-side: the operation timed out (`_TIMED_OUT`).
    public static let timedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__TIMED_OUT)
    /// Client-side: a fatal error happened earlier; the client must be recreated.
    public static let fatal = KafkaErrorCode(RD_KAFKA_RESP_ERR__FATAL)
    /// Client-side: the call is not valid in the client's current state (`_STATE`).
    public static let invalidState = KafkaErrorCode(RD_KAFKA_RESP_ERR__STATE)
    /// Client-side: the message was purged before delivery, e.g. by an aborted transaction.
    public static let purged = KafkaErrorCode(RD_KAFKA_RESP_ERR__PURGE_QUEUE)
    /// Client-side: a newer producer with the same `transactional.id` fenced this one (`_FENCED`).
    public static let fenced = KafkaErrorCode(RD_KAFKA_RESP_ERR__FENCED)
    /// Broker-side: the producer id was fenced by a newer one (`PRODUCER_FENCED`).
    public static let producerFencedByBroker = KafkaErrorCode(rawValue: 90)
    /// Client-side: nothing to commit (`_NO_OFFSET`).
    public static let noOffset = KafkaErrorCode(RD_KAFKA_RESP_ERR__NO_OFFSET)

    public static let corruptMessage = KafkaErrorCode(rawValue: 2)
    public static let invalidRequiredAcks = KafkaErrorCode(rawValue: 21)
    public static let topicAuthorizationFailed = KafkaErrorCode(rawValue: 29)
    public static let clusterAuthorizationFailed = KafkaErrorCode(rawValue: 31)
    public static let invalidTimestamp = KafkaErrorCode(rawValue: 32)
    public static let unsupportedForMessageFormat = KafkaErrorCode(rawValue: 43)
    public static let policyViolation = KafkaErrorCode(rawValue: 44)
    /// The broker refused the record for the topic (a null key on a compacted topic, say).
    public static let invalidRecord = KafkaErrorCode(rawValue: 87)
    /// Client-side: the topic does not exist in the cluster (`_UNKNOWN_TOPIC`).
    public static let unknownTopic = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    /// Client-side: the partition does not exist (`_UNKNOWN_PARTITION`).
    public static let unknownPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    /// Client-side: a malformed argument, such as a header the producer cannot encode (`_INVALID_ARG`).
    public static let invalidArgument = KafkaErrorCode(RD_KAFKA_RESP_ERR__INVALID_ARG)

    /// Client-side: a message set failed its checks (`_BAD_MSG`).
    public static let badMessage = KafkaErrorCode(RD_KAFKA_RESP_ERR__BAD_MSG)
    /// Client-side: a message set could not be decompressed (`_BAD_COMPRESSION`).
    public static let badCompression = KafkaErrorCode(RD_KAFKA_RESP_ERR__BAD_COMPRESSION)
    public static let unsupportedCompressionType = KafkaErrorCode(rawValue: 76)

    /// Whether a consumed message with this error stands for records that cannot be read: the
    /// consumer fetches them again and again unless its owner seeks past them.
    public var isUnreadableRecord: Bool {
        self == .badMessage || self == .badCompression || self == .corruptMessage || self == .unsupportedCompressionType
    }

    /// Whether a record refused with this code would be refused again however often it is sent:
    /// it is too large or malformed for the topic, not authorized, or for a topic or partition that
    /// does not exist. Any other refusal (a timeout, a leader change, an unreachable broker) may
    /// pass on a later try. Decided by code, never by the error's text.
    public var refusesRecordForGood: Bool {
        switch self {
        case .corruptMessage, .unknownTopicOrPartition, .messageTooLarge, .recordListTooLarge, .invalidRequiredAcks,
             .topicAuthorizationFailed, .clusterAuthorizationFailed, .invalidTimestamp, .unsupportedForMessageFormat,
             .policyViolation, .invalidRecord, .unknownTopic, .unknownPartition, .invalidArgument, .fatal:
            return true
        default:
            return false
        }
    }

    /// Whether a producer refused a record with this code because of its own state, not the
    /// record's: a transactional producer whose transaction failed takes nothing until it is
    /// aborted (librdkafka's abortable-error state answers every send with `_STATE`).
    public var refusesForProducerState: Bool { self == .invalidState }

    /// Whether this code says the record is too large to publish (the producer's or the broker's limit).
    public var isRecordTooLarge: Bool { self == .messageTooLarge || self == .recordListTooLarge }

    /// Whether this code says a newer producer with the same `transactional.id` took over.
    public var isFencing: Bool { self == .fenced || self == .producerFenced || self == .producerFencedByBroker }

    /// The librdkafka symbolic name, e.g. `NOT_LEADER_FOR_PARTITION`.
    public var name: String { String(cString: rd_kafka_err2name(native)) }
    /// librdkafka's human description.
    public var description: String { "\(name): \(String(cString: rd_kafka_err2str(native)))" }
}

/// An error from a librdkafka operation, carrying the flags that say how to react to it.
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    /// What Weir was doing, e.g. `commit` or `produce to 'predictions'`.
    public let operation: String
    public let code: KafkaErrorCode
    public let message: String
    /// Retrying the same call may succeed.
    public let isRetriable: Bool
    /// The client instance is unusable and must be recreated.
    public let isFatal: Bool
    /// The current transaction must be aborted (transactional producers only).
    public let requiresAbort: Bool

    public init(operation: String, code: KafkaErrorCode, message: String? = nil,
                isRetriable: Bool = false, isFatal: Bool = false, requiresAbort: Bool = false) {
        self.operation = operation
        self.code = code
        self.message = message ?? String(cString: rd_kafka_err2str(code.native))
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.requiresAbort = requiresAbort
    }

    /// Takes ownership of an `rd_kafka_error_t`, reads it, and destroys it.
    init(operation: String, consuming error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            operation: operation,
            code: KafkaErrorCode(rd_kafka_error_code(error)),
            message: String(cString: rd_kafka_error_string(error)),
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            requiresAbort: rd_kafka_error_txn_requires_abort(error) != 0)
    }

    /// Throws when `error` is non-nil, destroying it either way.
    static func check(_ error: OpaquePointer?, _ operation: @autoclosure () -> String) throws(KafkaError) {
        if let error { throw KafkaError(operation: operation(), consuming: error) }
    }

    /// Throws when `code` is not `NO_ERROR`.
    static func check(_ code: rd_kafka_resp_err_t, _ operation: @autoclosure () -> String) throws(KafkaError) {
        if code != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(operation: operation(), code: KafkaErrorCode(code))
        }
    }

    public var description: String { "\(operation) failed: \(code.name): \(message)" }
}

/// A configuration property librdkafka refused, named so the operator knows what to fix.
public struct KafkaConfigurationError: Error, CustomStringConvertible, Sendable {
    /// The librdkafka property name, e.g. `fetch.wait.max.ms`.
    public let property: String
    /// The value that was refused, `<redacted>` for secrets, nil when the refusal is about the client.
    public let value: String?
    /// librdkafka's own reason.
    public let reason: String
    public var description: String {
        let shown = value.map { " = '\($0)'" } ?? ""
        return "kafka property '\(property)'\(shown): \(reason)"
    }
}
