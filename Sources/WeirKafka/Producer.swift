import CRdKafka

/// A topic handle to produce to; resolving it once saves a name lookup per message.
/// Unchecked: librdkafka's topic handles are thread-safe and this one lives as long as its producer.
public struct ProducerTopic: @unchecked Sendable {
    let pointer: OpaquePointer
    public let name: String
}

/// The outcome of one produced message, borrowed from librdkafka for the handler call.
public struct DeliveryReport {
    @usableFromInline let pointer: UnsafePointer<rd_kafka_message_t>

    /// The value passed as `context` to `send`.
    @inlinable public var context: UInt { UInt(bitPattern: pointer.pointee._private) }
    /// nil when the message was written (and, with acks=all, replicated).
    @inlinable public var error: KafkaErrorCode? {
        pointer.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaErrorCode(rawValue: pointer.pointee.err.rawValue)
    }
    @inlinable public var partition: Int32 { pointer.pointee.partition }
    /// The offset the broker gave the message (-1 on error).
    @inlinable public var offset: Int64 { pointer.pointee.offset }
    public var topic: String { String(cString: rd_kafka_topic_name(pointer.pointee.rkt)) }
    /// The message as sent (key, value, headers), e.g. to send it again after a failed delivery.
    public var message: KafkaMessage { KafkaMessage(UnsafeMutablePointer(mutating: pointer)) }
}

/// A batch of delivery reports, valid inside the handler call only.
public struct DeliveryReportBatch: RandomAccessCollection {
    let base: UnsafeMutablePointer<UnsafePointer<rd_kafka_message_t>?>
    public let count: Int
    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public subscript(position: Int) -> DeliveryReport { DeliveryReport(pointer: base[position]!) }
}

/// Where delivery reports are served.
public enum DeliveryReportServing {
    /// A producer-owned thread, woken by librdkafka's queue event: the handler runs there.
    case dedicatedThread
    /// The owner's thread, inside `serveDeliveryReports`, `send` (when the queue is full) and `flush`.
    /// `wake` is raised when reports arrive: share the consumer's `signal` to serve both from one loop.
    case callerThread(wake: EventSignal)
}

/// An idempotent (by default) producer over librdkafka. `send` is safe from any thread.
/// Unchecked: librdkafka's produce calls are thread-safe; its own mutable state is in `Locked` values.
public final class KafkaProducer: @unchecked Sendable {
    let handle: OpaquePointer
    private let mainQueue: OpaquePointer
    private let onDelivery: (DeliveryReportBatch) -> Void
    private let onError: (KafkaError) -> Void
    private let wakeSignal: EventSignal
    private let ownsThread: Bool
    private var thread: OSThread?
    private let running = Locked(true)
    private let topics = Locked([String: OpaquePointer]())
    /// Raised after each round of served reports, for `send` calls waiting for queue room.
    private let roomSignal = EventSignal()
    private let reportBuffer: UnsafeMutablePointer<UnsafePointer<rd_kafka_message_t>?>
    private static let reportBufferCapacity = 1024
    private let closed = Locked(false)

