import CRdKafka

/// How a message's timestamp was set.
public enum TimestampKind: Sendable {
    case createTime, logAppendTime
}

/// A consumed message, borrowed from librdkafka: its key, value and headers point into librdkafka's
/// buffers and are valid only inside the `poll` body that handed it out. Use `record()` to keep a copy.
public struct KafkaMessage {
    @usableFromInline let pointer: UnsafeMutablePointer<rd_kafka_message_t>

    @usableFromInline init(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) { self.pointer = pointer }

    @inlinable public var partition: Int32 { pointer.pointee.partition }
    @inlinable public var offset: Int64 { pointer.pointee.offset }

    /// The topic name (topic names up to 15 bytes stay inline: no allocation).
    public var topic: String { String(cString: rd_kafka_topic_name(pointer.pointee.rkt)) }

    /// The topic as librdkafka's interned C string, stable for the consumer's life; compare by address.
    public var topicNamePointer: UnsafePointer<CChar> { rd_kafka_topic_name(pointer.pointee.rkt) }

    /// The key bytes, or nil for a null key.
    @inlinable public var key: UnsafeRawBufferPointer? {
        guard let key = pointer.pointee.key else { return nil }
        return UnsafeRawBufferPointer(start: key, count: pointer.pointee.key_len)
    }

    /// The value bytes, or nil for a tombstone (null value). An empty value is an empty buffer.
    @inlinable public var value: UnsafeRawBufferPointer? {
        guard let payload = pointer.pointee.payload else { return nil }
        return UnsafeRawBufferPointer(start: payload, count: pointer.pointee.len)
    }

    /// Set on a message that stands for records librdkafka could not read (only with
    /// `ConsumerConfiguration.deliversRecordErrors`): its key, value and headers are not a record's.
    @inlinable public var error: KafkaErrorCode? {
        pointer.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaErrorCode(rawValue: pointer.pointee.err.rawValue)
    }

    /// librdkafka's description of `error`.
    public var errorDescription: String { String(cString: rd_kafka_message_errstr(pointer)) }

    /// A null value: a delete marker on compacted topics, never an event to decode.
    @inlinable public var isTombstone: Bool { pointer.pointee.payload == nil }

    /// Milliseconds since the epoch, and how they were set; nil when the broker gave none.
    public var timestamp: (milliseconds: Int64, kind: TimestampKind)? {
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(pointer, &type)
        switch type {
        case RD_KAFKA_TIMESTAMP_CREATE_TIME: return (milliseconds, .createTime)
        case RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME: return (milliseconds, .logAppendTime)
        default: return nil
        }
    }

    /// The message headers, in order (parsed by librdkafka on first access).
    public var headers: KafkaMessageHeaders {
        var handle: OpaquePointer?
        guard rd_kafka_message_headers(pointer, &handle) == RD_KAFKA_RESP_ERR_NO_ERROR, let handle else {
            return KafkaMessageHeaders(handle: nil)
        }
        return KafkaMessageHeaders(handle: handle)
    }

    /// An owned copy, safe to keep and send across threads.
    public func record() -> ConsumedRecord {
        ConsumedRecord(
            topic: topic, partition: partition, offset: offset,
            key: key.map { Array($0) }, value: value.map { Array($0) },
            headers: headers.map { ($0.name, $0.value.map { Array($0) }) },
            timestampMilliseconds: timestamp?.milliseconds)
    }
}

/// One header of a consumed message; `value` is nil for a null header value.
public struct KafkaHeaderView {
    public let name: String
    public let value: UnsafeRawBufferPointer?
    /// The raw name as librdkafka keeps it, valid like the message.
    public let namePointer: UnsafePointer<CChar>
}

/// The headers of a consumed message, borrowed like the message itself.
public struct KafkaMessageHeaders: RandomAccessCollection {
    let handle: OpaquePointer?

    public var startIndex: Int { 0 }
    public var endIndex: Int { handle.map { Int(rd_kafka_header_cnt($0)) } ?? 0 }

    public subscript(position: Int) -> KafkaHeaderView {
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        rd_kafka_header_get_all(handle, position, &name, &value, &size)
        return KafkaHeaderView(
            name: String(cString: name!), value: value.map { UnsafeRawBufferPointer(start: $0, count: size) },
            namePointer: name!)
    }

    /// The last header called `name`, or nil if there is none (a null-valued header gives `.some(nil)`).
    public func last(named name: String) -> UnsafeRawBufferPointer?? {
        guard let handle else { return nil }
        var value: UnsafeRawPointer?
        var size = 0
        guard rd_kafka_header_get_last(handle, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return .some(value.map { UnsafeRawBufferPointer(start: $0, count: size) })
    }
}

/// An owned copy of a consumed message.
public struct ConsumedRecord: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [Header]
    public var timestampMilliseconds: Int64?

    public struct Header: Sendable, Hashable {
        public var name: String
        public var value: [UInt8]?
        public init(name: String, value: [UInt8]?) { self.name = name; self.value = value }
    }

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?,
                headers: [(String, [UInt8]?)], timestampMilliseconds: Int64?) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers.map { Header(name: $0.0, value: $0.1) }
        self.timestampMilliseconds = timestampMilliseconds
    }

    public var isTombstone: Bool { value == nil }
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    public var valueString: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// Headers for a message to produce. Owns a native header list until `send` hands it to librdkafka;
/// if it is never sent, it is freed.
public struct OutgoingHeaders: ~Copyable {
    private(set) var handle: OpaquePointer?

