import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The worker's HTTP endpoints on `metrics-port`: `/metrics` (Prometheus text), `/healthz`
/// (process alive) and `/readyz` (model loaded and partitions assigned). A small blocking server on
/// its own thread: scrapes are rare and tiny, and it never touches the poll thread.
public final class StatusServer: Sendable {
    /// The port actually bound (useful when 0 asked for any free port).
    public let port: Int
    private let socket: Int32
    private let stopping = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)
    private let metrics: @Sendable () -> [UInt8]
    private let ready: @Sendable () -> Bool

    /// Binds `host:port` and starts serving. Throws with the address when it cannot bind.
    public init(host: String, port: Int, metrics: @escaping @Sendable () -> [UInt8], ready: @escaping @Sendable () -> Bool) throws {
        self.metrics = metrics
        self.ready = ready
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
        guard bound == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw WorkerError("metrics-port: cannot listen on \(host):\(port): \(reason)")
        }
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

    /// Stops accepting and closes the socket (waits up to a second for the thread).
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        for _ in 0..<100 where !finished.withLock({ $0 }) { usleep(10_000) }
    }

    private func serve() {
        defer {
            close(socket)
            finished.withLock { $0 = true }
        }
        while !stopping.load(ordering: .relaxed) {
            var waiting = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            // Wake every 100 ms to notice `stop()`; a connection wakes it at once.
            guard poll(&waiting, 1, 100) > 0 else { continue }
            let client = accept(socket, nil, nil)
            if client < 0 { continue }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count < 16_384 {
            let got = recv(client, &chunk, chunk.count, 0)
            if got <= 0 { break }
            request.append(contentsOf: chunk[0..<got])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let (status, type, body): (String, String, [UInt8])
        if parts.count < 2 || (parts[0] != "GET" && parts[0] != "HEAD") {
            (status, type, body) = ("405 Method Not Allowed", "text/plain", Array("only GET\n".utf8))
        } else {
            switch parts[1].split(separator: "?").first.map(String.init) ?? "" {
            case "/metrics":
                (status, type, body) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics())
            case "/healthz":
                (status, type, body) = ("200 OK", "text/plain", Array("ok\n".utf8))
            case "/readyz":
                (status, type, body) = ready() ? ("200 OK", "text/plain", Array("ready\n".utf8))
                    : ("503 Service Unavailable", "text/plain", Array("not ready: no partitions assigned yet\n".utf8))
            default:
                (status, type, body) = ("404 Not Found", "text/plain", Array("try /metrics, /healthz or /readyz\n".utf8))
            }
        }
        var response = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        if parts.first != "HEAD" { response.append(contentsOf: body) }
        var sent = 0
        while sent < response.count {
            let wrote = response[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if wrote <= 0 { break }
            sent += wrote
        }
    }
}
