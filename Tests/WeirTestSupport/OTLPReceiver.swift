import Foundation
import SwiftProtobuf
import Synchronization

/// A real OTLP/HTTP receiver for tests (the OpenTelemetry Collector cannot be installed here):
/// accepts `POST /v1/traces` with an `application/x-protobuf` `ExportTraceServiceRequest`, decodes
/// it with the types generated from opentelemetry-proto (`scripts/generate-otlp-proto`), answers
/// 200 with an empty `ExportTraceServiceResponse`, and keeps every span. One connection at a time,
/// on its own thread; `stop()` closes it.
public final class OTLPReceiver: @unchecked Sendable {
    /// A received span, flattened for assertions.
    public struct Span: Sendable {
        public let name: String
        public let traceID: String
        public let spanID: String
        public let parentSpanID: String
        public let kind: Int
        public let attributes: [String: String]
        /// Linked contexts as `traceID/spanID` (hex).
        public let links: [String]
        public let serviceName: String?
    }

    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    private let listener: Int32
    private let received = Mutex<[Span]>([])
    private let requests = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("OTLP receiver: socket failed (\(errno))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw TestFailure("OTLP receiver: bind/listen failed (\(errno))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        listener = fd
        let thread = Thread { [self] in
            while !stopping.load(ordering: .relaxed) {
                let client = accept(listener, nil, nil)
                if client < 0 { continue }
                serve(client)
                close(client)
            }
            finished.signal()
        }
        thread.start()
    }

    /// Every span received so far.
    public var spans: [Span] { received.withLock { $0 } }
    /// Export requests answered.
    public var requestCount: Int { requests.load(ordering: .relaxed) }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        _ = finished.wait(timeout: .now() + 5)
    }

    /// Reads requests on one keep-alive connection until the peer closes it.
    private func serve(_ client: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            // Headers up to the blank line, then the body its Content-Length names.
            guard let headerEnd = readUntilHeaders(client, &buffer, &chunk) else { return }
            let head = String(decoding: buffer[..<headerEnd], as: UTF8.self)
            let lines = head.split(separator: "\r\n")
            let length = lines.compactMap { line -> Int? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }.first ?? 0
            let bodyStart = headerEnd + 4
            while buffer.count < bodyStart + length {
                let count = read(client, &chunk, chunk.count)
                if count <= 0 { return }
                buffer.append(contentsOf: chunk[0..<count])
            }
            let body = Array(buffer[bodyStart..<(bodyStart + length)])
            buffer.removeFirst(bodyStart + length)
            let ok = lines.first?.hasPrefix("POST /v1/traces") == true && record(body)
            let response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse()
            let payload: [UInt8] = ok ? ((try? response.serializedBytes()) ?? []) : []
            let status = ok ? "200 OK" : "400 Bad Request"
            let header = "HTTP/1.1 \(status)\r\nContent-Type: application/x-protobuf\r\nContent-Length: \(payload.count)\r\n\r\n"
            let bytes = Array(header.utf8) + payload
            _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
        }
    }

    private func readUntilHeaders(_ client: Int32, _ buffer: inout [UInt8], _ chunk: inout [UInt8]) -> Int? {
        let marker: [UInt8] = [13, 10, 13, 10]
        while true {
            if buffer.count >= 4 {
                for index in 0...(buffer.count - 4) where buffer[index..<(index + 4)].elementsEqual(marker) { return index }
            }
            let count = read(client, &chunk, chunk.count)
            if count <= 0 { return nil }
            buffer.append(contentsOf: chunk[0..<count])
        }
    }

    /// Decodes an export request and keeps its spans; false when it is not one.
    private func record(_ body: [UInt8]) -> Bool {
        guard let request = try? Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(serializedBytes: body) else { return false }
        let spans = Self.spans(of: request)
        received.withLock { $0.append(contentsOf: spans) }
        requests.add(1, ordering: .relaxed)
        return true
    }

    /// An export request's spans, flattened.
    static func spans(of request: Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest) -> [Span] {
        func hex(_ data: Data) -> String { data.map { String(format: "%02x", $0) }.joined() }
        func text(_ value: Opentelemetry_Proto_Common_V1_AnyValue) -> String {
            switch value.value {
            case .stringValue(let text): text
            case .intValue(let number): String(number)
            case .boolValue(let flag): String(flag)
            case .doubleValue(let number): String(number)
            default: "\(value)"
            }
        }
        var spans = [Span]()
        for resourceSpans in request.resourceSpans {
            let service = resourceSpans.resource.attributes.first { $0.key == "service.name" }.map { text($0.value) }
            for scope in resourceSpans.scopeSpans {
                for span in scope.spans {
                    spans.append(Span(name: span.name, traceID: hex(span.traceID), spanID: hex(span.spanID),
                                      parentSpanID: hex(span.parentSpanID), kind: span.kind.rawValue,
                                      attributes: Dictionary(span.attributes.map { ($0.key, text($0.value)) }, uniquingKeysWith: { a, _ in a }),
                                      links: span.links.map { "\(hex($0.traceID))/\(hex($0.spanID))" }, serviceName: service))
                }
            }
        }
        return spans
    }
}
