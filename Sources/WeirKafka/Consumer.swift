import CRdKafka

/// What the owner of a consumer does when the group moves partitions. Called on the poll thread,
/// inside `poll` or `close`, before librdkafka applies the change: in `partitionsRevoked` the owner
/// finishes in-flight work and commits, so the next owner starts where this one stopped.
public struct RebalanceHandlers {
    public var partitionsAssigned: ([TopicPartition]) -> Void
    /// `lost` is true when the partitions were already taken away (session timeout): do not commit.
    public var partitionsRevoked: (_ partitions: [TopicPartition], _ lost: Bool) -> Void
    /// When true the handlers are not called inside `poll`: the change waits in `pendingRebalance`
    /// until the owner calls `completeRebalance()` at a point of its own choosing.
    let deferred: Bool

    public init(partitionsAssigned: @escaping ([TopicPartition]) -> Void = { _ in },
                partitionsRevoked: @escaping ([TopicPartition], Bool) -> Void = { _, _ in }) {
        self.partitionsAssigned = partitionsAssigned
        self.partitionsRevoked = partitionsRevoked
        deferred = false
    }

    /// Rebalances wait for the owner: `poll` stops at one and returns what it has; the owner reads
    /// `pendingRebalance`, finishes its own work and calls `completeRebalance()`. librdkafka holds
    /// the group's change until then (within `max.poll.interval.ms`). During `close` changes
    /// complete at once, since the owner has nothing in flight by then.
    public static var deferred: RebalanceHandlers { RebalanceHandlers(deferred: true) }

    private init(deferred: Bool) {
        partitionsAssigned = { _ in }
        partitionsRevoked = { _, _ in }
        self.deferred = deferred
    }
}

/// A change of assignment the owner has not yet applied (`RebalanceHandlers.deferred`).
public enum RebalanceEvent: Equatable, Sendable {
    case assigned([TopicPartition])
    /// `lost`: the partitions were already taken away (session timeout): do not commit them.
    case revoked([TopicPartition], lost: Bool)
}

/// A group consumer over librdkafka, confined to one thread (not `Sendable`): librdkafka 2.0.2 must
/// not run batch consume concurrently with seek, pause, resume or a rebalance, and this type keeps
/// them all on that thread. Other threads wake a waiting `poll` by raising its `signal`.
public final class KafkaConsumer {
    let handle: OpaquePointer
    private let queue: OpaquePointer
    /// Raised by librdkafka when the consumer queue gains events; share it with a producer in
    /// `.callerThread` mode so one thread wakes for both messages and delivery reports.
    public let signal: EventSignal
    private let context: ConsumerContext
    private var buffer: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>
    private var bufferCapacity: Int
    /// `ConsumerConfiguration.deliversRecordErrors`.
    private let deliversRecordErrors: Bool
    private var closed = false
    /// A bounded close gave up: destroying must not wait for the group either.
    private var skipsCloseOnDestroy = false

