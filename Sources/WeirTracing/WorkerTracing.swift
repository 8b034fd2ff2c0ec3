import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// A worker's traces (`tracing otlp`): spans exported over OTLP (gRPC or HTTP/protobuf), configured
/// by the standard `OTEL_*` environment variables (endpoint, protocol, headers, sampler, service
/// name). The exporter runs in a task of its own; the poll thread only starts and ends spans.
public final class WorkerTracing: Sendable {
    private let tracer: any Tracer
    private let group: ServiceGroup
    private let runner: Task<Void, Never>

    /// `serviceName` is the default for `OTEL_SERVICE_NAME`. `diagnostics` receives what the
    /// exporter reports about itself (a failed export, dropped spans, an `OTEL_*` value that did not
    /// parse) at warning and above, as one line each, for the worker's own log.
    public init(serviceName: String, diagnostics: @escaping @Sendable (TracingDiagnostic) -> Void) throws {
        let logger = Logger(label: "weir-tracing") { _ in DiagnosticForwarder(sink: diagnostics) }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.traces.exporter = .otlp
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.diagnosticLogLevel = .warning
        configuration.diagnosticLogger = .custom(logger)
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        tracer = backend.factory
        let group = ServiceGroup(services: [backend.service], gracefulShutdownSignals: [], cancellationSignals: [],
                                 logger: logger)
        self.group = group
        runner = Task { try? await group.run() }
    }

    /// Flushes what is buffered and stops the exporter, waiting at most `timeoutSeconds`.
    public func shutdown(timeoutSeconds: Double = 5) {
        let done = DispatchSemaphore(value: 0)
        let group = self.group, runner = self.runner
        Task {
            await group.triggerGracefulShutdown()
            _ = await runner.value
            done.signal()
        }
        _ = done.wait(timeout: .now() + timeoutSeconds)
    }

    /// The context a W3C `traceparent` (and `tracestate`) names, when it parses.
    public func context(traceparent: String, tracestate: String?) -> ServiceContext? {
        var carrier = ["traceparent": traceparent]
        if let tracestate { carrier["tracestate"] = tracestate }
        var context = ServiceContext.topLevel
        tracer.extract(carrier, into: &context, using: DictionaryExtractor())
        return context.isEmpty ? nil : context
    }

    /// Starts a span (`parent` nil: a new trace) now, or at `startNanoseconds` since the epoch.
    public func start(_ name: String, kind: SpanKind, parent: (any Span)?, links: [ServiceContext] = [],
                      attributes: [(String, SpanAttribute)] = [], startNanoseconds: UInt64? = nil) -> any Span {
        let instant = startNanoseconds.map { DefaultTracerClock.Instant(nanosecondsSinceEpoch: $0) } ?? DefaultTracerClock.now
        let span = tracer.startSpan(name, context: parent?.context ?? .topLevel, ofKind: kind, at: instant)
        for (key, value) in attributes { span.attributes[key] = value }
        for link in links { span.addLink(SpanLink(context: link, attributes: [:])) }
        return span
    }

    /// Ends `span` at `nanoseconds` since the epoch (a step timed before its span was made).
    public func end(_ span: any Span, atNanoseconds nanoseconds: UInt64) {
        span.end(at: DefaultTracerClock.Instant(nanosecondsSinceEpoch: nanoseconds))
    }

    /// The `traceparent` header value of `span`, or nil when it is not recording.
    public func traceparent(of span: any Span) -> String? {
        var carrier = [String: String]()
        tracer.inject(span.context, into: &carrier, using: DictionaryInjector())
        return carrier["traceparent"]
    }
}

private struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

private struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

/// One line the exporter reports about itself.
public struct TracingDiagnostic: Sendable {
    /// True for errors, false for warnings.
    public let isError: Bool
    public let message: String
}

/// Hands swift-otel's and the service group's log lines to the worker's log, one line each with
/// their metadata as `key=value`. Values read from the environment are left out: a malformed
/// `OTEL_EXPORTER_OTLP_HEADERS` may hold a token, and secrets never reach a log line.
private struct DiagnosticForwarder: LogHandler {
    let sink: @Sendable (TracingDiagnostic) -> Void
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .warning
    private static let withheld: Set<String> = ["environment_value", "previous_value", "new_value"]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = metadata.merging(event.metadata ?? [:]) { _, new in new }
            .filter { !Self.withheld.contains($0.key) }
            .sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value)" }
        let text = fields.isEmpty ? "\(event.message)" : "\(event.message) (\(fields.joined(separator: ", ")))"
        sink(TracingDiagnostic(isError: event.level >= .error, message: "tracing: \(text)"))
    }
}
