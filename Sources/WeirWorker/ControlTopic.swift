import Foundation
import Synchronization
import WeirControl
import WeirKafka

/// Reads every partition of a control topic from the beginning up to the high watermarks at the
/// time of the call, leaving `consumer` assigned so it follows new messages afterwards. Records
/// come per partition in offset order (a model's messages share a partition: the key is its name).
func readControlTopic(_ consumer: KafkaConsumer, topic: String, timeoutMs: Int) throws -> [ConsumedRecord] {
    let partitions: Int
    do { partitions = try consumer.partitionCount(topic, timeoutMs: timeoutMs) } catch {
        if error.code == .unknownTopicOrPartition {
            throw WorkerError("control-topic: topic '\(topic)' does not exist; create it (one partition is enough)")
        }
        throw WorkerError("control-topic: cannot read the metadata of '\(topic)': \(error)")
    }
    var ends = [Int32: Int64]()
    for partition in 0..<Int32(partitions) {
        do {
            let marks = try consumer.watermarks(topic, partition, timeoutMs: timeoutMs)
            if marks.high > marks.low { ends[partition] = marks.high }
        } catch {
            throw WorkerError("control-topic: cannot read the end of \(topic)[\(partition)]: \(error)")
        }
    }
    try consumer.assign((0..<Int32(partitions)).map { TopicPartitionOffset(topic, $0, -2) })  // -2: beginning
    var next = [Int32: Int64]()
    var records = [ConsumedRecord]()
    let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
    func done() -> Bool { ends.allSatisfy { partition, end in (next[partition] ?? -1) >= end } }
    while !done() {
        if Date() > deadline {
            throw WorkerError("control-topic: read \(records.count) messages of '\(topic)' but not to its end within \(timeoutMs) ms")
        }
        consumer.poll(maxMessages: 500, timeoutMs: 50) { batch in
            for message in batch {
                records.append(message.record())
                next[message.partition] = message.offset + 1
            }
        }
    }
    return records
}

/// A control record's message, once its signature is valid under `key` (nothing of an unsigned
/// record is even parsed), or why it cannot be used.
func verifiedControlMessage(_ record: ConsumedRecord, key: [UInt8]) -> Result<ControlMessage, ControlRejection> {
    guard let value = record.value else { return .failure(ControlRejection(.malformed, "the control record has no value")) }
    let header = record.headers.last { $0.name == ControlSignature.headerName }?.value
    switch ControlSignature.verify(value: value, header: header, key: key) {
    case .valid: break
    case .missing: return .failure(ControlRejection(.missingSignature, "no \(ControlSignature.headerName) header"))
    case .malformed: return .failure(ControlRejection(.badSignature, "\(ControlSignature.headerName) is not hmac-sha256=<64 hex digits>"))
    case .wrong: return .failure(ControlRejection(.badSignature, "\(ControlSignature.headerName) does not match the value under control.key-file"))
    }
    do { return .success(try ControlMessage.parse(value)) } catch {
        return .failure(ControlRejection(.malformed, error.description))
    }
}

/// Writes signed control messages (`weir control`): reads the topic to pick the next sequence and,
/// for rollback and promote, the bundle the rollout ends on, then signs and sends one message.
public final class ControlClient {
    private let brokers: String
    private let topic: String
    private let key: [UInt8]
    private let properties: [String: String]

    /// `properties` are librdkafka properties for both clients (security settings and the like).
    public init(brokers: String, topic: String, key: [UInt8], properties: [String: String] = [:]) {
        self.brokers = brokers
        self.topic = topic
        self.key = key
        self.properties = properties
    }

    /// The validly signed messages of the topic, in order (per partition).
    public func history(timeoutMs: Int = 15_000) throws -> [ControlMessage] {
        var configuration = ConsumerConfiguration(bootstrapServers: brokers, groupID: "weir-control-cli-\(getpid())")
        configuration.clientID = "weir-control"
        configuration.properties = properties
        configuration.properties["fetch.wait.max.ms"] = configuration.properties["fetch.wait.max.ms"] ?? "10"
        let consumer = try KafkaConsumer(configuration: configuration)
        defer { try? consumer.close() }
        return try readControlTopic(consumer, topic: topic, timeoutMs: timeoutMs).compactMap { record in
            try? verifiedControlMessage(record, key: key).get()
        }
    }

    /// The rollout state the topic describes for `model` (its `active` starts as a placeholder with
    /// an empty sha256: the bundle each worker was started with).
    public static func state(of model: String, in history: [ControlMessage]) -> RolloutState {
        var state = RolloutState(active: BundleRef(version: "", location: "", sha256: ""))
        for message in history where message.model == model {
            if case .success(let next) = state.applying(message) { state = next }
        }
        return state
    }

    /// Completes `message` from the topic: the next sequence when it has none (0), and for
    /// promote/rollback without a bundle, the bundle the rollout will end on (so a compacted topic
    /// still says what to serve). Returns the message to send.
    public func prepare(_ message: ControlMessage) throws -> ControlMessage {
        let history = try history()
        let state = Self.state(of: message.model, in: history)
        var message = message
        if message.sequence == 0 { message.sequence = state.lastSequence + 1 }
        if message.bundleRef == nil, case .success(let next) = state.applying(message) {
            let ends: BundleRef? = switch message.action {
            case .promote, .rollback: next.active.sha256.isEmpty ? nil : next.active
            default: nil
            }
            if let ends {
                message.version = ends.version
                message.bundle = ends.location
                message.sha256 = ends.sha256
            }
        }
        return message
    }

    /// Signs `message` and sends it, keyed by model name; returns once the broker has it.
    public func send(_ message: ControlMessage) throws {
        let value = message.encoded()
        try sendRaw(key: Array(message.model.utf8), value: value,
                    headers: [(ControlSignature.headerName, ControlSignature.sign(value: value, key: key))])
    }

    /// Sends a value as is, with the given headers (tests use it for unsigned and forged messages).
    public func sendRaw(key: [UInt8], value: [UInt8], headers: [(String, String)]) throws {
        var configuration = ProducerConfiguration(bootstrapServers: brokers)
        configuration.clientID = "weir-control"
        configuration.lingerMs = 0
        configuration.properties = properties
        let failure = Mutex<String?>(nil)
        let delivered = Atomic<Bool>(false)
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
            for report in reports {
                if let error = report.error { failure.withLock { $0 = "\(error)" } } else { delivered.store(true, ordering: .relaxed) }
            }
        })
        var outgoing = OutgoingHeaders()
        for (name, value) in headers { outgoing.append(name: name, value: value) }
        try producer.send(to: try producer.topic(topic), key: key, value: value, headers: outgoing)
        try producer.flush(timeoutMs: 15_000)
        if let failure = failure.withLock({ $0 }) { throw WorkerError("control message not delivered to '\(topic)': \(failure)") }
        guard delivered.load(ordering: .relaxed) else { throw WorkerError("control message not delivered to '\(topic)' within 15 s") }
        try? producer.close(timeoutMs: 1000)
    }
}
