import Foundation
import Testing
import WeirControl
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// Answers as events of their own (docs/contracts.md): the headers policy decides which input
/// headers an answer carries on, and every prediction and dead letter gets CloudEvents binary-mode
/// headers naming itself, not the input.
@Suite(.serialized, .timeLimit(.minutes(3))) struct OutputHeadersTests {
    /// The input's CloudEvents identity, a trace and a header of the team's own.
    static let inputHeaders: [(String, String)] = [
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("ce_id", "order-17"),
        ("ce_type", "com.example.order.created"), ("ce_source", "/orders"), ("ce_specversion", "1.0"),
        ("content-type", "application/json"), ("x-team", "payments"),
    ]

    @Test func policiesParseAndNameTheirMistakes() throws {
        #expect(try HeadersPolicy(parsing: "copy-except-ce") == .copyExceptCloudEvents)
        #expect(try HeadersPolicy(parsing: "copy") == .copy)
        #expect(try HeadersPolicy(parsing: "none") == .none)
        #expect(try HeadersPolicy(parsing: "traceparent, tracestate") == .allow(["traceparent", "tracestate"]))
        #expect { _ = try HeadersPolicy(parsing: "traceparent,,x") } throws: { "\($0)".contains("output.headers: 'traceparent,,x' is not") }
        #expect { _ = try HeadersPolicy(parsing: "a,a") } throws: { "\($0)".contains("'a' is listed twice") }
        let settings = try SettingsLoader.load(file: nil, environment: ["WEIR_OUTPUT_HEADERS": "none"], arguments: [])
        #expect(settings.outputHeaders == HeadersPolicy.none)
        #expect(SettingsLoader.render(settings).contains("output.headers: none"))
        #expect(WorkerSettings().outputHeaders == .copyExceptCloudEvents && WorkerSettings().outputCloudEvents)
        #expect(try !SettingsLoader.load(file: nil, environment: [:], arguments: ["--output-cloudevents", "false"]).outputCloudEvents)
        #expect { _ = try SettingsLoader.load(file: nil, environment: [:], arguments: ["--output-cloudevents", "maybe"]) } throws: {
            "\($0)".contains("output.cloudevents: 'maybe' from --output-cloudevents is not true or false")
        }
    }

    @Test func theSlowPathsApplyThePolicyToo() {
        let list = Self.inputHeaders.map { (name: $0.0, value: Optional(Array($0.1.utf8))) }
        func names(_ policy: HeadersPolicy, _ kind: CloudEventHeaders.Kind) -> [String] {
            CloudEventHeaders(policy: policy, worker: "w", format: .json).inputHeaders(list, kind: kind).map(\.name)
        }
        #expect(names(.copyExceptCloudEvents, .prediction) == ["traceparent", "x-team"])
        #expect(names(.copyExceptCloudEvents, .deadLetter) == ["traceparent", "content-type", "x-team"], "a dead letter's value is the input's")
        #expect(names(.copy, .prediction) == ["traceparent", "x-team"], "Weir's own CloudEvents names replace the input's")
        #expect(names(.none, .prediction).isEmpty)
        #expect(names(.allow(["x-team", "ce_id"]), .prediction) == ["x-team"])
        let on = CloudEventHeaders(policy: .copy, worker: "w", format: .avro)
        #expect(on.list(kind: .prediction, topic: "events", partition: 3, offset: 1_234_567_890_123).map(\.name) == CloudEventHeaders.names)
        #expect(on.list(kind: .shadow, topic: "events", partition: 3, offset: 42).first { $0.name == "ce_id" }?.value == Array("events-3-42/shadow".utf8))
        #expect(on.list(kind: .prediction, topic: "t", partition: 0, offset: 0).last?.value == Array("application/avro".utf8))
        #expect(on.list(kind: .deadLetter, topic: "t", partition: 0, offset: 0).map(\.name) == Array(CloudEventHeaders.names.dropLast()))
        #expect(CloudEventHeaders(policy: .copy, worker: "w", format: .json, enabled: false).list(kind: .prediction, topic: "t", partition: 0, offset: 0).isEmpty)
        var headers = OutgoingHeaders()
        for (name, value) in Self.inputHeaders { headers.append(name: name, value: value) }
        headers.removeAll { strncmp($0, "ce_", 3) == 0 }
        #expect(headers.list.map(\.name) == ["traceparent", "content-type", "x-team"])
    }

    /// A worker under each policy: predictions and dead letters carry what the policy lets through
    /// and CloudEvents headers of their own (type, source, an id stable across repeats, time).
    @Test func predictionsAndDeadLettersAreEventsOfTheirOwn() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 2), ("predictions", 2), ("dead-letters", 2),
                                                               ("predictions-allow", 2), ("dead-letters-allow", 2),
                                                               ("predictions-none", 2), ("dead-letters-none", 2)])
        defer { cluster.stopCheckingClients() }
        var records = (0..<20).map { (key: Optional(SyntheticEvents.key($0)), value: Optional(SyntheticEvents.event($0)), headers: Self.inputHeaders) }
        records.append((Array("bad".utf8), Array("{not json".utf8), Self.inputHeaders))
        try produce(cluster, records)
        for (policy, suffix) in [(HeadersPolicy.copyExceptCloudEvents, ""), (.allow(["traceparent"]), "-allow"), (.none, "-none")] {
            var settings = testSettings(cluster)
            settings.workerID = "headers-worker"
            settings.output = "predictions" + suffix
            settings.dlq = "dead-letters" + suffix
            settings.outputHeaders = policy
            let running = try RunningWorker(settings: settings, bundle: try ModelBundle(directory: demoBundleURL))
            try running.waitUntilReady()
            try waitFor("every event answered") { running.answered >= 21 }
            try running.stop()
            let predictions = try readTopic(cluster, settings.output, partitions: 2)
            let deadLetters = try readTopic(cluster, settings.dlq, partitions: 2)
            #expect(predictions.count == 20 && deadLetters.count == 1)
            for record in predictions + deadLetters {
                let isDeadLetter = deadLetters.contains(record)
                let names = record.headers.map(\.name)
                // The policy.
                switch policy {
                case .copyExceptCloudEvents:
                    #expect(header(record, "traceparent") == Self.inputHeaders[0].1 && header(record, "x-team") == "payments")
                case .allow:
                    #expect(header(record, "traceparent") == Self.inputHeaders[0].1 && header(record, "x-team") == nil)
                default:
                    #expect(header(record, "traceparent") == nil && header(record, "x-team") == nil)
                }
                // Never the input's identity: one of each CloudEvents header, Weir's.
                for name in ["ce_specversion", "ce_type", "ce_source", "ce_id", "ce_time"] {
                    #expect(names.filter { $0 == name }.count == 1, "\(name) once in \(names)")
                }
                #expect(header(record, "ce_specversion") == "1.0")
                #expect(header(record, "ce_type") == (isDeadLetter ? "io.weir.deadletter.v1" : "io.weir.prediction.v1"))
                #expect(header(record, "ce_source") == "/weir/headers-worker")
                let object = isDeadLetter ? nil : try jsonObject(record)
                let source = object?["source"] as? [String: Any]
                let offset = isDeadLetter ? header(record, "weir-source-offset")! : String(source!["offset"] as! Int)
                let partition = isDeadLetter ? header(record, "weir-source-partition")! : String(source!["partition"] as! Int)
                #expect(header(record, "ce_id") == "events-\(partition)-\(offset)")
                let time = try #require(header(record, "ce_time"))
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                #expect(formatter.date(from: time).map { abs($0.timeIntervalSinceNow) < 120 } == true, "\(time)")
                // A prediction says what it is; a dead letter's value is the input's, so its type is too.
                if isDeadLetter {
                    #expect(header(record, "content-type") == (policy == .copyExceptCloudEvents ? "application/json" : nil))
                } else {
                    #expect(names.filter { $0 == "content-type" } == ["content-type"] && header(record, "content-type") == "application/json")
                }
            }
        }
    }
}
