import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The worker's HTTP endpoints on `metrics-port`: `/metrics` (Prometheus text, or OpenMetrics
/// with trace exemplars when the scraper asks for `application/openmetrics-text`), `/healthz`
/// (the worker is live: `Worker.unhealthyReason`) and `/readyz` (model loaded and partitions
/// assigned). One thread serves every connection at once through `poll(2)` on non-blocking
/// sockets, so a slow or silent client never delays a kubelet probe; each connection has a
/// deadline for its whole request and answer, and it never touches the poll thread.
public final class StatusServer: Sendable {
    /// The port actually bound (useful when 0 asked for any free port).
    public let port: Int
    private let socket: Int32
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let metrics: @Sendable () -> [UInt8]
    private let openMetrics: (@Sendable () -> [UInt8])?
    private let ready: @Sendable () -> Bool
    private let unhealthy: @Sendable () -> String?
    /// How long one connection may take to send its request and read the answer.
    static let connectionDeadlineNanoseconds: UInt64 = 2_000_000_000
    /// Connections served at once; more wait in the listen backlog.
    static let maxConnections = 64
    static let maxRequestBytes = 16_384

    /// Binds `host:port` and starts serving. Throws with the address when it cannot bind.
    /// `unhealthy` says why `/healthz` fails (nil: healthy); `openMetrics`, when given, answers a
    /// scrape whose `Accept` names `application/openmetrics-text`.
    public init(host: String, port: Int, metrics: @escaping @Sendable () -> [UInt8], openMetrics: (@Sendable () -> [UInt8])? = nil,
                ready: @escaping @Sendable () -> Bool, unhealthy: @escaping @Sendable () -> String? = { nil }) throws {
        self.metrics = metrics
        self.openMetrics = openMetrics
        self.ready = ready
        self.unhealthy = unhealthy
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WorkerError("metrics-port: cannot create a socket") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw WorkerError("metrics-host: '\(host)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw WorkerError("metrics-port: cannot listen on \(host):\(port): \(reason)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        socket = fd
        let thread = Thread { [self] in serve() }
        thread.name = "weir-http"
        thread.start()
    }

    /// Stops serving and closes every socket; returns once the thread has (at most a second).
    public func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        _ = finished.wait(timeout: .now() + 1)
    }

    /// One client: its request as it arrives, then the answer as it leaves.
    private struct Connection {
        let fd: Int32
        let deadline: UInt64
        var request: [UInt8] = []
        var response: [UInt8] = []
        var sent = 0
        var answering: Bool { !response.isEmpty }
    }

    private func serve() {
        var connections: [Connection] = []
        var descriptors: [pollfd] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer {
            for connection in connections { close(connection.fd) }
            close(socket)
            finished.signal()
        }
        while !stopping.load(ordering: .relaxed) {
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: socket, events: connections.count < Self.maxConnections ? Int16(POLLIN) : 0, revents: 0))
            for connection in connections {
                descriptors.append(pollfd(fd: connection.fd, events: Int16(connection.answering ? POLLOUT : POLLIN), revents: 0))
            }
            // Wake at least every 100 ms to notice `stop()` and deadlines; any socket wakes it at once.
            guard poll(&descriptors, nfds_t(descriptors.count), 100) >= 0 else { continue }
            let now = monotonicNanoseconds()
            var index = connections.count - 1
            while index >= 0 {
                let events = descriptors[index + 1].revents
                var done = now > connections[index].deadline
                if !done && events != 0 {
                    done = connections[index].answering ? write(&connections[index]) : read(&connections[index], into: &chunk)
                }
                if done {
                    close(connections[index].fd)
                    connections.remove(at: index)
                }
                index -= 1
            }
            if descriptors[0].revents & Int16(POLLIN) != 0 {
                while connections.count < Self.maxConnections {
                    let client = accept(socket, nil, nil)
                    if client < 0 { break }
                    _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                    connections.append(Connection(fd: client, deadline: now &+ Self.connectionDeadlineNanoseconds))
                }
            }
        }
    }

    /// Reads what the client sent; once the request's head is in (or too large, or the client
    /// closed), prepares the answer. Returns whether the connection is finished.
    private func read(_ connection: inout Connection, into chunk: inout [UInt8]) -> Bool {
        let got = recv(connection.fd, &chunk, chunk.count, 0)
        if got < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        if got > 0 { connection.request.append(contentsOf: chunk[0..<got]) }
        let complete = connection.request.count >= 4 && connection.request.suffix(4) == [13, 10, 13, 10]
        guard got == 0 || complete || connection.request.count >= Self.maxRequestBytes else { return false }
        connection.response = answer(connection.request)
        return write(&connection)
    }

    /// Sends what is left of the answer; returns whether it is all sent (or the client is gone).
    private func write(_ connection: inout Connection) -> Bool {
        let wrote = connection.response[connection.sent...].withUnsafeBytes {
            send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        if wrote < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        connection.sent += wrote
        return connection.sent >= connection.response.count
    }

    /// Whether the request's `Accept` header names OpenMetrics (what Prometheus sends when
    /// exemplar storage is on).
    static func acceptsOpenMetrics(_ request: [UInt8]) -> Bool {
        let head = String(decoding: request, as: UTF8.self)
        return head.split(separator: "\r\n").contains { line in
            let lowered = line.lowercased()
            return lowered.hasPrefix("accept:") && lowered.contains("application/openmetrics-text")
        }
    }

    /// The HTTP/1.1 answer to `request` (the connection closes after it).
    private func answer(_ request: [UInt8]) -> [UInt8] {
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let (status, type, body): (String, String, [UInt8])
        if parts.count < 2 || (parts[0] != "GET" && parts[0] != "HEAD") {
            (status, type, body) = ("405 Method Not Allowed", "text/plain", Array("only GET\n".utf8))
        } else {
            switch parts[1].split(separator: "?").first.map(String.init) ?? "" {
            case "/metrics":
                if let openMetrics, Self.acceptsOpenMetrics(request) {
                    (status, type, body) = ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", openMetrics())
                } else {
                    (status, type, body) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics())
                }
            case "/healthz":
                if let reason = unhealthy() {
                    (status, type, body) = ("503 Service Unavailable", "text/plain", Array("unhealthy: \(reason)\n".utf8))
                } else {
                    (status, type, body) = ("200 OK", "text/plain", Array("ok\n".utf8))
                }
            case "/readyz":
                (status, type, body) = ready() ? ("200 OK", "text/plain", Array("ready\n".utf8))
                    : ("503 Service Unavailable", "text/plain", Array("not ready: no partitions assigned yet\n".utf8))
            default:
                (status, type, body) = ("404 Not Found", "text/plain", Array("try /metrics, /healthz or /readyz\n".utf8))
            }
        }
        var response = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        if parts.first != "HEAD" { response.append(contentsOf: body) }
        return response
    }
}
