import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small Schema Registry speaking the REST calls Weir and the standard serializers use, with
/// the registry's documented answers and error codes: for tests and `weir demo`, since no
/// registry server installs on this machine. In memory; one thread serves one connection at a
/// time. Not for production.
///
/// Calls: `POST /subjects/{s}/versions` (register; the same schema keeps its id),
/// `GET /schemas/ids/{id}`, `GET /subjects/{s}/versions/latest`, `GET /subjects/{s}/versions/{n}`,
/// `GET /subjects`. Errors: 40401 subject not found, 40402 version not found, 40403 schema not
/// found, 42201 invalid schema, 401 without the configured credentials, 50003 while made
/// unavailable (`setAvailable(false)`).
public final class SchemaRegistryServer: Sendable {
    public let port: Int
    public var url: String { "http://127.0.0.1:\(port)" }
    private let socket: Int32
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let state = Mutex(Store())
    /// `user:password` a request must carry, or nil.
    private let credentials: String?

    private struct Store {
        var schemas: [(text: String, type: String, references: [SchemaReference])] = []  // id = index + 1
        var subjects: [String: [Int]] = [:]  // subject -> ids by version
        var available = true
        var delayMs = 0
        var requests = 0
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    public init(port: Int = 0, credentials: String? = nil) throws {
        self.credentials = credentials
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RegistryError.unavailable("cannot create a socket") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RegistryError.unavailable("cannot listen on 127.0.0.1:\(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        socket = fd
        let thread = Thread { [self] in serve() }
        thread.name = "weir-registry"
        thread.start()
    }

    /// Stops serving and closes the socket; returns once the thread has (at most two seconds).
    public func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        _ = finished.wait(timeout: .now() + 2)
    }

    /// While false, every call answers 503 with error 50003 (a registry whose store is down).
    public func setAvailable(_ available: Bool) { state.withLock { $0.available = available } }

    /// Each answer waits this long first (a slow registry).
    public func setDelay(milliseconds: Int) { state.withLock { $0.delayMs = milliseconds } }

    /// Requests answered so far.
    public var requestCount: Int { state.withLock { $0.requests } }

    /// Registers directly (tests, the demo): the schema's id under `subject`.
    @discardableResult
    public func register(subject: String, schema: String, schemaType: String = "AVRO", references: [SchemaReference] = []) -> UInt32 {
        state.withLock { UInt32(Self.register(&$0, subject: subject, text: schema, type: schemaType, references: references)) }
    }

    private static func register(_ store: inout Store, subject: String, text: String, type: String, references: [SchemaReference]) -> Int {
        let id: Int
        if let existing = store.schemas.firstIndex(where: { $0.text == text && $0.type == type && $0.references == references }) {
            id = existing + 1
        } else {
            store.schemas.append((text, type, references))
            id = store.schemas.count
        }
        if !(store.subjects[subject]?.contains(id) ?? false) { store.subjects[subject, default: []].append(id) }
        return id
    }

    private func serve() {
        defer {
            close(socket)
            finished.signal()
        }
        while !stopping.load(ordering: .relaxed) {
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let client = accept(socket, nil, nil)
            guard client >= 0 else { continue }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            handle(client)
            close(client)
        }
    }

