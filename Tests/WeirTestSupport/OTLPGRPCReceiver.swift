import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import Synchronization

/// A real OTLP/gRPC receiver for tests: a gRPC server (grpc-swift over HTTP/2, plaintext) serving
/// `opentelemetry.proto.collector.trace.v1.TraceService/Export` with the types generated from
/// opentelemetry-proto, keeping every span. `stop()` shuts it down.
public final class OTLPGRPCReceiver: Sendable {
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    private let store: SpanStore
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let serving: Task<Void, Never>

    public init() throws {
        let store = SpanStore()
        let server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
                                services: [TraceExportService(store: store)])
        self.store = store
        self.server = server
        serving = Task { try? await server.serve() }
        let found = Mutex<Int?>(nil)
        let ready = DispatchSemaphore(value: 0)
        Task {
            let address = try? await server.listeningAddress
            found.withLock { $0 = address?.ipv4?.port }
            ready.signal()
        }
        guard ready.wait(timeout: .now() + 10) == .success, let port = found.withLock({ $0 }) else {
            server.beginGracefulShutdown()
            throw TestFailure("OTLP/gRPC receiver: the server did not start listening within 10 s")
        }
        self.port = port
    }

    /// Every span received so far.
    public var spans: [OTLPReceiver.Span] { store.spans.withLock { $0 } }
    /// The request metadata (gRPC headers) of every export, by name: what `OTEL_EXPORTER_OTLP_HEADERS` sent.
    public var headers: [String: String] { store.headers.withLock { $0 } }

    /// Stops listening and waits (at most 5 s) for the server to finish.
    public func stop() {
        server.beginGracefulShutdown()
        let done = DispatchSemaphore(value: 0)
        let serving = self.serving
        Task {
            await serving.value
            done.signal()
        }
        _ = done.wait(timeout: .now() + 5)
    }
}

private final class SpanStore: Sendable {
    let spans = Mutex<[OTLPReceiver.Span]>([])
    let headers = Mutex<[String: String]>([:])
}

/// The trace service's one method, registered by hand (no generated service code is needed).
private struct TraceExportService: RegistrableRPCService {
    typealias Request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
    typealias Response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse
    let store: SpanStore

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let method = MethodDescriptor(service: ServiceDescriptor(fullyQualifiedService: "opentelemetry.proto.collector.trace.v1.TraceService"),
                                      method: "Export")
        router.registerHandler(forMethod: method, deserializer: ProtobufDeserializer<Request>(), serializer: ProtobufSerializer<Response>()) {
            [store] request, _ in
            for (key, value) in request.metadata {
                if case .string(let text) = value { store.headers.withLock { $0[key] = text } }
            }
            for try await message in request.messages {
                let spans = OTLPReceiver.spans(of: message)
                store.spans.withLock { $0.append(contentsOf: spans) }
            }
            return StreamingServerResponse(single: ServerResponse(message: Response()))
        }
    }
}
