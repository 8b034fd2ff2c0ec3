import Foundation
import Testing
import WeirControl
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// `tracing otlp` against a real OTLP receiver (OTLP/HTTP protobuf, decoded with the types generated
/// from opentelemetry-proto): one `process` span per batch linking each sampled input's context,
/// with the messaging attributes; `decode`, `infer` and `produce` under it; under `produce` one
/// `send` span per batch whose context each of the batch's predictions names in its `traceparent`.
@Suite(.serialized, .timeLimit(.minutes(3))) struct TracingTests {
    /// Runs a worker with `tracing otlp` and `environment` (sending a batch's spans within 100 ms)
    /// over `records` on 2 partitions until each is answered, then `body` with it still running;
    /// the environment is unset after.
    func withTracedWorker(_ environment: [String: String], _ records: [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])],
                          _ body: (EmbeddedCluster, RunningWorker, WorkerSettings) throws -> Void) throws {
        let environment = environment.merging(["OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "always_on"]) { given, _ in given }
        for (name, value) in environment { setenv(name, value, 1) }
        defer { for name in environment.keys { unsetenv(name) } }
        let cluster = try makeCluster(partitions: 2)
        defer { cluster.stopCheckingClients() }
        try produce(cluster, records)
        var settings = testSettings(cluster)
        settings.tracing = .otlp
        let running = try RunningWorker(settings: settings, bundle: try ModelBundle(directory: demoBundleURL))
        try running.waitUntilReady()
        try waitFor("every event answered") { running.answered >= records.count }
        try body(cluster, running, settings)
    }

    @Test func batchesAreTracedWithLinksToTheirEvents() throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let inputs = (0..<10).map { index -> (trace: String, span: String) in
            (String(format: "%032x", 0xabc0 + index), String(format: "%016x", 0x10 + index))
        }
        let records = (0..<10).map { index in
            (SyntheticEvents.key(index), SyntheticEvents.event(index),
             [("traceparent", "00-\(inputs[index].trace)-\(inputs[index].span)-01"), ("tracestate", "vendor=input\(index)")])
        } + [(Array("bad".utf8), Array("{not json".utf8), [("traceparent", "00-\(String(repeating: "e", count: 32))-\(String(repeating: "f", count: 16))-01")])]
        try withTracedWorker(["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                              "OTEL_SERVICE_NAME": "weir-test"], records) { cluster, running, settings in
            try running.stop()
            try waitFor("the spans exported", timeoutSeconds: 10) { receiver.spans.contains { $0.name == "process events" } }
            let spans = receiver.spans
            let process = spans.filter { $0.name == "process events" }
            #expect(!process.isEmpty)
            #expect(process.allSatisfy { $0.kind == 5 && $0.attributes["messaging.system"] == "kafka"
                && $0.attributes["messaging.consumer.group.name"] == settings.group && $0.attributes["messaging.destination.name"] == "events"
                && $0.serviceName == "weir-test" }, "\(process.map(\.attributes))")
            let counted = process.compactMap { $0.attributes["messaging.batch.message_count"].flatMap(Int.init) }.reduce(0, +)
            #expect(counted == 10)
            let linked = Set(process.flatMap(\.links))
            #expect(linked == Set(inputs.map { "\($0.trace)/\($0.span)" }), "every sampled input is linked")
            for batch in process {
                #expect(spans.contains { $0.name == "decode" && $0.parentSpanID == batch.spanID })
                #expect(spans.contains { $0.name == "infer" && $0.parentSpanID == batch.spanID })
                #expect(spans.contains { $0.name == "produce" && $0.parentSpanID == batch.spanID })
            }
            let sends = spans.filter { $0.name == "send predictions" }
            #expect(sends.count == process.count && sends.allSatisfy { send in
                send.kind == 4 && send.attributes["messaging.destination.name"] == "predictions"
                    && spans.contains { $0.name == "produce" && $0.spanID == send.parentSpanID }
            })
            #expect(sends.compactMap { $0.attributes["messaging.batch.message_count"].flatMap(Int.init) }.reduce(0, +) == 10)
            // Each prediction names its batch's send span, not its input's (whose tracestate stays behind).
            let predictions = try readTopic(cluster, "predictions", partitions: 2)
            let named = predictions.compactMap { header($0, "traceparent") }
            #expect(named.count == 10 && named.allSatisfy { $0.split(separator: "-").count == 4 })
            #expect(Set(named.map { String($0.split(separator: "-")[2]) }) == Set(sends.map(\.spanID)))
            #expect(predictions.allSatisfy { header($0, "tracestate") == nil })
            // The inference histogram names a traced batch as its exemplar (OpenMetrics).
            let openMetrics = String(decoding: running.worker.metrics.openMetricsExposition(), as: UTF8.self)
            let exemplars = openMetrics.split(separator: "\n").filter { $0.hasPrefix("weir_inference_seconds_bucket{") && $0.contains(" # {trace_id=\"") }
            #expect(exemplars.count == 1 && process.contains { exemplars[0].contains("trace_id=\"\($0.traceID)\",span_id=\"\($0.spanID)\"") },
                    "\(exemplars)")
            #expect(openMetrics.hasSuffix("# EOF\n"))
            // A dead letter: a span of its own, linked to its input, named in its traceparent.
            let deadLetter = try #require(readTopic(cluster, "dead-letters", partitions: 2).first)
            let letterSpan = try #require(spans.first { $0.name == "send dead-letters" })
            #expect(letterSpan.kind == 4 && letterSpan.attributes["weir.dead_letter.code"] == "malformed-json")
            #expect(letterSpan.links == ["\(String(repeating: "e", count: 32))/\(String(repeating: "f", count: 16))"])
            #expect(header(deadLetter, "traceparent")?.split(separator: "-").dropFirst(2).first.map(String.init) == letterSpan.spanID)
        }
    }

    /// The same spans over OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) to a real gRPC server, with
    /// the headers `OTEL_EXPORTER_OTLP_HEADERS` names on every export.
    @Test func spansGoOverGRPCWithTheConfiguredHeaders() throws {
        let receiver = try OTLPGRPCReceiver()
        defer { receiver.stop() }
        try withTracedWorker(["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                              "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=weir-test", "OTEL_SERVICE_NAME": "weir-grpc"],
                             (0..<6).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) }) { cluster, running, _ in
            try running.stop()
            try waitFor("the spans exported", timeoutSeconds: 10) { receiver.spans.contains { $0.name == "send predictions" } }
            let spans = receiver.spans
            let process = spans.filter { $0.name == "process events" }
            #expect(process.compactMap { $0.attributes["messaging.batch.message_count"].flatMap(Int.init) }.reduce(0, +) == 6)
            #expect(process.allSatisfy { $0.serviceName == "weir-grpc" && $0.links.isEmpty }, "unsampled inputs are not linked")
            #expect(receiver.headers["x-tenant"] == "weir-test", "\(receiver.headers)")
            // The predictions name this trace's send spans.
            let named = Set(try readTopic(cluster, "predictions", partitions: 2).compactMap { header($0, "traceparent")?.split(separator: "-")[2] }.map(String.init))
            #expect(!named.isEmpty && named.isSubset(of: Set(spans.filter { $0.name == "send predictions" }.map(\.spanID))))
        }
    }

    /// A collector that is down costs no answers: the exporter's failures reach the worker's log as
    /// its own lines, and a malformed `OTEL_EXPORTER_OTLP_HEADERS` is reported without its value
    /// (it may hold a token).
    @Test func anUnreachableCollectorIsLoggedAndCostsNoAnswers() throws {
        try withTracedWorker(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(try freePort())", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                              "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cr3t-token,no-equals-sign"],
                             (0..<6).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) }) { cluster, running, _ in
            try waitFor("the exporter's failure logged", timeoutSeconds: 15) {
                running.log.lines.withLock { $0.contains { $0.hasPrefix("tracing: ") && $0.lowercased().contains("export") } }
            }
            try running.stop()
            let lines = running.log.lines.withLock { $0 }
            #expect(lines.contains { $0.hasPrefix("tracing: ") && $0.contains("environment_key=OTEL_EXPORTER_OTLP_TRACES_HEADERS") },
                    "\(lines.filter { $0.hasPrefix("tracing") })")
            #expect(!lines.contains { $0.contains("s3cr3t") }, "no secret in the log")
            #expect(try readTopic(cluster, "predictions", partitions: 2).count == 6)
        }
    }
}
