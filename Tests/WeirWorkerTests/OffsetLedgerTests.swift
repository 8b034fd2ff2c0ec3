import Testing
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// The offset ledger without a broker: the commit point is the offset after the longest answered
/// prefix, whatever order answers arrive in; forgotten partitions ignore late reports.
@Suite(.timeLimit(.minutes(1))) struct OffsetLedgerTests {
    let partition = TopicPartition("events", 3)

    /// Tracks `offsets` of `partition` and returns their delivery contexts.
    private func track(_ ledger: OffsetLedger, _ partition: TopicPartition, _ offsets: [Int64]) -> [UInt] {
        let track = ledger.track(for: partition)
        return offsets.map { ledger.begin(track, offset: $0, timestampMs: 1_000 + $0) }
    }

    private func point(_ ledger: OffsetLedger, _ partition: TopicPartition) -> Int64? {
        ledger.commitPoints(onlyMoved: false).first { $0.topicPartition == partition }?.offset
    }

    @Test func theCommitPointIsTheOffsetAfterTheLongestAnsweredPrefix() {
        let ledger = OffsetLedger()
        let contexts = track(ledger, partition, [10, 11, 12, 13, 14])
        #expect(ledger.inFlight == 5)
        #expect(point(ledger, partition) == nil, "nothing answered: no commit point")
        #expect(ledger.answer(contexts[2]) == 1_012)
        #expect(point(ledger, partition) == nil, "12 answered before 10: still no prefix")
        #expect(ledger.answer(contexts[0]) == 1_010)
        #expect(point(ledger, partition) == 11)
        #expect(ledger.answer(contexts[1]) == 1_011)
        #expect(point(ledger, partition) == 13, "10-12 answered: the prefix jumps past the earlier answer")
        #expect(ledger.answer(contexts[4]) == 1_014)
        #expect(point(ledger, partition) == 13)
        #expect(ledger.answer(contexts[3]) == 1_013)
        #expect(point(ledger, partition) == 15)
        #expect(ledger.inFlight == 0)
    }

    @Test func aDuplicateReportAnswersNothing() {
        let ledger = OffsetLedger()
        let contexts = track(ledger, partition, [0, 1])
        #expect(ledger.answer(contexts[1]) != nil)
        #expect(ledger.answer(contexts[1]) == nil, "second report of an answered event")
        #expect(ledger.inFlight == 1)
        #expect(ledger.answer(contexts[0]) != nil)
        #expect(ledger.answer(contexts[0]) == nil, "report of an event already past the commit point")
        #expect(ledger.inFlight == 0)
        #expect(point(ledger, partition) == 2)
    }

    /// Offsets with gaps (a compacted topic, transaction markers): the point follows the offsets.
    @Test func gapsInOffsetsMoveThePointPastTheLastAnswered() {
        let ledger = OffsetLedger()
        let contexts = track(ledger, partition, [0, 5, 9, 40])
        for context in contexts.prefix(3) { _ = ledger.answer(context) }
        #expect(point(ledger, partition) == 10)
        _ = ledger.answer(contexts[3])
        #expect(point(ledger, partition) == 41)
    }

    /// The ring of unanswered events grows while its head has wrapped; answers in a seeded random
    /// order still give the exact prefix after each one.
    @Test func growthWhileWrappedKeepsEveryEvent() {
        let seed: UInt64 = 0x5EED_0001
        var random = TestRandom(state: seed)
        let ledger = OffsetLedger()
        let track = ledger.track(for: partition)
        var contexts: [Int64: UInt] = [:]
        var next: Int64 = 0
        // Fill the initial 64 slots, answer 40 in order so the head moves, then overflow the ring.
        for _ in 0..<64 { contexts[next] = ledger.begin(track, offset: next, timestampMs: next); next += 1 }
        for offset in Int64(0)..<40 { #expect(ledger.answer(contexts.removeValue(forKey: offset)!) == offset) }
        for _ in 0..<300 { contexts[next] = ledger.begin(track, offset: next, timestampMs: next); next += 1 }
        #expect(ledger.inFlight == 324)
        var unanswered = Set(contexts.keys)
        var order = Array(contexts.keys)
        for index in order.indices.reversed() { order.swapAt(index, random.int(0..<(index + 1))) }
        for offset in order {
            #expect(ledger.answer(contexts[offset]!) == offset, "seed \(seed)")
            unanswered.remove(offset)
            let expected = unanswered.min() ?? next
            #expect(point(ledger, partition) == expected, "after answering \(offset), seed \(seed)")
        }
        #expect(ledger.inFlight == 0)
    }

    @Test func onlyMovedPointsAreSentAsynchronouslyAndARefusedCommitReopens() {
        let ledger = OffsetLedger()
        let other = TopicPartition("events", 4)
        let mine = track(ledger, partition, [0, 1])
        let theirs = track(ledger, other, [7])
        _ = ledger.answer(mine[0])
        _ = ledger.answer(theirs[0])
        #expect(Set(ledger.commitPoints(onlyMoved: true).map(\.offset)) == [1, 8])
        ledger.markCommitted(ledger.commitPoints(onlyMoved: true))
        #expect(ledger.commitPoints(onlyMoved: true).isEmpty)
        #expect(!ledger.hasUncommitted)
        #expect(ledger.commitPoints(onlyMoved: false).count == 2, "synchronous commits send every point again")
        _ = ledger.answer(mine[1])
        let moved = ledger.commitPoints(onlyMoved: true)
        #expect(moved.map(\.offset) == [2])
        ledger.markCommitted(moved)
        // The coordinator refuses the older commit of `other` (8) and the newer one of `partition` (2).
        #expect(ledger.reopen([TopicPartitionOffset("events", 4, 8), TopicPartitionOffset("events", 3, 1)]) == 1,
                "a refusal of an offset older than the last sent one reopens nothing")
        #expect(ledger.commitPoints(onlyMoved: true).map(\.offset) == [8])
        #expect(ledger.commitPoints(onlyMoved: false, in: [partition]).map(\.offset) == [2])
    }

    /// Revoked or lost partitions leave the ledger: their unanswered events stop counting, their
    /// late reports answer nothing, and a new assignment of the same partition is a new track.
    @Test func aReportForARemovedTrackIsIgnored() {
        let ledger = OffsetLedger()
        let other = TopicPartition("events", 4)
        let old = track(ledger, partition, [100, 101, 102])
        let kept = track(ledger, other, [5])
        #expect(ledger.answer(old[0]) != nil)
        ledger.remove([partition])
        #expect(ledger.inFlight == 1, "only the kept partition's event is in flight")
        #expect(ledger.answer(old[1]) == nil)
        #expect(!ledger.owns(old[2]))
        #expect(ledger.commitPoints(onlyMoved: false).allSatisfy { $0.topicPartition != partition },
                "a lost partition is never committed")
        let again = track(ledger, partition, [101, 102])
        #expect(again[0] != old[1], "a new assignment gets a new track index")
        #expect(ledger.answer(old[1]) == nil, "the old assignment's report does not touch the new one")
        #expect(ledger.inFlight == 3)
        #expect(ledger.answer(again[0]) == 1_101)
        #expect(point(ledger, partition) == 102)
        #expect(ledger.answer(kept[0]) == 1_005)
        ledger.removeAll()
        #expect(ledger.inFlight == 0)
        #expect(ledger.commitPoints(onlyMoved: false).isEmpty)
    }

    @Test func deliveryContextsRoundTripAtTheirLimits() {
        for (track, sequence) in [(UInt64(1), Int64(0)), (0xFF_FFFF, 0xFF_FFFF_FFFF), (0x12_3456, 0x12_3456_789A)] {
            let context = deliveryContext(track: track, sequence: sequence)
            #expect(context != 0)
            let unpacked = unpackDeliveryContext(context)
            #expect(unpacked.track == track)
            #expect(unpacked.sequenceLow == UInt64(sequence))
        }
    }
}
