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
    /// The topic's UTF-8 bytes (Avro records).
    let topicBytes: [UInt8]
    @exclusivity(unchecked) private var offsets: [Int64]
    @exclusivity(unchecked) private var timestamps: [Int64]
    /// When each event was consumed (monotonic nanoseconds), for the oldest-unanswered probe.
    @exclusivity(unchecked) private var receivedAt: [UInt64]
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
    /// The first offset this assignment consumed: where the group's committed offset stood then.
    private(set) var firstOffset: Int64?

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
        topicBytes = Array(partition.topic.utf8)
        offsets = Array(repeating: 0, count: 64)
        timestamps = Array(repeating: 0, count: 64)
        receivedAt = Array(repeating: 0, count: 64)
        answered = Array(repeating: false, count: 64)
    }

    /// Events consumed and not answered.
    var inFlight: Int { count }

    /// Starts tracking a consumed event; returns its sequence number for `answer`.
    func track(offset: Int64, timestampMs: Int64, receivedAt now: UInt64 = 0) -> Int64 {
        if count == offsets.count { grow() }
        let slot = (head + count) & (offsets.count - 1)
        offsets[slot] = offset
        timestamps[slot] = timestampMs
        receivedAt[slot] = now
        answered[slot] = false
        count += 1
        if firstOffset == nil { firstOffset = offset }
        consumedEnd = offset + 1
        return headSequence + Int64(count - 1)
    }

    /// Marks an event answered (its output delivered). Returns the event's timestamp, or nil when
    /// the sequence is not in flight (a duplicate report).
    func answer(_ sequence: Int64) -> Int64? {
        let distance = sequence &- headSequence
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

    /// The full sequence number of an in-flight event from the low 40 bits a delivery context
    /// carries: in-flight sequences lie within 2^40 of `headSequence`, so the bits name one.
    @inline(__always)
    func sequence(fromLowBits low: UInt64) -> Int64 {
        headSequence &+ Int64(bitPattern: (low &- UInt64(bitPattern: headSequence)) & 0xFF_FFFF_FFFF)
    }

    /// The offset of the in-flight event with this sequence, if it is still unanswered.
    func offset(ofSequence sequence: Int64) -> Int64? {
        let distance = sequence &- headSequence
        guard distance >= 0, distance < Int64(count) else { return nil }
        let slot = (head + Int(distance)) & (offsets.count - 1)
        return answered[slot] ? nil : offsets[slot]
    }

    /// When the oldest unanswered event was consumed (the head: every earlier one is answered).
    var oldestUnansweredSince: UInt64? { count > 0 ? receivedAt[head] : nil }

    /// Whether there is an answered offset not yet committed.
    var hasUncommitted: Bool {
        guard let committable else { return false }
        return committed.map { committable > $0 } ?? true
    }

    private func grow() {
        let capacity = offsets.count * 2
        var newOffsets = Array(repeating: Int64(0), count: capacity)
        var newTimestamps = Array(repeating: Int64(0), count: capacity)
        var newReceivedAt = Array(repeating: UInt64(0), count: capacity)
        var newAnswered = Array(repeating: false, count: capacity)
        for index in 0..<count {
            let slot = (head + index) & (offsets.count - 1)
            newOffsets[index] = offsets[slot]
            newTimestamps[index] = timestamps[slot]
            newReceivedAt[index] = receivedAt[slot]
            newAnswered[index] = answered[slot]
        }
        offsets = newOffsets
        timestamps = newTimestamps
        receivedAt = newReceivedAt
        answered = newAnswered
        head = 0
    }
}

/// Every owned partition's track: which consumed events are unanswered, and where each
/// partition's commit point stands. Poll thread only. Knows nothing of clients: the committers
/// read commit points from it and tell it what was committed, so it is tested without a broker.
final class OffsetLedger {
    @exclusivity(unchecked) private var tracks: [UInt64: PartitionTrack] = [:]
    private var byPartition: [TopicPartition: PartitionTrack] = [:]
    private var nextIndex: UInt64 = 1
    /// The last track looked up by message and by delivery report: events and reports come in runs
    /// per partition. Both are cleared whenever a track is removed, so a late report of a revoked
    /// partition finds nothing.
    @exclusivity(unchecked) private var lastTrack: PartitionTrack?
    @exclusivity(unchecked) private var lastTopicPointer: UnsafePointer<CChar>?
    @exclusivity(unchecked) private var lastAnsweredTrack: PartitionTrack?
    /// Events consumed and not answered, over every track.
    @exclusivity(unchecked) private(set) var inFlight = 0

    /// The track of `message`'s partition, created on its first event.
    func track(for message: KafkaMessage) -> PartitionTrack {
        let topicPointer = message.topicNamePointer
        if let lastTrack, lastTopicPointer == topicPointer, lastTrack.partition.partition == message.partition {
            return lastTrack
        }
        let track = track(for: TopicPartition(message.topic, message.partition))
        lastTrack = track
        lastTopicPointer = topicPointer
        return track
    }

    /// The track of `partition`, created if there is none.
    func track(for partition: TopicPartition) -> PartitionTrack {
        if let existing = byPartition[partition] { return existing }
        // Indices fit the 24 bits a delivery context holds; after 16 million assignments they wrap,
        // skipping any still in use.
        while tracks[nextIndex] != nil { nextIndex = nextIndex >= 0xFF_FFFF ? 1 : nextIndex + 1 }
        let track = PartitionTrack(partition: partition, index: nextIndex)
        nextIndex = nextIndex >= 0xFF_FFFF ? 1 : nextIndex + 1
        byPartition[partition] = track
        tracks[track.index] = track
        return track
    }

