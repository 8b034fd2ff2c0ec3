import CRdKafka

/// One partition of one topic.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
}

/// A partition with an offset: for commits, the offset of the *next* message to read.
public struct TopicPartitionOffset: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public init(_ topic: String, _ partition: Int32, _ offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }
    public var description: String { "\(topic)[\(partition)]@\(offset)" }

    /// librdkafka's "no offset stored/committed" marker.
    public static let invalidOffset: Int64 = -1001
}

/// Owns an `rd_kafka_topic_partition_list_t` for the length of one call.
struct NativePartitionList: ~Copyable {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    init(capacity: Int) {
        pointer = rd_kafka_topic_partition_list_new(Int32(max(capacity, 1)))
    }

    init(_ partitions: [TopicPartition]) {
        self.init(capacity: partitions.count)
        for tp in partitions { rd_kafka_topic_partition_list_add(pointer, tp.topic, tp.partition) }
    }

    init(_ offsets: [TopicPartitionOffset]) {
        self.init(capacity: offsets.count)
        for tpo in offsets {
            rd_kafka_topic_partition_list_add(pointer, tpo.topic, tpo.partition).pointee.offset = tpo.offset
        }
    }

    deinit { rd_kafka_topic_partition_list_destroy(pointer) }

    var partitions: [TopicPartition] { Self.partitions(of: pointer) }
    var offsets: [TopicPartitionOffset] { Self.offsets(of: pointer) }

    /// The first per-partition error in the list, if any.
    func firstError(_ operation: String) -> KafkaError? {
        let list = pointer.pointee
        for index in 0..<Int(list.cnt) where list.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let element = list.elems[index]
            return KafkaError(operation: "\(operation) \(String(cString: element.topic))[\(element.partition)]",
                              code: KafkaErrorCode(element.err))
        }
        return nil
    }

    static func partitions(of list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
        (0..<Int(list.pointee.cnt)).map {
            let element = list.pointee.elems[$0]
            return TopicPartition(String(cString: element.topic), element.partition)
        }
    }

    static func offsets(of list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartitionOffset] {
        (0..<Int(list.pointee.cnt)).map {
            let element = list.pointee.elems[$0]
            return TopicPartitionOffset(String(cString: element.topic), element.partition, element.offset)
        }
    }
}