    /// Creates the consumer; nothing is consumed until `subscribe` or `assign`.
    /// - Parameters:
    ///   - signal: the wake-up to raise when events arrive (pass a shared one to combine sources).
    ///   - rebalance: called on the poll thread around every assignment change.
    ///   - onError: client-level errors (broker down, fatal errors) and per-message errors.
    ///   - onCommitFailure: offsets whose commit the coordinator refused (asynchronous commits report
    ///     only here), with the error; called on the poll thread, inside `poll`.
    public init(configuration: ConsumerConfiguration, signal: EventSignal = EventSignal(),
                rebalance: RebalanceHandlers = RebalanceHandlers(),
                onError: @escaping (KafkaError) -> Void = { _ in },
                onCommitFailure: @escaping ([TopicPartitionOffset], KafkaErrorCode) -> Void = { _, _ in }) throws {
        let conf = try makeNativeConfiguration(configuration.orderedProperties())
        let context = ConsumerContext(rebalance: rebalance, onError: onError, onCommitFailure: onCommitFailure)
        deliversRecordErrors = configuration.deliversRecordErrors
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf, consumerRebalanceCallback)
        rd_kafka_conf_set_error_cb(conf, consumerErrorCallback)
        rd_kafka_conf_set_offset_commit_cb(conf, consumerCommitCallback)
        let handle = try makeClient(type: RD_KAFKA_CONSUMER, conf: conf)
        self.handle = handle
        self.context = context
        self.signal = signal
        context.handle = handle
        rd_kafka_poll_set_consumer(handle)
        queue = rd_kafka_queue_get_consumer(handle)
        bufferCapacity = 1024
        buffer = .allocate(capacity: bufferCapacity)
        signal.attach(to: queue)
    }

    deinit {
        if !closed { try? close() }
        signal.detach(from: queue)
        rd_kafka_queue_destroy(queue)
        destroyClient(handle, skippingConsumerClose: skipsCloseOnDestroy)
        buffer.deallocate()
    }

    /// Joins the group for `topics`.
    public func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = NativePartitionList(topics.map { TopicPartition($0, -1) })
        try KafkaError.check(rd_kafka_subscribe(handle, list.pointer), "subscribe to \(topics)")
    }

    /// Reads specific partitions without a group rebalance (for control-topic style readers).
    public func assign(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        let list = NativePartitionList(offsets)
        try KafkaError.check(rd_kafka_assign(handle, list.pointer), "assign \(offsets)")
        context.assigned = Set(offsets.map(\.topicPartition))
    }

    /// Consumes up to `maxMessages`. When none are ready it waits on `signal` (librdkafka's queue
    /// event, or `wakeUp()`) for at most `timeoutMs`, never sleeping blindly. `body` sees only real
    /// messages (errors go to `onError`) and only of partitions still assigned; they are freed after
    /// `body` returns. Rebalance handlers run inside this call. Returns the number handed to `body`.
    @discardableResult
    public func poll<E: Error>(maxMessages: Int = 500, timeoutMs: Int = 100,
                               _ body: (KafkaMessageBatch) throws(E) -> Void) throws(E) -> Int {
        let kept = consumeKept(maxMessages: maxMessages, timeoutMs: timeoutMs)
        defer { for index in 0..<kept { rd_kafka_message_destroy(buffer[index]) } }
        if kept > 0 { try body(KafkaMessageBatch(base: buffer, count: kept)) }
        return kept
    }

    /// Like `poll`, but hands the kept messages over instead of freeing them: they are appended to
    /// `messages` and stay valid (zero-copy key, value and headers) until `release()` is called on
    /// each. For pipelines that batch events across polls and answer them later.
    @discardableResult
    public func poll(maxMessages: Int = 500, timeoutMs: Int = 100, retainingInto messages: inout [RetainedMessage]) -> Int {
        let kept = consumeKept(maxMessages: maxMessages, timeoutMs: timeoutMs)
        for index in 0..<kept { messages.append(RetainedMessage(buffer[index]!)) }
        return kept
    }

    /// Fills the front of `buffer` with up to `maxMessages` kept messages (see `compact`), waiting
    /// on `signal` for at most `timeoutMs` when none are ready. Returns how many. With a deferred
    /// rebalance waiting, consumes nothing: the owner completes it first.
    private func consumeKept(maxMessages: Int, timeoutMs: Int) -> Int {
        if !context.pending.isEmpty { return 0 }
        if maxMessages > bufferCapacity {
            buffer.deallocate()
            bufferCapacity = maxMessages
            buffer = .allocate(capacity: bufferCapacity)
        }
        context.revokedDuringPoll = false
        var count = consumeReady(maxMessages)
        if count == 0 && timeoutMs > 0 && context.pending.isEmpty && signal.wait(timeoutMs: timeoutMs) {
            count = consumeReady(maxMessages)
        }
        return count == 0 ? 0 : compact(count)
    }

    /// The oldest assignment change waiting for the owner (`RebalanceHandlers.deferred`), if any.
    public var pendingRebalance: RebalanceEvent? { context.pending.first?.event }

    /// Applies the oldest waiting assignment change in librdkafka (assign or unassign), after the
    /// owner has finished with it. Errors go to `onError`.
    public func completeRebalance() {
        guard !context.pending.isEmpty else { return }
        context.complete(context.pending.removeFirst())
    }

    private func consumeReady(_ maxMessages: Int) -> Int {
        let count = rd_kafka_consume_batch_queue(queue, 0, buffer, maxMessages)
        return count < 0 ? 0 : count
    }

    /// Moves good messages to the front, routing errors to the handler and dropping messages of
    /// partitions revoked during this call (their next owner reads them from the committed offset).
    private func compact(_ count: Int) -> Int {
        var kept = 0
        for index in 0..<count {
            let message = buffer[index]!
            if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if deliversRecordErrors, message.pointee.rkt != nil, message.pointee.offset >= 0,
                   KafkaErrorCode(message.pointee.err).isUnreadableRecord {
                    buffer[kept] = message
                    kept += 1
                    continue
                }
                if message.pointee.err == RD_KAFKA_RESP_ERR__PARTITION_EOF, let topic = message.pointee.rkt {
                    reachedEnd.append(TopicPartitionOffset(String(cString: rd_kafka_topic_name(topic)), message.pointee.partition,
                                                           message.pointee.offset))
                } else {
                    let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "-"
                    context.onError(KafkaError(
                        operation: "consume \(topic)[\(message.pointee.partition)]",
                        code: KafkaErrorCode(message.pointee.err),
                        message: String(cString: rd_kafka_message_errstr(message))))
                }
                rd_kafka_message_destroy(message)
                continue
            }
            if context.revokedDuringPoll {
                let partition = TopicPartition(String(cString: rd_kafka_topic_name(message.pointee.rkt)),
                                               message.pointee.partition)
                if !context.assigned.contains(partition) {
                    rd_kafka_message_destroy(message)
                    continue
                }
            }
            buffer[kept] = message
            kept += 1
        }
        return kept
    }

    /// With `ConsumerConfiguration.partitionEOF`: the partitions `poll` found at their end since the
    /// last `takeReachedEnd()`, with the end offset (a reader of a fixed range knows it is done
    /// even when the range ends in offsets that hold no record: transaction markers, compaction).
    private var reachedEnd: [TopicPartitionOffset] = []

    public func takeReachedEnd() -> [TopicPartitionOffset] {
        defer { reachedEnd.removeAll() }
        return reachedEnd
    }

    /// Interrupts a waiting `poll`. Another thread cannot hold the consumer: it raises `signal`.
    public func wakeUp() { signal.raise() }

    /// Marks offsets (next offset to read) as processed; a later `commit()` or auto-commit sends them.
    public func storeOffsets(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        let list = NativePartitionList(offsets)
        try KafkaError.check(rd_kafka_offsets_store(handle, list.pointer), "store offsets")
        if let error = list.firstError("store offset for") { throw error }
    }

    /// Commits `offsets` (next offset to read per partition), or every stored offset when nil.
    /// Synchronous unless `async`. Nothing to commit is not an error.
    public func commit(_ offsets: [TopicPartitionOffset]? = nil, async: Bool = false) throws(KafkaError) {
        let code: rd_kafka_resp_err_t
        if let offsets {
            if offsets.isEmpty { return }
            let list = NativePartitionList(offsets)
            code = rd_kafka_commit(handle, list.pointer, async ? 1 : 0)
        } else {
            code = rd_kafka_commit(handle, nil, async ? 1 : 0)
        }
        if code == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
        try KafkaError.check(code, "commit")
        if async { context.asyncCommitsInFlight += 1 }
    }

    /// Asynchronous commits sent whose outcome has not been served yet. librdkafka retries a
    /// refused commit by itself, so an older commit can land after a newer one: wait for this to
    /// reach zero (serving the consumer) before a commit that must be the last word, as at stop.
    public var asyncCommitsInFlight: Int { context.asyncCommitsInFlight }

    /// Commits `offsets` and waits at most `timeoutMs` for the coordinator's answer. A plain
    /// synchronous commit can wait indefinitely: while the group rebalances, its answer may need
    /// this very thread to serve the rebalance first. On `timedOut` the commit may still land
    /// later; serve the consumer (`poll`) and commit again.
    public func commit(_ offsets: [TopicPartitionOffset], timeoutMs: Int) throws(KafkaError) {
        if offsets.isEmpty { return }
        let list = NativePartitionList(offsets)
        guard let replies = rd_kafka_queue_new(handle) else {
            throw KafkaError(operation: "commit", code: .invalidState, message: "cannot create a reply queue")
        }
        defer { rd_kafka_queue_destroy(replies) }
        let reply = CommitReply()
        let code = rd_kafka_commit_queue(handle, list.pointer, replies, commitReplyCallback, Unmanaged.passUnretained(reply).toOpaque())
        if code == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
        try KafkaError.check(code, "commit")
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        while reply.error == nil {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw KafkaError(operation: "commit", code: .timedOut, message: "no answer from the group coordinator within \(timeoutMs) ms")
            }
            let milliseconds = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            if let event = rd_kafka_queue_poll(replies, milliseconds) {
                if rd_kafka_event_type(event) == RD_KAFKA_EVENT_OFFSET_COMMIT {
                    reply.record(rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event))
                }
                rd_kafka_event_destroy(event)
            }
        }
        if let error = reply.error, error != RD_KAFKA_RESP_ERR_NO_ERROR, error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(operation: "commit", code: KafkaErrorCode(error))
        }
    }

    /// Moves the fetch position of assigned partitions (to an offset, or -2 for the beginning).
    /// Call on the poll thread: librdkafka 2.0.2 must not seek concurrently with batch consume.
    /// Messages already fetched for those partitions are dropped.
    public func seek(_ offsets: [TopicPartitionOffset], timeoutMs: Int = 10_000) throws(KafkaError) {
        if offsets.isEmpty { return }
        let list = NativePartitionList(offsets)
        try KafkaError.check(rd_kafka_seek_partitions(handle, list.pointer, Int32(timeoutMs)), "seek")
        if let error = list.firstError("seek") { throw error }
    }

    /// Per partition, the earliest offset whose timestamp is at or after `timestampMs` (Kafka's
    /// offsets-for-times), or -1 when the broker names none (no such record, or a broker that does
    /// not look offsets up by time, as librdkafka's mock cluster).
    public func offsets(forTimestampMs timestampMs: Int64, of partitions: [TopicPartition], timeoutMs: Int = 10_000) throws(KafkaError)
        -> [TopicPartitionOffset]
    {
        let list = NativePartitionList(partitions.map { TopicPartitionOffset($0.topic, $0.partition, timestampMs) })
        try KafkaError.check(rd_kafka_offsets_for_times(handle, list.pointer, Int32(timeoutMs)), "look up offsets by time")
        if let error = list.firstError("look up offsets by time") { throw error }
        return list.offsets
    }

    /// The group's committed offsets for `partitions`, asking the coordinator.
    public func committed(_ partitions: [TopicPartition], timeoutMs: Int = 10_000) throws(KafkaError)
        -> [TopicPartitionOffset]
    {
        let list = NativePartitionList(partitions)
        try KafkaError.check(rd_kafka_committed(handle, list.pointer, Int32(timeoutMs)), "read committed offsets")
        return list.offsets
    }

    /// The partitions this consumer currently owns.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        try KafkaError.check(rd_kafka_assignment(handle, &list), "read assignment")
        guard let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return NativePartitionList.partitions(of: list)
    }

    /// Stops fetching `partitions` (memory stays bounded while downstream catches up).
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = NativePartitionList(partitions)
        try KafkaError.check(rd_kafka_pause_partitions(handle, list.pointer), "pause")
        if let error = list.firstError("pause") { throw error }
    }

    /// Resumes fetching `partitions` where they stopped.
    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = NativePartitionList(partitions)
        try KafkaError.check(rd_kafka_resume_partitions(handle, list.pointer), "resume")
        if let error = list.firstError("resume") { throw error }
    }

    /// Low and high watermarks of a partition, from the broker (for lag).
    public func watermarks(_ topic: String, _ partition: Int32, timeoutMs: Int = 5_000) throws(KafkaError)
        -> (low: Int64, high: Int64)
    {
        var low: Int64 = 0
        var high: Int64 = 0
        try KafkaError.check(
            rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, Int32(timeoutMs)),
            "query watermarks of \(topic)[\(partition)]")
        return (low, high)
    }

    /// How many partitions `topic` has, from the brokers' metadata. Throws `unknownTopicOrPartition`
    /// when the topic does not exist (nothing is created).
    public func partitionCount(_ topic: String, timeoutMs: Int = 10_000) throws(KafkaError) -> Int {
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError(operation: "metadata of \(topic)", code: .invalidState, message: "cannot create a topic handle")
        }
        defer { rd_kafka_topic_destroy(topicHandle) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        try KafkaError.check(rd_kafka_metadata(handle, 0, topicHandle, &metadata, Int32(timeoutMs)), "metadata of \(topic)")
        defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
        guard let metadata, metadata.pointee.topic_cnt > 0 else {
            throw KafkaError(operation: "metadata of \(topic)", code: .unknownTopicOrPartition, message: "no such topic")
        }
        let entry = metadata.pointee.topics[0]
        if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(operation: "metadata of \(topic)", code: KafkaErrorCode(entry.err), message: String(cString: rd_kafka_err2str(entry.err)))
        }
        return Int(entry.partition_cnt)
    }

    /// The watermarks librdkafka last saw in fetch responses, without asking the broker (cheap
    /// enough for a lag gauge); nil before the first fetch of the partition.
    public func cachedWatermarks(_ topic: String, _ partition: Int32) -> (low: Int64, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let code = rd_kafka_get_watermark_offsets(handle, topic, partition, &low, &high)
        guard code == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return (low, high)
    }

    /// The group id, generation and member id, for `KafkaProducer.sendOffsetsToTransaction`.
    public func groupMetadata() -> ConsumerGroupMetadata {
        ConsumerGroupMetadata(rd_kafka_consumer_group_metadata(handle))
    }

    /// The member id the coordinator gave this consumer (empty before the first join).
    public var memberID: String {
        guard let id = rd_kafka_memberid(handle) else { return "" }
        defer { rd_kafka_mem_free(handle, id) }
        return String(cString: id)
    }

    /// Leaves the group at once (revoke handlers run first, so the owner can commit) and stops
    /// fetching. Call from the poll thread; further polls return nothing.
    public func close() throws(KafkaError) {
        guard !closed else { return }
        closed = true
        while !context.pending.isEmpty { context.complete(context.pending.removeFirst()) }
        context.closing = true
        try KafkaError.check(rd_kafka_consumer_close(handle), "close consumer")
    }

    /// Leaves the group and closes, waiting at most `timeoutMs` (a stop must fit the pod's grace
    /// period even with the coordinator unreachable). Returns false when it gave up: the client
    /// is then destroyed without waiting for the group, which reassigns the partitions once this
    /// member's session times out.
    public func close(timeoutMs: Int) throws(KafkaError) -> Bool {
        guard !closed else { return true }
        closed = true
        while !context.pending.isEmpty { context.complete(context.pending.removeFirst()) }
        context.closing = true
        let closeQueue = rd_kafka_queue_new(handle)!
        defer { rd_kafka_queue_destroy(closeQueue) }
        try KafkaError.check(rd_kafka_consumer_close_queue(handle, closeQueue), "close consumer")
        let deadline = monotonicMilliseconds() + Int64(max(timeoutMs, 0))
        while rd_kafka_consumer_closed(handle) == 0 {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 {
                skipsCloseOnDestroy = true
                return false
            }
            // The close's own rebalance comes as an event here (not through the callback): give the
            // partitions up at once. Any other event is only released.
            guard let event = rd_kafka_queue_poll(closeQueue, Int32(min(left, 100))) else { continue }
            if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE {
                releaseAssignment(rd_kafka_event_topic_partition_list(event))
            }
            rd_kafka_event_destroy(event)
        }
        return true
    }

    /// Gives up `partitions` (cooperative) or the whole assignment (eager) while closing.
    private func releaseAssignment(_ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        if String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE" {
            if let partitions, let error = rd_kafka_incremental_unassign(handle, partitions) { rd_kafka_error_destroy(error) }
        } else {
            _ = rd_kafka_assign(handle, nil)
        }
    }
}

/// A consumed message the caller owns (from `poll(retainingInto:)`): valid until `release()`,
/// which must be called exactly once.
public struct RetainedMessage {
    @usableFromInline let pointer: UnsafeMutablePointer<rd_kafka_message_t>
    init(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) { self.pointer = pointer }
    /// The borrowed view: key, value, headers, offset.
    @inlinable public var message: KafkaMessage { KafkaMessage(pointer) }
    /// Frees the message (and librdkafka's fetch buffer once no message refers to it).
    public func release() { rd_kafka_message_destroy(pointer) }
}

/// A batch of consumed messages, valid inside the `poll` body only.
public struct KafkaMessageBatch: RandomAccessCollection {
    let base: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>
    public let count: Int
    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public subscript(position: Int) -> KafkaMessage { KafkaMessage(base[position]!) }
}

/// Group metadata handed from a consumer to a transactional producer.
/// Unchecked: an immutable librdkafka object, freed once in `deinit`.
public final class ConsumerGroupMetadata: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { rd_kafka_consumer_group_metadata_destroy(pointer) }
}
