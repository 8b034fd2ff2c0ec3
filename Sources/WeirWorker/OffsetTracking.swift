import WeirKafka

/// The events of one assigned partition that are consumed but not yet answered, in offset order.
/// The commit point is the offset after the longest answered prefix: everything below it has its
/// prediction or dead letter delivered, whatever order deliveries arrive in.
final class PartitionTrack {
    let partition: TopicPartition
    /// Identifies this assignment in delivery contexts; never reused, so a late report of a
    /// revoked partition cannot touch a newer assignment of it.
    let index: UInt64
    /// The topic as a JSON string, written into every prediction record.
    let topicJSON: [UInt8]
    @exclusivity(unchecked) private var offsets: [Int64]
    @exclusivity(unchecked) private var timestamps: [Int64]
    @exclusivity(unchecked) private var answered: [Bool]
    @exclusivity(unchecked) private var head = 0
    @exclusivity(unchecked) private(set) var count = 0
    /// Sequence number of the entry at `head`; sequence numbers grow by one per tracked event.
    @exclusivity(unchecked) private var headSequence: Int64 = 0
    /// The next offset to commit (after the answered prefix); nil before the first answer.
    @exclusivity(unchecked) private(set) var committable: Int64?
    /// The last offset committed (or sent for commit).
    var committed: Int64?
    /// The offset after the newest consumed event, for lag.
    @exclusivity(unchecked) private(set) var consumedEnd: Int64?

    init(partition: TopicPartition, index: UInt64) {
        self.partition = partition
        self.index = index
        var writer = [UInt8]()
        writer.append(UInt8(ascii: "\""))
        for byte in partition.topic.utf8 {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { writer.append(UInt8(ascii: "\\")) }
            writer.append(byte)
        }
        writer.append(UInt8(ascii: "\""))
        topicJSON = writer
        offsets = Array(repeating: 0, count: 64)
        timestamps = Array(repeating: 0, count: 64)
        answered = Array(repeating: false, count: 64)
    }

    /// Events consumed and not answered.
    var inFlight: Int { count }

    /// Starts tracking a consumed event; returns its sequence number for `answer`.
    func track(offset: Int64, timestampMs: Int64) -> Int64 {
        if count == offsets.count { grow() }
        let slot = (head + count) & (offsets.count - 1)
        offsets[slot] = offset
        timestamps[slot] = timestampMs
        answered[slot] = false
        count += 1
        consumedEnd = offset + 1
        return headSequence + Int64(count - 1)
    }

    /// Marks an event answered (its output delivered). Returns the event's timestamp, or nil when
    /// the sequence is not in flight (a duplicate report).
    func answer(_ sequence: Int64) -> Int64? {
        let distance = sequence - headSequence
        guard distance >= 0, distance < Int64(count) else { return nil }
        let slot = (head + Int(distance)) & (offsets.count - 1)
        guard !answered[slot] else { return nil }
        answered[slot] = true
        let timestamp = timestamps[slot]
        while count > 0 && answered[head] {
            committable = offsets[head] + 1
            head = (head + 1) & (offsets.count - 1)
            headSequence += 1
            count -= 1
        }
        return timestamp
    }

    /// Whether there is an answered offset not yet committed.
    var hasUncommitted: Bool {
        guard let committable else { return false }
        return committed.map { committable > $0 } ?? true
    }

    private func grow() {
        let capacity = offsets.count * 2
        var newOffsets = Array(repeating: Int64(0), count: capacity)
        var newTimestamps = Array(repeating: Int64(0), count: capacity)
        var newAnswered = Array(repeating: false, count: capacity)
        for index in 0..<count {
            let slot = (head + index) & (offsets.count - 1)
            newOffsets[index] = offsets[slot]
            newTimestamps[index] = timestamps[slot]
            newAnswered[index] = answered[slot]
        }
        offsets = newOffsets
        timestamps = newTimestamps
        answered = newAnswered
        head = 0
    }
}

/// Packs a track index and a sequence into a producer delivery context (never 0).
@inline(__always)
func deliveryContext(track: UInt64, sequence: Int64) -> UInt {
    UInt((track << 40) | (UInt64(sequence) & 0xFF_FFFF_FFFF))
}

@inline(__always)
func unpackDeliveryContext(_ context: UInt) -> (track: UInt64, sequenceLow: UInt64) {
    (UInt64(context) >> 40, UInt64(context) & 0xFF_FFFF_FFFF)
}