    /// Reads one request (head and `Content-Length` body) and answers it.
    private func handle(_ client: Int32) {
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var headEnd: Int?
        var bodyLength = 0
        while request.count < 1 << 20 {
            let got = recv(client, &chunk, chunk.count, 0)
            guard got > 0 else { return }
            request.append(contentsOf: chunk[0..<got])
            if headEnd == nil, let end = Self.find([13, 10, 13, 10], in: request) {
                headEnd = end + 4
                let head = String(decoding: request[0..<end], as: UTF8.self).lowercased()
                for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                    bodyLength = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let headEnd, request.count >= headEnd + bodyLength { break }
        }
        guard let headEnd else { return }
        let head = String(decoding: request[0..<headEnd], as: UTF8.self)
        let body = Data(request[headEnd..<min(request.count, headEnd + bodyLength)])
        let (status, json) = answer(head: head, body: body)
        let payload = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data("{}".utf8)
        let reason = [200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 422: "Unprocessable Entity",
                      503: "Service Unavailable"][status] ?? "Error"
        var response = Array("HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n".utf8)
        response.append(contentsOf: payload)
        var sent = 0
        while sent < response.count {
            let wrote = response[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard wrote > 0 else { return }
            sent += wrote
        }
    }

    private static func json(_ references: [SchemaReference]) -> [[String: Any]] {
        references.map { ["name": $0.name, "subject": $0.subject, "version": $0.version] }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) { return start }
        return nil
    }

    private func error(_ status: Int, _ code: Int, _ message: String) -> (Int, Any) {
        (status, ["error_code": code, "message": message])
    }

    private func answer(head: String, body: Data) -> (Int, Any) {
        let delay = state.withLock { store -> Int in
            store.requests += 1
            return store.delayMs
        }
        if delay > 0 { usleep(UInt32(min(delay, 60_000)) * 1000) }
        let lines = head.split(separator: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2 else { return error(400, 400, "bad request") }
        if let credentials {
            let expected = "basic " + Data(credentials.utf8).base64EncodedString()
            let given = lines.first { $0.lowercased().hasPrefix("authorization:") }.map {
                $0.dropFirst("authorization:".count).trimmingCharacters(in: .whitespaces).lowercased()
            }
            if given != expected.lowercased() { return error(401, 401, "Unauthorized") }
        }
        let method = String(parts[0])
        let path = String(parts[1].split(separator: "?").first ?? "")
        let segments = path.split(separator: "/").map { $0.removingPercentEncoding ?? String($0) }
        return state.withLock { store -> (Int, Any) in
            guard store.available else { return error(503, 50003, "Error while forwarding the request to the primary (store unavailable)") }
            switch (method, segments.count) {
            case ("GET", 3) where segments[0] == "schemas" && segments[1] == "ids":
                guard let id = Int(segments[2]), id >= 1, id <= store.schemas.count else {
                    return error(404, 40403, "Schema \(segments[2]) not found")
                }
                let schema = store.schemas[id - 1]
                var object: [String: Any] = ["schema": schema.text]
                if schema.type != "AVRO" { object["schemaType"] = schema.type }
                if !schema.references.isEmpty { object["references"] = Self.json(schema.references) }
                return (200, object)
            case ("GET", 1) where segments[0] == "subjects":
                return (200, store.subjects.keys.sorted())
            case ("POST", 3) where segments[0] == "subjects" && segments[2] == "versions":
                guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any], let text = object["schema"] as? String else {
                    return error(422, 42201, "Invalid schema: the body needs a \"schema\" string")
                }
                let type = (object["schemaType"] as? String) ?? "AVRO"
                if type == "AVRO" && (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) == nil {
                    return error(422, 42201, "Invalid schema: not valid JSON")
                }
                let references = SchemaReference.list(object["references"])
                for reference in references where (store.subjects[reference.subject]?.count ?? 0) < reference.version {
                    return error(422, 42201, "Invalid schema: reference '\(reference.name)' names \(reference.subject) version \(reference.version), which does not exist")
                }
                return (200, ["id": Self.register(&store, subject: segments[1], text: text, type: type, references: references)])
            case ("GET", 4) where segments[0] == "subjects" && segments[2] == "versions":
                guard let ids = store.subjects[segments[1]], !ids.isEmpty else {
                    return error(404, 40401, "Subject '\(segments[1])' not found.")
                }
                let version: Int
                if segments[3] == "latest" { version = ids.count } else if let number = Int(segments[3]), number >= 1, number <= ids.count {
                    version = number
                } else {
                    return error(404, 40402, "Version \(segments[3]) not found.")
                }
                let id = ids[version - 1]
                let schema = store.schemas[id - 1]
                var object: [String: Any] = ["subject": segments[1], "id": id, "version": version, "schema": schema.text]
                if schema.type != "AVRO" { object["schemaType"] = schema.type }
                if !schema.references.isEmpty { object["references"] = Self.json(schema.references) }
                return (200, object)
            default:
                return error(404, 404, "HTTP 404 Not Found")
            }
        }
    }
}
