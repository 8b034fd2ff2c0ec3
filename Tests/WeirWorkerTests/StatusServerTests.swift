import Foundation
import Synchronization
import Testing
@testable import WeirWorker
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP endpoints without a worker or broker: status codes, methods, query strings, a request
/// larger than the server reads, a client that sends nothing, and stop.
@Suite(.timeLimit(.minutes(1))) struct StatusServerTests {
    /// One raw HTTP exchange with 127.0.0.1:`port`: sends `request`, reads until the server closes
    /// (every read bounded by `timeoutSeconds`). nil when the connection is refused.
    func exchange(_ port: Int, _ request: [UInt8], timeoutSeconds: Int = 10) -> (status: Int, head: String, body: String)? {
        guard let fd = connectLocal(port) else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = recv(fd, &chunk, chunk.count, 0)
            if got <= 0 { break }
            response.append(contentsOf: chunk[0..<got])
        }
        let text = String(decoding: response, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let status = parts[0].split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, parts[0], parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// A socket connected to 127.0.0.1:`port`; nil when the connection is refused.
    func connectLocal(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    func get(_ port: Int, _ path: String, method: String = "GET") -> (status: Int, head: String, body: String)? {
        exchange(port, Array("\(method) \(path) HTTP/1.1\r\nHost: test\r\n\r\n".utf8))
    }

    /// A server whose worker is always ready and whose metrics are one line.
    func server() throws -> StatusServer {
        try StatusServer(host: "127.0.0.1", port: 0, metrics: { Array("weir_up 1\n".utf8) }, ready: { true })
    }

    /// A scrape asking for OpenMetrics gets it (Prometheus asks when exemplar storage is on); any
    /// other gets the Prometheus text.
    @Test func metricsFormatFollowsTheAcceptHeader() throws {
        let server = try StatusServer(host: "127.0.0.1", port: 0, metrics: { Array("weir_up 1\n".utf8) },
                                      openMetrics: { Array("weir_up 1\n# EOF\n".utf8) }, ready: { true })
        defer { server.stop() }
        let open = exchange(server.port, Array("GET /metrics HTTP/1.1\r\nHost: test\r\nACCEPT: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n".utf8))
        #expect(open?.head.contains("Content-Type: application/openmetrics-text; version=1.0.0") == true && open?.body.hasSuffix("# EOF\n") == true)
        let plain = get(server.port, "/metrics")
        #expect(plain?.head.contains("Content-Type: text/plain; version=0.0.4") == true && plain?.body == "weir_up 1\n")
    }

    /// The OpenMetrics text of a Prometheus exposition: counter families without `_total`, `# EOF`,
    /// and a series' exemplar on the first bucket that holds its value, once.
    @Test func openMetricsTextCarriesExemplars() {
        let prometheus = """
        # HELP weir_predictions_total Predictions.
        # TYPE weir_predictions_total counter
        weir_predictions_total{model="m"} 3
        # TYPE weir_odd counter
        weir_odd 1
        # TYPE weir_inference_seconds histogram
        weir_inference_seconds_bucket{model="m",route="primary",le="0.001"} 0
        weir_inference_seconds_bucket{model="m",route="primary",le="0.01"} 2
        weir_inference_seconds_bucket{model="m",route="primary",le="+Inf"} 2
        weir_inference_seconds_bucket{model="m",route="canary",le="0.001"} 1
        weir_inference_seconds_sum{model="m",route="primary"} 0.01
        weir_inference_seconds_count{model="m",route="primary"} 2

        """
        let exemplar = TraceExemplar(traceID: String(repeating: "a", count: 32), spanID: String(repeating: "b", count: 16), value: 0.004, timestamp: 1_800_000_000.5)
        let text = String(decoding: openMetricsText(Array(prometheus.utf8),
                                                    exemplars: ["weir_inference_seconds": [(["model=\"m\"", "route=\"primary\""], exemplar)]]), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("# HELP weir_predictions Predictions.") && lines.contains("# TYPE weir_predictions counter"))
        #expect(lines.contains("weir_predictions_total{model=\"m\"} 3") && lines.contains("# TYPE weir_odd unknown"))
        #expect(lines.contains("weir_inference_seconds_bucket{model=\"m\",route=\"primary\",le=\"0.01\"} 2 # {trace_id=\"\(exemplar.traceID)\",span_id=\"\(exemplar.spanID)\"} 0.004 1800000000.5"))
        #expect(lines.filter { $0.contains("# {") }.count == 1, "one exemplar per series, none on the canary's")
        #expect(lines.last == "# EOF")
    }

    /// The event-latency histogram Weir renders itself: values on a bound fall in that bucket,
    /// buckets are cumulative, and the sum is in seconds; the strict OpenMetrics conversion keeps it.
    @Test func batchedHistogramRendersCumulativeBuckets() {
        let histogram = BatchedHistogram(name: "weir_test_seconds", boundsMicros: [1_000, 10_000])
        let values: [UInt64] = [500, 1_000, 1_001, 9_999, 10_000, 20_000_000]
        values.withUnsafeBufferPointer { histogram.record(microseconds: $0) }
        [UInt64]().withUnsafeBufferPointer { histogram.record(microseconds: $0) }
        var buffer = [UInt8]()
        histogram.emit(into: &buffer)
        let lines = String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines == ["# TYPE weir_test_seconds histogram", "weir_test_seconds_bucket{le=\"0.001\"} 2",
                          "weir_test_seconds_bucket{le=\"0.01\"} 5", "weir_test_seconds_bucket{le=\"+Inf\"} 6",
                          "weir_test_seconds_sum 20.0225", "weir_test_seconds_count 6"], "\(lines)")
    }

    @Test func readinessFollowsTheWorkerAndHealthDoesNot() throws {
        let ready = Atomic<Bool>(false)
        let readiness = try StatusServer(host: "127.0.0.1", port: 0, metrics: { [] }, ready: { ready.load(ordering: .relaxed) })
        defer { readiness.stop() }
        #expect(get(readiness.port, "/readyz")?.status == 503)
        #expect(get(readiness.port, "/readyz")?.body.contains("not ready") == true)
        #expect(get(readiness.port, "/healthz")?.status == 200)
        ready.store(true, ordering: .relaxed)
        #expect(get(readiness.port, "/readyz")?.status == 200)
    }

    @Test func methodsPathsAndQueries() throws {
        let server = try server()
        defer { server.stop() }
        let metrics = get(server.port, "/metrics?name[]=weir_up")
        #expect(metrics?.status == 200 && metrics?.body == "weir_up 1\n", "a query string is ignored: \(String(describing: metrics))")
        #expect(metrics?.head.contains("Content-Type: text/plain; version=0.0.4") == true)
        #expect(metrics?.head.contains("Content-Length: 10") == true)
        let head = get(server.port, "/metrics", method: "HEAD")
        #expect(head?.status == 200 && head?.body == "", "HEAD answers the headers only")
        #expect(get(server.port, "/metrics", method: "POST")?.status == 405)
        #expect(get(server.port, "/metrics", method: "DELETE")?.status == 405)
        #expect(get(server.port, "/nowhere")?.status == 404)
        #expect(exchange(server.port, Array("garbage\r\n\r\n".utf8))?.status == 405, "a request line without a path")
    }

    /// The server reads at most 16 KiB of a request and answers by its first line; the rest is
    /// never read, and the next client is served.
    @Test func anOversizedRequestIsAnsweredByItsFirstLine() throws {
        let server = try server()
        defer { server.stop() }
        let huge = Array("GET /healthz HTTP/1.1\r\nX-Padding: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 64 << 10)
        #expect(exchange(server.port, huge)?.status == 200)
        #expect(get(server.port, "/healthz")?.status == 200)
    }

    /// A client that connects and sends nothing does not hold the server: the next probe is answered.
    @Test func aSilentClientDoesNotWedgeTheServer() throws {
        let server = try server()
        defer { server.stop() }
        let silent = try #require(connectLocal(server.port), "the silent client connects")
        defer { close(silent) }
        #expect(get(server.port, "/healthz")?.status == 200)
    }

    /// Clients that trickle their requests a byte at a time do not hold probes back: each probe is
    /// answered within the 3 s a kubelet might give it while the slow ones are still sending, and
    /// the server closes each slow connection at its 2 s deadline.
    @Test func slowClientsDoNotDelayProbes() throws {
        let server = try server()
        defer { server.stop() }
        let slow = (0..<4).compactMap { _ in connectLocal(server.port) }
        #expect(slow.count == 4)
        defer { for fd in slow { close(fd) } }
        let closedByServer = Atomic<Int>(0)
        let trickling = DispatchGroup()
        for fd in slow {
            DispatchQueue.global().async(group: trickling) {
                // A byte every 300 ms for 6 s; a send to a connection the server closed fails.
                for byte in Array("GET /healthz HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaa".utf8) {
                    if [byte].withUnsafeBytes({ send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }) <= 0 {
                        closedByServer.add(1, ordering: .relaxed)
                        return
                    }
                    usleep(300_000)
                }
            }
        }
        for _ in 0..<4 {
            #expect(exchange(server.port, Array("GET /healthz HTTP/1.1\r\n\r\n".utf8), timeoutSeconds: 3)?.status == 200)
        }
        _ = trickling.wait(timeout: .now() + 20)
        #expect(closedByServer.load(ordering: .relaxed) == 4, "each slow connection closed at its deadline")
    }

    @Test func healthFailsWithItsReason() throws {
        let reason = Mutex<String?>(nil)
        let server = try StatusServer(host: "127.0.0.1", port: 0, metrics: { [] }, ready: { true },
                                      unhealthy: { reason.withLock { $0 } })
        defer { server.stop() }
        #expect(get(server.port, "/healthz")?.status == 200)
        reason.withLock { $0 = "the poll loop has not turned for 31 s" }
        let failing = get(server.port, "/healthz")
        #expect(failing?.status == 503 && failing?.body == "unhealthy: the poll loop has not turned for 31 s\n")
        #expect(get(server.port, "/readyz")?.status == 200, "readiness is a separate question")
    }

    @Test func stopClosesTheSocket() throws {
        let server = try server()
        #expect(get(server.port, "/healthz")?.status == 200)
        server.stop()
        #expect(get(server.port, "/healthz") == nil, "connections are refused after stop")
    }

    @Test func aBadAddressOrABusyPortNamesTheSetting() throws {
        #expect { _ = try StatusServer(host: "localhost", port: 0, metrics: { [] }, ready: { true }) } throws: {
            "\($0)".hasPrefix("metrics-host: 'localhost' is not an IPv4 address")
        }
        let first = try server()
        defer { first.stop() }
        #expect { _ = try StatusServer(host: "127.0.0.1", port: first.port, metrics: { [] }, ready: { true }) } throws: {
            "\($0)".hasPrefix("metrics-port: cannot listen on 127.0.0.1:\(first.port)")
        }
    }
}