    /// Starts tracking a consumed event; returns its delivery context (never 0).
    @inline(__always)
    func begin(_ track: PartitionTrack, offset: Int64, timestampMs: Int64, receivedAt now: UInt64 = 0) -> UInt {
        inFlight += 1
        return deliveryContext(track: track.index, sequence: track.track(offset: offset, timestampMs: timestampMs, receivedAt: now))
    }

    /// When the oldest consumed, unanswered event of any partition was consumed; nil when none waits.
    var oldestUnansweredSince: UInt64? { byPartition.values.compactMap(\.oldestUnansweredSince).min() }

    /// Marks the event of `context` answered. Returns its timestamp, or nil when the context names
    /// no event in flight (a duplicate report, or a track removed since: revoked or aborted).
    @inline(__always)
    func answer(_ context: UInt) -> Int64? {
        let (index, sequence) = unpackDeliveryContext(context)
        let track: PartitionTrack
        if let last = lastAnsweredTrack, last.index == index {
            track = last
        } else {
            guard let found = tracks[index] else { return nil }
            track = found
            lastAnsweredTrack = found
        }
        guard let timestamp = track.answer(track.sequence(fromLowBits: sequence)) else { return nil }
        inFlight -= 1
        return timestamp
    }

    /// The partition and offset of the unanswered event of `context`; nil when it is answered or
    /// its partition has left this worker.
    func source(of context: UInt) -> EventSource? {
        let (index, sequence) = unpackDeliveryContext(context)
        guard let track = tracks[index], let offset = track.offset(ofSequence: track.sequence(fromLowBits: sequence)) else { return nil }
        return EventSource(partition: track.partition, offset: offset)
    }

    /// Whether `context` belongs to a track that still exists.
    func owns(_ context: UInt) -> Bool { tracks[unpackDeliveryContext(context).track] != nil }

    /// Commit points (offset after the delivered prefix) per partition: only those that moved past
    /// the last commit when `onlyMoved`, else every partition that has one; limited to `partitions`.
    func commitPoints(onlyMoved: Bool, in partitions: Set<TopicPartition>? = nil) -> [TopicPartitionOffset] {
        var offsets = [TopicPartitionOffset]()
        for track in byPartition.values {
            guard let point = track.committable else { continue }
            if onlyMoved && !track.hasUncommitted { continue }
            if let partitions, !partitions.contains(track.partition) { continue }
            offsets.append(TopicPartitionOffset(track.partition.topic, track.partition.partition, point))
        }
        return offsets
    }

    /// Records offsets as committed (or sent for commit).
    func markCommitted(_ offsets: [TopicPartitionOffset]) {
        for offset in offsets { byPartition[offset.topicPartition]?.committed = offset.offset }
    }

    /// A commit the coordinator refused: those partitions count as uncommitted again (unless a newer
    /// commit was sent since). Returns how many were reopened.
    func reopen(_ offsets: [TopicPartitionOffset]) -> Int {
        var reopened = 0
        for offset in offsets {
            guard let track = byPartition[offset.topicPartition], track.committed == offset.offset else { continue }
            track.committed = nil
            reopened += 1
        }
        return reopened
    }

    /// Forgets `partitions` (revoked or lost): their events no longer count in flight and late
    /// reports for them are ignored.
    func remove(_ partitions: some Sequence<TopicPartition>) {
        for partition in partitions {
            guard let track = byPartition.removeValue(forKey: partition) else { continue }
            inFlight -= track.inFlight
            tracks.removeValue(forKey: track.index)
        }
        lastTrack = nil
        lastAnsweredTrack = nil
    }

    /// Forgets every track (an aborted transaction: its events are read again).
    func removeAll() { remove(Array(byPartition.keys)) }

    /// Unanswered events of `partition`.
    func inFlight(of partition: TopicPartition) -> Int { byPartition[partition]?.inFlight ?? 0 }

    /// Whether some partition has an answered offset not yet committed.
    var hasUncommitted: Bool { byPartition.values.contains { $0.hasUncommitted } }

    /// The offset after `partition`'s newest consumed event, else its last commit (for lag).
    func position(of partition: TopicPartition) -> Int64? {
        byPartition[partition].flatMap { $0.consumedEnd ?? $0.committed }
    }

    /// Offsets `partition`'s current assignment has consumed, from its first to its newest: if the
    /// group takes the assignment away, at most these are answered again by the next owner (it
    /// resumes at the committed offset, which is not below where this assignment began).
    func consumedByAssignment(_ partition: TopicPartition) -> Int64 {
        guard let track = byPartition[partition], let first = track.firstOffset, let end = track.consumedEnd else { return 0 }
        return max(0, end &- first)
    }

    /// The first offset `partition`'s current assignment consumed: where the consumer started it.
    func firstOffset(of partition: TopicPartition) -> Int64? { byPartition[partition]?.firstOffset }

    /// The offset after `partition`'s newest consumed event.
    func consumedEnd(of partition: TopicPartition) -> Int64? { byPartition[partition]?.consumedEnd }
}

/// Packs a track index (24 bits, 1 or more) and a sequence (its low 40 bits) into a producer
/// delivery context, never 0. The track restores the full sequence (`sequence(fromLowBits:)`):
/// two in-flight events would alias only with a trillion events in flight at once.
@inline(__always)
func deliveryContext(track: UInt64, sequence: Int64) -> UInt {
    UInt(((track & 0xFF_FFFF) << 40) | (UInt64(truncatingIfNeeded: sequence) & 0xFF_FFFF_FFFF))
}

@inline(__always)
func unpackDeliveryContext(_ context: UInt) -> (track: UInt64, sequenceLow: UInt64) {
    (UInt64(context) >> 40, UInt64(context) & 0xFF_FFFF_FFFF)
}
