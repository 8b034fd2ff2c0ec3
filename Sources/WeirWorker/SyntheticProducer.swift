import Foundation
import Synchronization
import WeirCodec
import WeirKafka

/// Publishes synthetic events (`SyntheticEvents`) at a steady rate on its own thread: the demo's
/// and the benchmarks' stand-in for a producer service. Every `badEvery`-th event is a bad one,
/// cycling through the dead-letter codes.
public final class SyntheticProducer: Sendable {
    private let producer: KafkaProducer
    private let stopping = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    /// Events handed to the producer so far.
    public let sent = Atomic<Int>(0)
    /// Events the client refused (too large for the broker, say).
    public let failed = Atomic<Int>(0)
    /// Bad events among them.
    public let sentBad = Atomic<Int>(0)
    /// Poison records among them (`SyntheticEvents.poisonKinds`).
    public let sentPoison = Atomic<Int>(0)

    /// Starts producing to `topic`. `rate` events per second (0: as fast as the client takes them);
    /// `limit` stops after that many (nil: until `stop()`); `lingerMs` is the client's batching delay.
    /// Every `poisonEvery`-th event (0: none) is a poison record, cycling through `SyntheticEvents.poisonKinds`.
    /// `avroSchemaID`: write Avro events framed with that registry id instead of JSON.
    /// `outcomes`: publish each good event's observed outcome (`{"id":..,"label":..}`, keyed like
    /// the event) to that topic `outcomeDelayMs` after the event.
    public init(brokers: String, topic: String, rate: Int, limit: Int? = nil, badEvery: Int = 0, poisonEvery: Int = 0,
                maxBytes: Int = 1 << 20, lingerMs: Int = 5, avroSchemaID: UInt32? = nil, outcomes: String? = nil,
                outcomeDelayMs: Int = 2_000) throws {
        var configuration = ProducerConfiguration(bootstrapServers: brokers)
        configuration.clientID = "weir-demo-producer"
        configuration.lingerMs = lingerMs
        producer = try KafkaProducer(configuration: configuration, onDelivery: { _ in })
        let target = try producer.topic(topic)
        let outcomeTarget = try outcomes.map { try producer.topic($0) }
        let thread = Thread { [self] in
            run(topic: target, rate: rate, limit: limit, badEvery: badEvery, poisonEvery: poisonEvery, maxBytes: maxBytes,
                avroSchemaID: avroSchemaID, outcomes: outcomeTarget.map { ($0, UInt64(max(outcomeDelayMs, 0)) * 1_000_000) })
        }
        thread.name = "weir-synthetic-producer"
        thread.start()
    }

    /// Outcomes handed to the producer so far.
    public let sentOutcomes = Atomic<Int>(0)

    private func run(topic: ProducerTopic, rate: Int, limit: Int?, badEvery: Int, poisonEvery: Int, maxBytes: Int, avroSchemaID: UInt32?,
                     outcomes: (topic: ProducerTopic, delayNanoseconds: UInt64)?) {
        defer { done.store(true, ordering: .releasing) }
        let started = DispatchTime.now().uptimeNanoseconds
        var index = 0
        // Events whose outcome is still to come, in the order they are due.
        var owed = [(due: UInt64, index: Int)]()
        var owedNext = 0
        func payOutcomes(upTo now: UInt64) {
            guard let outcomes else { return }
            while owedNext < owed.count, owed[owedNext].due <= now {
                let event = owed[owedNext].index
                let value = Array("{\"id\":\"evt-\(event)\",\"label\":\(SyntheticEvents.outcome(event))}".utf8)
                if (try? producer.send(to: outcomes.topic, key: SyntheticEvents.key(event), value: value)) != nil {
                    sentOutcomes.add(1, ordering: .relaxed)
                }
                owedNext += 1
            }
            if owedNext > 4_096 {
                owed.removeFirst(owedNext)
                owedNext = 0
            }
        }
        defer { payOutcomes(upTo: .max) }
        while !stopping.load(ordering: .relaxed) {
            payOutcomes(upTo: DispatchTime.now().uptimeNanoseconds)
            if let limit, index >= limit { break }
            if rate > 0 {
                // Pace by the clock: event `index` is due at started + index / rate seconds.
                let due = started + UInt64(index) * 1_000_000_000 / UInt64(rate)
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now + 200_000 {
                    usleep(UInt32(min((due - now) / 1000, 100_000)))
                    continue
                }
            }
            // Halfway between bad events, so a stream can carry both.
            if poisonEvery > 0 && index % poisonEvery == poisonEvery / 2 {
                let kind = SyntheticEvents.poisonKinds[(index / poisonEvery) % SyntheticEvents.poisonKinds.count]
                var record = SyntheticEvents.poison(index, kind: kind)
                // Avro events carry only the poison that is not JSON text: timestamps, a large key.
                if let avroSchemaID { record.value = SyntheticEvents.avroEvent(index, schemaID: avroSchemaID) }
                do {
                    try producer.send(to: topic, key: record.key, value: record.value, timestampMilliseconds: record.timestampMs)
                    sentPoison.add(1, ordering: .relaxed)
                } catch {
                    failed.add(1, ordering: .relaxed)
                }
                index += 1
                sent.store(index, ordering: .relaxed)
                continue
            }
            let isBad = badEvery > 0 && index % badEvery == badEvery - 1
            let value: [UInt8]
            if isBad, let avroSchemaID {
                let kind = SyntheticEvents.avroBadKinds[(index / badEvery) % SyntheticEvents.avroBadKinds.count]
                value = SyntheticEvents.badAvroEvent(index, kind: kind, schemaID: avroSchemaID, maxBytes: maxBytes)
                sentBad.add(1, ordering: .relaxed)
            } else if isBad {
                let kind = SyntheticEvents.badKinds[(index / badEvery) % SyntheticEvents.badKinds.count]
                value = SyntheticEvents.badEvent(index, kind: kind, maxBytes: maxBytes)
                sentBad.add(1, ordering: .relaxed)
            } else if let avroSchemaID {
                value = SyntheticEvents.avroEvent(index, schemaID: avroSchemaID)
            } else {
                value = SyntheticEvents.event(index)
            }
            do {
                try producer.send(to: topic, key: SyntheticEvents.key(index), value: value)
                if let outcomes, !isBad { owed.append((DispatchTime.now().uptimeNanoseconds + outcomes.delayNanoseconds, index)) }
            } catch {
                failed.add(1, ordering: .relaxed)
            }
            index += 1
            sent.store(index, ordering: .relaxed)
        }
        payOutcomes(upTo: .max)
        try? producer.flush(timeoutMs: 10_000)
    }

    /// Stops producing and waits (up to 10 s) for queued events to be delivered.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        for _ in 0..<1000 where !done.load(ordering: .acquiring) { usleep(10_000) }
    }

    /// Whether the thread has finished (limit reached or stopped).
    public var isFinished: Bool { done.load(ordering: .acquiring) }
}