    /// Creates the producer.
    /// - Parameters:
    ///   - serving: where `onDelivery` runs (see `DeliveryReportServing`).
    ///   - onDelivery: receives every message's outcome, with the `context` given to `send`.
    ///   - onError: client-level errors; `isFatal` means the producer must be recreated.
    public init(configuration: ProducerConfiguration, serving: DeliveryReportServing = .dedicatedThread,
                onDelivery: @escaping (DeliveryReportBatch) -> Void,
                onError: @escaping (KafkaError) -> Void = { _ in }) throws {
        let conf = try makeNativeConfiguration(configuration.orderedProperties())
        rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR))
        handle = try makeClient(type: RD_KAFKA_PRODUCER, conf: conf)
        mainQueue = rd_kafka_queue_get_main(handle)
        self.onDelivery = onDelivery
        self.onError = onError
        reportBuffer = .allocate(capacity: Self.reportBufferCapacity)
        switch serving {
        case .dedicatedThread:
            wakeSignal = EventSignal()
            ownsThread = true
        case .callerThread(let wake):
            wakeSignal = wake
            ownsThread = false
        }
        wakeSignal.attach(to: mainQueue)
        if ownsThread {
            // The thread holds the producer only while serving one round, never while waiting: a
            // method call on `unowned self` would hold it for the loop's whole life, so a producer
            // its owner dropped without `close()` would never be destroyed (and would keep
            // reconnecting to a broker long gone).
            thread = OSThread { [weak self, running, wakeSignal] in
                while running.withLock({ $0 }) {
                    wakeSignal.wait(timeoutMs: 1_000)
                    guard let self else { return }
                    _ = self.serveEvents(waitMs: 0)
                }
                _ = self?.serveEvents(waitMs: 0)
            }
        }
    }

    deinit {
        stopThread()
        wakeSignal.detach(from: mainQueue)
        for (_, topic) in topics.withLock({ $0 }) { rd_kafka_topic_destroy(topic) }
        rd_kafka_queue_destroy(mainQueue)
        destroyClient(handle)
        reportBuffer.deallocate()
    }

    private func stopThread() {
        guard let thread else { return }
        running.withLock { $0 = false }
        wakeSignal.raise()
        thread.join()
        self.thread = nil
    }

    /// A handle for `topic`, created once and cached.
    public func topic(_ name: String) throws(KafkaError) -> ProducerTopic {
        let existing = topics.withLock { $0[name] }
        if let existing { return ProducerTopic(pointer: existing, name: name) }
        guard let created = rd_kafka_topic_new(handle, name, nil) else {
            throw KafkaError(operation: "open topic '\(name)'", code: KafkaErrorCode(rd_kafka_last_error()))
        }
        let winner = topics.withLock { table -> OpaquePointer in
            if let raced = table[name] { return raced }
            table[name] = created
            return created
        }
        if winner != created { rd_kafka_topic_destroy(created) }
        return ProducerTopic(pointer: winner, name: name)
    }

    /// Queues one message. Key and value are copied. `partition` nil lets the partitioner pick by key.
    /// `context` comes back in the message's `DeliveryReport`. When the local queue is full this waits
    /// for deliveries to make room: a message is never dropped here.
    public func send(to topic: ProducerTopic, partition: Int32? = nil,
                     key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
                     headers: consuming OutgoingHeaders? = nil,
                     timestampMilliseconds: Int64 = 0, context: UInt = 0) throws(KafkaError) {
        try sendNative(to: topic, partition: partition, key: key, value: value, headers: Self.take(headers),
                       timestampMilliseconds: timestampMilliseconds, context: context)
    }

    private static func take(_ headers: consuming OutgoingHeaders?) -> OpaquePointer? {
        switch consume headers {
        case .some(let owned): return owned.take()
        case .none: return nil
        }
    }

    /// `send` with the native header list already taken; destroys it if the message is refused.
    private func sendNative(to topic: ProducerTopic, partition: Int32?, key: UnsafeRawBufferPointer?,
                            value: UnsafeRawBufferPointer?, headers nativeHeaders: OpaquePointer?,
                            timestampMilliseconds: Int64, context: UInt) throws(KafkaError) {
        while true {
            let error = withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 8) { args -> OpaquePointer? in
                var used = 0
                func add(_ type: rd_kafka_vtype_t, _ fill: (inout rd_kafka_vu_t) -> Void) {
                    var entry = rd_kafka_vu_t()
                    entry.vtype = type
                    fill(&entry)
                    args[used] = entry
                    used += 1
                }
                add(RD_KAFKA_VTYPE_RKT) { $0.u.rkt = topic.pointer }
                add(RD_KAFKA_VTYPE_PARTITION) { $0.u.i32 = partition ?? RD_KAFKA_PARTITION_UA }
                add(RD_KAFKA_VTYPE_MSGFLAGS) { $0.u.i = RD_KAFKA_MSG_F_COPY }
                if let key {
                    add(RD_KAFKA_VTYPE_KEY) {
                        $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                        $0.u.mem.size = key.count
                    }
                }
                if let value {
                    add(RD_KAFKA_VTYPE_VALUE) {
                        // An empty, non-null value needs a non-null pointer or it becomes a tombstone.
                        $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress ?? UnsafeRawPointer(emptyValueAddress))
                        $0.u.mem.size = value.count
                    }
                }
                if let nativeHeaders { add(RD_KAFKA_VTYPE_HEADERS) { $0.u.headers = nativeHeaders } }
                if timestampMilliseconds != 0 { add(RD_KAFKA_VTYPE_TIMESTAMP) { $0.u.i64 = timestampMilliseconds } }
                if context != 0 { add(RD_KAFKA_VTYPE_OPAQUE) { $0.u.ptr = UnsafeMutableRawPointer(bitPattern: context) } }
                return rd_kafka_produceva(handle, args.baseAddress, used)
            }
            guard let error else { return }
            let code = KafkaErrorCode(rd_kafka_error_code(error))
            if code == .queueFull {
                rd_kafka_error_destroy(error)
                try waitForQueueRoom()
                continue
            }
            if let nativeHeaders { rd_kafka_headers_destroy(nativeHeaders) }
            throw KafkaError(operation: "produce to '\(topic.name)'", consuming: error)
        }
    }

    /// Convenience `send` for byte arrays and strings (tests, tools): copies like the pointer form.
    public func send(to topic: ProducerTopic, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?,
                     headers: consuming OutgoingHeaders? = nil, timestampMilliseconds: Int64 = 0,
                     context: UInt = 0) throws(KafkaError) {
        let nativeHeaders = Self.take(headers)
        var failure: KafkaError?
        (key ?? []).withUnsafeBytes { keyBytes in
            (value ?? []).withUnsafeBytes { valueBytes in
                do throws(KafkaError) {
                    try sendNative(to: topic, partition: partition, key: key == nil ? nil : keyBytes,
                                   value: value == nil ? nil : valueBytes, headers: nativeHeaders,
                                   timestampMilliseconds: timestampMilliseconds, context: context)
                } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    private func waitForQueueRoom() throws(KafkaError) {
        if closed.withLock({ $0 }) { throw KafkaError(operation: "produce", code: .queueFull, message: "producer is closed") }
        if let fatal = fatalError() { throw fatal }
        if ownsThread, thread?.isCurrent == false {
            roomSignal.wait(timeoutMs: 100)
        } else {
            // Caller-thread serving (or a handler that produces): serve reports here.
            _ = serveEvents(waitMs: 100)
        }
    }

    /// Serves waiting delivery reports and errors on this thread (`.callerThread` mode); returns how
    /// many delivery reports were handled. Never blocks.
    @discardableResult
    public func serveDeliveryReports() -> Int {
        serveEvents(waitMs: 0)
    }

    private func serveEvents(waitMs: Int) -> Int {
        var handled = 0
        var wait = Int32(waitMs)
        while let event = rd_kafka_queue_poll(mainQueue, wait) {
            wait = 0
            switch rd_kafka_event_type(event) {
            case RD_KAFKA_EVENT_DR:
                while true {
                    let count = rd_kafka_event_message_array(event, reportBuffer, Self.reportBufferCapacity)
                    if count == 0 { break }
                    onDelivery(DeliveryReportBatch(base: reportBuffer, count: count))
                    handled += count
                }
            case RD_KAFKA_EVENT_ERROR:
                let code = KafkaErrorCode(rd_kafka_event_error(event))
                onError(KafkaError(operation: "producer", code: code,
                                   message: String(cString: rd_kafka_event_error_string(event)),
                                   isFatal: rd_kafka_event_error_is_fatal(event) != 0))
            default:
                break
            }
            rd_kafka_event_destroy(event)
        }
        if handled > 0 { roomSignal.raise() }
        return handled
    }

    /// The fatal error that made this producer unusable, if one happened.
    public func fatalError() -> KafkaError? {
        // Called every loop turn: the text buffer lives on the stack, not the heap.
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 512) { buffer in
            buffer[0] = 0
            let code = rd_kafka_fatal_error(handle, buffer.baseAddress, buffer.count)
            guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
            return KafkaError(operation: "producer", code: KafkaErrorCode(code), message: String(cString: buffer.baseAddress!), isFatal: true)
        }
    }

    /// Messages queued or in flight plus reports not yet served.
    public var outstanding: Int { Int(rd_kafka_outq_len(handle)) }

    /// Waits until every queued message is delivered (or failed) and its report served.
    public func flush(timeoutMs: Int) throws(KafkaError) {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        if ownsThread {
            // Event mode: rd_kafka_flush waits without serving; the delivery thread serves.
            try KafkaError.check(rd_kafka_flush(handle, Int32(timeoutMs)), "flush")
            return
        }
        while outstanding > 0 {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { throw KafkaError(operation: "flush", code: .timedOut, message: "\(outstanding) messages still outstanding") }
            // A zero-timeout flush makes librdkafka send lingering batches now.
            _ = rd_kafka_flush(handle, 0)
            _ = serveEvents(waitMs: Int(min(left, 100)))
        }
    }

    /// Flushes, then stops the delivery thread. Further sends fail.
    public func close(timeoutMs: Int = 10_000) throws(KafkaError) {
        defer {
            closed.withLock { $0 = true }
            stopThread()
        }
        try flush(timeoutMs: timeoutMs)
    }

    // MARK: Transactions

    /// Registers `transactional.id` with the coordinator, fencing older producers with the same id.
    public func initTransactions(timeoutMs: Int = 30_000) throws(KafkaError) {
        try KafkaError.check(rd_kafka_init_transactions(handle, Int32(timeoutMs)), "init transactions")
    }

    public func beginTransaction() throws(KafkaError) {
        try KafkaError.check(rd_kafka_begin_transaction(handle), "begin transaction")
    }

    /// Adds consumed offsets (next offset to read) to the transaction, committed with its outputs.
    public func sendOffsetsToTransaction(_ offsets: [TopicPartitionOffset], group: ConsumerGroupMetadata,
                                         timeoutMs: Int = 30_000) throws(KafkaError) {
        let list = NativePartitionList(offsets)
        try KafkaError.check(
            rd_kafka_send_offsets_to_transaction(handle, list.pointer, group.pointer, Int32(timeoutMs)),
            "send offsets to transaction")
    }

    /// Flushes and commits the transaction: its outputs and offsets become visible together.
    public func commitTransaction(timeoutMs: Int = 30_000) throws(KafkaError) {
        try KafkaError.check(rd_kafka_commit_transaction(handle, Int32(timeoutMs)), "commit transaction")
    }

    /// Aborts the transaction: its outputs are discarded and its offsets not committed.
    public func abortTransaction(timeoutMs: Int = 30_000) throws(KafkaError) {
        try KafkaError.check(rd_kafka_abort_transaction(handle, Int32(timeoutMs)), "abort transaction")
    }
}

/// A non-null address for empty values (librdkafka treats a null pointer as a tombstone).
nonisolated(unsafe) private let emptyValueAddress = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