    /// A new list's room: an answer adds about a dozen headers of its own, and a list that grows
    /// reallocates.
    public static let roomForAnswerHeaders = 16

    public init(capacity: Int = 4) {
        handle = rd_kafka_headers_new(max(capacity, 1))
    }

    /// A copy of every header of a consumed message, in order (one native copy, no per-header work).
    public init(copying message: KafkaMessage) {
        var source: OpaquePointer?
        if rd_kafka_message_headers(message.pointer, &source) == RD_KAFKA_RESP_ERR_NO_ERROR, let source {
            handle = rd_kafka_headers_copy(source)
        } else {
            handle = rd_kafka_headers_new(Self.roomForAnswerHeaders)
        }
    }

    /// A list with room for `room` more headers, holding a copy of each header of a consumed message
    /// that `excluding` does not pick, in order. Sized once: a list that grows reallocates
    /// (librdkafka doubles it from the input's count), which costs more than copying the few
    /// headers an input carries.
    public init(copying message: KafkaMessage, room: Int, excluding: (UnsafePointer<CChar>) -> Bool) {
        var source: OpaquePointer?
        guard rd_kafka_message_headers(message.pointer, &source) == RD_KAFKA_RESP_ERR_NO_ERROR, let source else {
            handle = rd_kafka_headers_new(max(room, 1))
            return
        }
        let handle = rd_kafka_headers_new(Int(rd_kafka_header_cnt(source)) + max(room, 1))
        Self.forEachHeader(in: source) { name, value in
            if !excluding(name) { Self.add(to: handle, cName: name, value: value) }
        }
        self.handle = handle
    }

    deinit {
        if let handle { rd_kafka_headers_destroy(handle) }
    }

    /// The number of headers.
    public var count: Int { handle.map { Int(rd_kafka_header_cnt($0)) } ?? 0 }

    /// Appends a header; a nil value is a null header.
    public mutating func append(name: String, value: UnsafeRawBufferPointer?) {
        var name = name
        name.withUTF8 { nameBytes in
            _ = rd_kafka_header_add(handle, nameBytes.baseAddress, nameBytes.count,
                                    value?.baseAddress, value?.count ?? 0)
        }
    }

    /// Appends a header with a UTF-8 string value.
    public mutating func append(name: String, value: String) {
        var value = value
        value.withUTF8 { append(name: name, value: UnsafeRawBufferPointer($0)) }
    }

    /// Appends a header whose name is a C string (e.g. a consumed header's `namePointer`).
    public mutating func append(cName: UnsafePointer<CChar>, value: UnsafeRawBufferPointer?) {
        Self.add(to: handle, cName: cName, value: value)
    }

    /// Adds a header to the native list `list`; a nil value is a null header.
    private static func add(to list: OpaquePointer?, cName: UnsafePointer<CChar>, value: UnsafeRawBufferPointer?) {
        _ = rd_kafka_header_add(list, cName, -1, value?.baseAddress, value?.count ?? 0)
    }

    /// Removes every header whose (C string) name `shouldRemove` picks. Nothing is allocated
    /// unless a header is removed.
    public mutating func removeAll(where shouldRemove: (UnsafePointer<CChar>) -> Bool) {
        guard let handle else { return }
        var doomed = [String]()
        forEach { name, _ in if shouldRemove(name) { doomed.append(String(cString: name)) } }
        // Removed by a name of our own: the list's name pointers die with their headers.
        for doomedName in doomed { _ = rd_kafka_header_remove(handle, doomedName) }
    }

    /// The headers' names and values, in order (a copy: for tests and slow paths).
    public var list: [(name: String, value: [UInt8]?)] {
        var result = [(name: String, value: [UInt8]?)]()
        forEach { name, value in result.append((String(cString: name), value.map { Array($0) })) }
        return result
    }

    /// Each header's name and value (nil: a null header), in order; valid during the call only.
    private func forEach(_ body: (UnsafePointer<CChar>, UnsafeRawBufferPointer?) -> Void) {
        guard let handle else { return }
        Self.forEachHeader(in: handle, body)
    }

    /// Each header of the native list `list`, as `forEach` gives them.
    private static func forEachHeader(in list: OpaquePointer, _ body: (UnsafePointer<CChar>, UnsafeRawBufferPointer?) -> Void) {
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        var index = 0
        while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            if let name { body(name, value.map { UnsafeRawBufferPointer(start: $0, count: size) }) }
            index += 1
        }
    }

    /// Copies every header of a consumed message, in order.
    public mutating func appendAll(from message: KafkaMessage) {
        let source = message.headers
        guard let sourceHandle = source.handle else { return }
        let handle = self.handle
        Self.forEachHeader(in: sourceHandle) { name, value in Self.add(to: handle, cName: name, value: value) }
    }

    /// Gives the native list away (to `rd_kafka_produceva`, which owns it on success).
    consuming func take() -> OpaquePointer? {
        let taken = handle
        discard self
        return taken
    }
}
