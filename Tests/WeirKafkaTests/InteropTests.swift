import Foundation
import Testing
import WeirTestSupport
@testable import WeirKafka

/// A `weir broker` child process, stopped with SIGTERM.
final class BrokerProcess {
    let process = Process()
    let bootstrap: String

    init(topics: [String], partitions: Int) throws {
        let binary = builtProduct("weir")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestFailure("\(binary.path) is missing: build the weir product first (make test does)")
        }
        process.executableURL = binary
        process.arguments = ["broker", "--partitions", String(partitions)] + topics.flatMap { ["--topic", $0] }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line of stdout is the bootstrap address (a broker silent for 30 s is killed).
        bootstrap = readFirstLine(output, of: process)
        guard bootstrap.hasPrefix("127.0.0.1:") else { throw TestFailure("weir broker printed '\(bootstrap)'") }
    }

    /// Sends SIGTERM and returns the exit status (nil when it had to be killed after 30 s).
    func stop() -> Int32? {
        WeirTestSupport.stop(process) ? process.terminationStatus : nil
    }
}

@Suite("Interop with kcat through `weir broker`", .timeLimit(.minutes(2)))
struct InteropTests {
    @Test("kcat produces, WeirKafka consumes; WeirKafka produces, kcat consumes")
    func kcatBothWays() throws {
        let broker = try BrokerProcess(topics: ["from-kcat", "to-kcat"], partitions: 3)
        defer { #expect(broker.stop() == 0, "weir broker exits 0 on SIGTERM") }

        // kcat -> WeirKafka: keyed lines with a header.
        let lines = (0..<200).map { "k\($0 % 7)|seq=\($0)" }.joined(separator: "\n") + "\n"
        let produced = try run(["kcat", "-P", "-b", broker.bootstrap, "-t", "from-kcat", "-K", "|", "-H", "origin=kcat"], input: lines)
        #expect(produced.status == 0)
        let collector = RecordCollector()
        let loop = ConsumerLoop(name: "interop", bootstrap: broker.bootstrap, group: uniqueGroup("interop"),
                                topics: ["from-kcat"], collector: collector)
        #expect(collector.waitForCount(200))
        loop.stop()
        let records = collector.all
        #expect(Set(records.map(sequenceNumber)) == Set(0..<200))
        #expect(records.allSatisfy { $0.keyString == "k\(sequenceNumber($0) % 7)" })
        #expect(records.allSatisfy { $0.headers == [.init(name: "origin", value: Array("kcat".utf8))] })

        // WeirKafka -> kcat: keys, values, headers and a tombstone.
        let tally = DeliveryTally()
        let producer = try makeProducer(broker.bootstrap, tally: tally)
        let topic = try producer.topic("to-kcat")
        for i in 0..<100 {
            var headers = OutgoingHeaders()
            headers.append(name: "seq", value: String(i))
            try producer.send(to: topic, partition: Int32(i % 3), key: Array("key\(i)".utf8),
                              value: Array("value\(i)".utf8), headers: headers)
        }
        try producer.send(to: topic, partition: 0, key: Array("deleted".utf8), value: nil)
        try producer.flush(timeoutMs: 10_000)
        #expect(tally.delivered.withLock { $0 } == 101)

        let consumed = try run(["kcat", "-C", "-b", broker.bootstrap, "-t", "to-kcat", "-e", "-q",
                                "-Z", "-f", "%k\t%s\t%h\t%p\n"])
        #expect(consumed.status == 0)
        let rows = consumed.output.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        #expect(rows.count == 101)
        for row in rows where row[0] != "deleted" {
            let i = Int(row[0].dropFirst(3))!
            #expect(row[1] == "value\(i)")
            #expect(row[2] == "seq=\(i)")
            #expect(row[3] == "\(i % 3)")
        }
        // kcat -Z prints a null value as NULL.
        #expect(rows.contains { $0[0] == "deleted" && $0[1] == "NULL" })
    }
}
