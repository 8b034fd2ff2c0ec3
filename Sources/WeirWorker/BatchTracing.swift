import Foundation
import Tracing
import WeirKafka
import WeirTracing

/// A worker's batch tracing (`tracing otlp`, docs/tracing.md), following the OpenTelemetry
/// messaging conventions for a batch consumer that publishes in batches: a `process <inputs>`
/// consumer span per batch linked to each sampled input's context, `decode`, `infer` and `produce`
/// steps under it, and under `produce` one `send <output>` producer span whose context every
/// prediction of the batch carries (the conventions' batch publish, where the send span is each
/// message's creation context). The sampler decides once per batch, on the process span: an
/// unsampled batch costs one span start and nothing per event.
final class BatchTracer {
    let tracing: WorkerTracing
    /// The messaging attributes every process span carries.
    private let processAttributes: [(String, SpanAttribute)]
    private let processName: String
    private let sendName: String
    private let outputTopic: String

    init(_ tracing: WorkerTracing, settings: WorkerSettings) {
        self.tracing = tracing
        let inputs = settings.input.joined(separator: ",")
        processAttributes = [("messaging.system", .string("kafka")), ("messaging.consumer.group.name", .string(settings.group)),
                             ("messaging.destination.name", .string(inputs)), ("messaging.operation.type", .string("process"))]
        processName = "process \(inputs)"
        sendName = "send \(settings.output)"
        outputTopic = settings.output
    }

    /// The batch's trace, or nil when the sampler leaves it out. `events` are the batch's inputs
    /// (their partitions, arrival times and headers).
    func begin<Events: Collection>(events: Events, partition: (Events.Element) -> Int32, message: (Events.Element) -> KafkaMessage,
                                   firstArrival: UInt64, lastArrival: UInt64) -> BatchTrace? {
        let process = tracing.start(processName, kind: .consumer, parent: nil, attributes: processAttributes)
        guard process.isRecording else {
            process.end()
            return nil
        }
        process.attributes["messaging.batch.message_count"] = Int64(events.count)
        if let first = events.first.map(partition), events.allSatisfy({ partition($0) == first }) {
            process.attributes["messaging.destination.partition.id"] = String(first)
        }
        for event in events {
            if let context = sampledContext(of: message(event), tracing) { process.addLink(SpanLink(context: context, attributes: [:])) }
        }
        // Events are decoded as they arrive, before the batch's span exists: the decode step is
        // timed from the first arrival to the last (monotonic instants mapped onto the wall clock).
        let wallNow = UInt64(clamping: wallClockMicroseconds()) &* 1000
        let monotonicNow = monotonicNanoseconds()
        func wall(_ monotonic: UInt64) -> UInt64 { wallNow &- (monotonicNow &- min(monotonic, monotonicNow)) }
        let decode = tracing.start("decode", kind: .internal, parent: process, startNanoseconds: wall(firstArrival))
        tracing.end(decode, atNanoseconds: wall(lastArrival))
        return BatchTrace(tracer: self, process: process, infer: tracing.start("infer", kind: .internal, parent: process))
    }

    /// Starts the batch's `produce` step and its `send` span; returns the `traceparent` the
    /// batch's predictions carry.
    fileprivate func startProducing(under process: any Span) -> (produce: any Span, send: any Span, traceparent: [UInt8]?) {
        let produce = tracing.start("produce", kind: .internal, parent: process)
        let send = tracing.start(sendName, kind: .producer, parent: produce,
                                 attributes: [("messaging.system", .string("kafka")), ("messaging.destination.name", .string(outputTopic)),
                                              ("messaging.operation.type", .string("send"))])
        return (produce, send, tracing.traceparent(of: send).map { Array($0.utf8) })
    }
}

/// One sampled batch's open spans, from inference to the last answer sent.
struct BatchTrace {
    private let tracer: BatchTracer
    let process: any Span
    private var infer: (any Span)?
    private var produce: (any Span)?
    private var send: (any Span)?
    /// The `traceparent` of the batch's `send` span, which each prediction carries instead of its input's.
    private(set) var traceparent: [UInt8]?
    /// The batch's trace and `process` span: named by log lines written while it is answered and by
    /// its inference's metric exemplar.
    let ids: TraceIDs?

    fileprivate init(tracer: BatchTracer, process: any Span, infer: any Span) {
        self.tracer = tracer
        self.process = process
        self.infer = infer
        ids = tracer.tracing.traceparent(of: process).flatMap(TraceIDs.init(traceparent:))
    }

    /// Inference is done: the `produce` step and its `send` span begin.
    mutating func startProducing() {
        infer?.end()
        infer = nil
        let started = tracer.startProducing(under: process)
        produce = started.produce
        send = started.send
        traceparent = started.traceparent
    }

    /// Names the batch's `send` span in a prediction's headers, in place of the input's
    /// `traceparent` (and its `tracestate`, which belonged to the input's trace).
    func stamp(_ headers: inout OutgoingHeaders) {
        guard let traceparent else { return }
        traceparent.withUnsafeBytes { replaceTraceContext(of: &headers, traceparent: $0) }
    }

    /// Ends the batch's spans; `predictions` is how many the `send` span published.
    func end(predictions: Int) {
        infer?.end()
        if let send {
            send.attributes["messaging.batch.message_count"] = Int64(predictions)
            send.end()
        }
        produce?.end()
        process.end()
    }
}

/// Puts `traceparent` (one of Weir's spans) in an answer's headers in place of the input's
/// `traceparent` and `tracestate` (the state belonged to the input's trace).
func replaceTraceContext(of headers: inout OutgoingHeaders, traceparent: UnsafeRawBufferPointer) {
    headers.removeAll { strcmp($0, "traceparent") == 0 || strcmp($0, "tracestate") == 0 }
    headers.append(name: "traceparent", value: traceparent)
}

/// The trace context of a consumed message whose `traceparent` says it was sampled (and its
/// `tracestate`), or nil: what a batch's span links, and a dead letter's.
func sampledContext(of message: KafkaMessage, _ tracing: WorkerTracing) -> ServiceContext? {
    let headers = message.headers
    guard let value = headers.last(named: "traceparent").flatMap({ $0 }),
          value.count == 55, value[53] == UInt8(ascii: "0"), value[54] & 1 == 1 else { return nil }
    let state = headers.last(named: "tracestate").flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) }
    return tracing.context(traceparent: String(decoding: value, as: UTF8.self), tracestate: state)
}
