import Foundation
import Synchronization
import Testing
import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka
import WeirTestSupport
import WeirWorker

/// Every class of bad input a producer can send, each with the dead-letter code it must get, mixed
/// into a stream of good events: each bad event ends as exactly one dead letter carrying its bytes,
/// each good one as one prediction, and the worker serves throughout.
@Suite(.timeLimit(.minutes(3))) struct BadInputTests {
    /// Event 1 with the text of feature `f3`'s value replaced.
    static func withF3(_ replacement: String) -> [UInt8] {
        var text = String(decoding: SyntheticEvents.event(1), as: UTF8.self)
        let range = text.range(of: "\"f3\":")!
        let end = text[range.upperBound...].firstIndex(of: ",")!
        text.replaceSubrange(range.upperBound..<end, with: replacement)
        return Array(text.utf8)
    }

    /// Event 1 with `bytes` spliced in as the start of the `note` string.
    static func withNote(_ bytes: [UInt8]) -> [UInt8] {
        let good = SyntheticEvents.event(1)
        let marker = Array("\"note\":\"".utf8)
        let start = (0...(good.count - marker.count)).first { Array(good[$0..<($0 + marker.count)]) == marker }! + marker.count
        return Array(good[..<start]) + bytes + Array(good[start...])
    }

    /// Event 1 with an ignored field `deep` holding `levels` nested arrays.
    static func nested(_ levels: Int) -> [UInt8] {
        withNote(Array("\",\"deep\":".utf8) + Array(repeating: UInt8(ascii: "["), count: levels)
                 + Array(repeating: UInt8(ascii: "]"), count: levels) + Array(",\"n\":\"".utf8))
    }

    /// The table: a name, the value (nil: a tombstone), and the dead-letter code (nil: no output).
    static let classes: [(name: String, value: [UInt8]?, code: String?)] = {
        var garbage = SplitMix64(seed: 7)
        let good = SyntheticEvents.event(1)
        return [
            ("malformed JSON", Array("{\"id\":\"x\",\"f0\" 1}".utf8), "malformed-json"),
            ("truncated", Array(good.prefix(400)), "malformed-json"),
            ("wrong root type", Array("[1,2,3]".utf8), "malformed-json"),
            ("wrong feature type", withF3("true"), "not-a-number"),
            ("string number", withF3("\"1.5\""), "not-a-number"),
            ("NaN literal", withF3("NaN"), "malformed-json"),
            ("Infinity literal", withF3("-Infinity"), "malformed-json"),
            ("beyond float range", withF3("1e39"), "not-a-number"),
            ("missing feature", Array(String(decoding: good, as: UTF8.self).replacingOccurrences(of: "\"f7\":", with: "\"g7\":").utf8),
             "missing-feature"),
            ("null feature without default", withF3("null"), "missing-feature"),
            ("extra nesting", withF3("{\"value\":1.5}"), "not-a-number"),
            ("nesting past the 2048-level limit", nested(100_000), "malformed-json"),
            ("deep nesting within the limit", nested(2_000), nil),
            ("unterminated deep nesting", Array("{\"deep\":".utf8) + Array(repeating: UInt8(ascii: "["), count: 100_000), "malformed-json"),
            ("empty value", [], "malformed-json"),
            ("tombstone", nil, nil),
            ("binary garbage", (0..<512).map { _ in UInt8(truncatingIfNeeded: garbage.next()) }, "malformed-json"),
            ("invalid UTF-8 in a key", Array("{\"f".utf8) + [0xFF] + Array("0\":1,".utf8) + Array(good.dropFirst()), "malformed-json"),
            ("invalid UTF-8 in a string", withNote([0xC3, 0x28]), "malformed-json"),
            ("NUL escape in a key", Array("{\"f0\\u0000\":1,".utf8) + Array(good.dropFirst()), nil),
        ]
    }()

    @Test func everyClassGetsItsDeadLetterCodeAndTheWorkerKeepsServing() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var records = [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])]()
        var goodCount = 0
        for round in 0..<2 {
            for (index, entry) in Self.classes.enumerated() {
                for good in 0..<20 {
                    records.append((SyntheticEvents.key(good), SyntheticEvents.event(1000 + round * 10_000 + index * 20 + good), []))
                    goodCount += 1
                }
                records.append((Array("bad-\(round)-\(index)".utf8), entry.value, []))
            }
        }
        try produce(cluster, records)
        // A 4 MiB value: over input.max-bytes (1 MiB) and over the worker producer's 1 MB message
        // limit. The embedded broker drops a partition's whole log once it passes 5 MiB, so 10 MB
        // cannot travel through it; `aTenMegabyteValueIsTooLarge` takes 10 MB to the decoder.
        let huge = Array(SyntheticEvents.event(2).dropLast(2)) + Array(repeating: UInt8(ascii: "x"), count: 4 << 20) + Array("\"}".utf8)
        try produceLarge(cluster, key: Array("bad-huge".utf8), value: huge)

        let running = try RunningWorker(settings: testSettings(cluster), bundle: bundle)
        let total = records.count + 1
        do {
            try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= total }
        } catch {
            throw TestFailure("\(error): \(running.answered) of \(total); log \(running.log.lines.withLock { $0 })")
        }
        try running.stop()

        let metrics = running.worker.metrics
        let expectedDeadLetters = 2 * Self.classes.filter { $0.code != nil }.count + 1
        let validBadOnes = 2 * Self.classes.filter { $0.value != nil && $0.code == nil }.count
        #expect(metrics.tombstoneTotal.load(ordering: .relaxed) == 2)
        #expect(metrics.predictionTotal.load(ordering: .relaxed) == goodCount + validBadOnes)
        #expect(metrics.deadLetterTotal.load(ordering: .relaxed) == expectedDeadLetters)

        let deadLetters = try readTopic(cluster, "dead-letters")
        #expect(deadLetters.count == expectedDeadLetters)
        var byKey = [String: ConsumedRecord]()
        for record in deadLetters {
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            #expect(byKey[key] == nil, "one dead letter per bad event: \(key) twice")
            byKey[key] = record
        }
        for round in 0..<2 {
            for (index, entry) in Self.classes.enumerated() {
                let record = byKey["bad-\(round)-\(index)"]
                guard let code = entry.code else {
                    #expect(record == nil, "\(entry.name) is not a dead letter")
                    continue
                }
                #expect(record.flatMap { header($0, "weir-error") } == code, "\(entry.name): \(record.flatMap { header($0, "weir-error-message") } ?? "no dead letter")")
                #expect(record?.value ?? [] == entry.value ?? [], "\(entry.name): the dead letter carries the original bytes")
                #expect(record.flatMap { header($0, "weir-source-offset") } != nil)
                // Kafka Connect's dead-letter context, for tooling that reads only that.
                if let record {
                    #expect(header(record, "__connect.errors.topic") == header(record, "weir-source-topic")
                            && header(record, "__connect.errors.partition") == header(record, "weir-source-partition")
                            && header(record, "__connect.errors.offset") == header(record, "weir-source-offset")
                            && header(record, "__connect.errors.exception.class.name") == code
                            && header(record, "__connect.errors.exception.message") == header(record, "weir-error-message"), "\(entry.name)")
                }
            }
        }
        let hugeLetter = byKey["bad-huge"]
        #expect(hugeLetter.flatMap { header($0, "weir-error") } == "too-large")
        #expect(hugeLetter.flatMap { header($0, "weir-value-omitted") } == String(huge.count),
                "a value over the producer's limit is left out and its size named")
        #expect(hugeLetter?.value?.isEmpty ?? true)
        // Everything was answered and committed: nothing waits to be answered again.
        #expect(try committedOffsets(cluster, group: running.worker.settings.group) == (try highWatermarks(cluster)))
    }

    /// A 10 MB value is dead-lettered as too-large by the decoder the worker uses, before any parse.
    @Test func aTenMegabyteValueIsTooLarge() throws {
        let manifest = bundle.manifest
        let decoder = EventDecoder(schema: FeatureSchema(names: manifest.inputs.map(\.name), defaults: manifest.inputs.map(\.default),
                                                         maxBytes: WorkerSettings().inputMaxBytes))
        func code(_ value: [UInt8]) -> String? {
            var row = [Float](repeating: 0, count: manifest.inputs.count)
            let result = value.withUnsafeBytes { payload in row.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } }
            if case .failure(let failure) = result { return failure.code.rawValue }
            return nil
        }
        let huge = Array(SyntheticEvents.event(3).dropLast(2)) + Array(repeating: UInt8(ascii: "x"), count: 10 << 20) + Array("\"}".utf8)
        #expect(code(huge) == "too-large")
        #expect(code(SyntheticEvents.event(3)) == nil)
    }

    /// Produces one record larger than librdkafka's default 1 MB message limit.
    func produceLarge(_ cluster: EmbeddedCluster, key: [UInt8], value: [UInt8]) throws {
        let delivered = Atomic<Int>(0)
        var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.properties["message.max.bytes"] = String(value.count + 65_536)
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
            for report in reports where report.error == nil { delivered.add(1, ordering: .relaxed) }
        })
        try producer.send(to: try producer.topic("events"), key: key, value: value)
        try producer.flush(timeoutMs: 30_000)
        guard delivered.load(ordering: .relaxed) == 1 else { throw TestFailure("the large record was not delivered") }
    }

    let bundle = try! ModelBundle(directory: demoBundleURL)
}
