import Foundation
import Synchronization
import WeirControl
import WeirKafka

/// Streams every partition of `topic` from the beginning up to the high watermarks at the time
/// of the call, handing each message to `visit` without copying it, and leaves `consumer`
/// assigned so it follows new messages afterwards. Records come per partition in offset order
/// (a model's messages share a partition: the key is its name). Fails only when the topic cannot
/// be read at all or no message arrives for `idleTimeoutMs` before the end: however many records
/// there are, a reader that keeps receiving them is never cut off. A missing topic fails only
/// when `required`. Returns how many records were read.
@discardableResult
func streamTopic(_ consumer: KafkaConsumer, topic: String, setting: String, required: Bool = true, idleTimeoutMs: Int,
                 visit: (KafkaMessage) -> Void) throws -> Int {
    let partitions: Int
    do { partitions = try consumer.partitionCount(topic, timeoutMs: idleTimeoutMs) } catch {
        if error.code == .unknownTopicOrPartition {
            if !required { return 0 }
            throw WorkerError("\(setting): topic '\(topic)' does not exist; create it (one partition is enough)")
        }
        throw WorkerError("\(setting): cannot read the metadata of '\(topic)': \(error)")
    }
    var ends = [Int32: Int64]()
    for partition in 0..<Int32(partitions) {
        do {
            let marks = try consumer.watermarks(topic, partition, timeoutMs: idleTimeoutMs)
            if marks.high > marks.low { ends[partition] = marks.high }
        } catch {
            throw WorkerError("\(setting): cannot read the end of \(topic)[\(partition)]: \(error)")
        }
    }
    try consumer.assign((0..<Int32(partitions)).map { TopicPartitionOffset(topic, $0, -2) })  // -2: beginning
    var next = [Int32: Int64]()
    var count = 0
    var lastProgress = Date()
    func done() -> Bool { ends.allSatisfy { partition, end in (next[partition] ?? -1) >= end } }
    while !done() {
        if Date().timeIntervalSince(lastProgress) * 1000 > Double(idleTimeoutMs) {
            throw WorkerError("\(setting): read \(count) messages of '\(topic)', then nothing for \(idleTimeoutMs) ms before its end")
        }
        consumer.poll(maxMessages: 1000, timeoutMs: 50) { batch in
            for message in batch where message.error == nil {
                visit(message)
                count += 1
                next[message.partition] = message.offset + 1
                lastProgress = Date()
            }
        }
    }
    return count
}

/// A control message whose signature checked out, with the bytes it was signed as (kept to
/// publish as a checkpoint other workers can verify).
struct VerifiedControl: Sendable, Equatable {
    let message: ControlMessage
    let value: [UInt8]
    let signature: [UInt8]
}

/// Checks control records before anything of them is kept: a value over the size bound is
/// refused unread, an unsigned or badly signed one is refused before it is parsed.
struct ControlIntake: Sendable {
    var verifier: ControlVerifier
    var maxBytes: Int

    /// The checked message of a consumed record (copied only once it verified).
    func check(_ message: KafkaMessage) -> Result<VerifiedControl, ControlRejection> {
        guard let value = message.value else { return .failure(ControlRejection(.malformed, "the control record has no value")) }
        guard value.count <= maxBytes else {
            return .failure(ControlRejection(.tooLarge, "the value is \(value.count) bytes, over control.max-message-bytes \(maxBytes)"))
        }
        let header = message.headers.last(named: ControlSignature.headerName).flatMap { $0 }
        return check(value: value, header: header)
    }

    /// The same check for bytes already held (a checkpoint's embedded message).
    func check(value: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer?) -> Result<VerifiedControl, ControlRejection> {
        let headerBytes = header.map { Array($0) }
        switch verifier.check(value: value, header: headerBytes) {
        case .valid: break
        case .missing: return .failure(ControlRejection(.missingSignature, "no \(ControlSignature.headerName) header"))
        case .malformed:
            return .failure(ControlRejection(.badSignature, "\(ControlSignature.headerName) is not ed25519=<key id>:<128 hex digits> nor hmac-sha256=<64 hex digits>"))
        case .wrong: return .failure(ControlRejection(.badSignature, "\(ControlSignature.headerName) does not match the value (wrong key, or the value was changed)"))
        case .unknownKey(let id):
            return .failure(ControlRejection(.unknownKey, "signed by key \(id), which is not in control.public-keys"))
        case .notAccepted(let why): return .failure(ControlRejection(.badSignature, why))
        }
        do { return .success(VerifiedControl(message: try ControlMessage.parse(value), value: Array(value), signature: headerBytes ?? [])) } catch {
            return .failure(ControlRejection(.malformed, error.description))
        }
    }
}

/// Writes signed control messages (`weir control`): reads the topic to pick the next sequence and,
/// for rollback and promote, the bundle the rollout ends on, then signs and sends one message.
public final class ControlClient {
    private let brokers: String
    private let topic: String
    private let signer: ControlSigner
    private let verifier: ControlVerifier
    private let properties: [String: String]

    /// `properties` are librdkafka properties for both clients (security settings and the like).
    /// The topic's history is checked with `verifier` (default: the signer's own key; give every
    /// current public key after a rotation, or the history signed by the old key is not counted).
    public init(brokers: String, topic: String, signer: ControlSigner, verifier: ControlVerifier? = nil,
                properties: [String: String] = [:]) {
        self.brokers = brokers
        self.topic = topic
        self.signer = signer
        self.verifier = verifier ?? signer.verifier
        self.properties = properties
    }

    /// A client signing with the shared HMAC key.
    public convenience init(brokers: String, topic: String, key: [UInt8], properties: [String: String] = [:]) {
        self.init(brokers: brokers, topic: topic, signer: .hmac(key), properties: properties)
    }

    /// The validly signed messages of the topic, in order (per partition).
    public func history(timeoutMs: Int = 15_000) throws -> [ControlMessage] {
        var configuration = ConsumerConfiguration(bootstrapServers: brokers, groupID: "weir-control-cli-\(getpid())")
        configuration.clientID = "weir-control"
        configuration.properties = properties
        configuration.properties["fetch.wait.max.ms"] = configuration.properties["fetch.wait.max.ms"] ?? "10"
        let consumer = try KafkaConsumer(configuration: configuration)
        defer { try? consumer.close() }
        let intake = ControlIntake(verifier: verifier, maxBytes: 1 << 20)
        var messages = [ControlMessage]()
        try streamTopic(consumer, topic: topic, setting: "control-topic", idleTimeoutMs: timeoutMs) { record in
            if case .success(let checked) = intake.check(record) { messages.append(checked.message) }
        }
        return messages
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
                    headers: [(ControlSignature.headerName, signer.header(for: value))])
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
