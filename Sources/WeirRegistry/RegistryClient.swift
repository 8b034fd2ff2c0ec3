import CWeirHTTP
import Foundation

/// Where the Schema Registry is and how to reach it (`schema-registry.*` settings).
public struct RegistryConfiguration: Sendable, Equatable {
    /// Base URL, `http://host:port` or `https://...`, without credentials.
    public var url: String
    /// `user:password` for HTTP basic authentication: a secret, never logged or shown.
    public var basicAuth: String?
    /// PEM files: the CA to trust, and a client certificate with its key (mutual TLS).
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// Longest one request may take, connection included.
    public var timeoutMs = 5_000

    public init(url: String, basicAuth: String? = nil, caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
                timeoutMs: Int = 5_000) {
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.basicAuth = basicAuth
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.timeoutMs = timeoutMs
    }
}

/// A registry call that did not give what was asked.
public enum RegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The registry answered that the schema or subject does not exist (404 with its error code,
    /// e.g. 40403 schema not found, 40401 subject not found). Permanent.
    case notFound(errorCode: Int, message: String)
    /// No usable answer: connection refused, timeout, TLS failure, 5xx, 429. Worth retrying.
    case unavailable(String)
    /// The registry refused the request (401/403: credentials; 409/422: an incompatible or invalid
    /// schema). Not fixed by retrying the same request, though an operator may fix the cause.
    case refused(status: Int, errorCode: Int?, message: String)
    /// The answer was not what the REST API documents.
    case badAnswer(String)

    public var description: String {
        switch self {
        case .notFound(let code, let message): return "not found (error \(code)): \(message)"
        case .unavailable(let why): return "unavailable: \(why)"
        case .refused(let status, let code, let message):
            let hint = status == 401 || status == 403 ? " (check schema-registry.basic-auth)" : ""
            return "refused with HTTP \(status)\(code.map { " (error \($0))" } ?? ""): \(message)\(hint)"
        case .badAnswer(let why): return "unexpected answer: \(why)"
        }
    }
}

/// Another schema a schema uses: the name it is known by inside the schema (an Avro type's full
/// name, a Protobuf import path), and where the registry holds it.
public struct SchemaReference: Sendable, Equatable {
    public let name: String
    public let subject: String
    public let version: Int

    public init(name: String, subject: String, version: Int) {
        self.name = name
        self.subject = subject
        self.version = version
    }

    static func list(_ json: Any?) -> [SchemaReference] {
        ((json as? [[String: Any]]) ?? []).compactMap { entry in
            guard let name = entry["name"] as? String, let subject = entry["subject"] as? String, let version = entry["version"] as? Int else {
                return nil
            }
            return SchemaReference(name: name, subject: subject, version: version)
        }
    }
}

/// A schema as the registry holds it.
public struct RegisteredSchema: Sendable, Equatable {
    /// `AVRO` (the registry omits the type for Avro), `PROTOBUF` or `JSON`.
    public let schemaType: String
    public let text: String
    /// The schemas it uses, each registered under its own subject.
    public let references: [SchemaReference]

    init(_ object: [String: Any], text: String) {
        schemaType = (object["schemaType"] as? String) ?? "AVRO"
        self.text = text
        references = SchemaReference.list(object["references"])
    }
}

/// A blocking client for the Confluent Schema Registry REST API: the calls Weir uses. Each call
/// is one HTTP request with bounded connect and total timeouts; retrying is the caller's choice.
public final class SchemaRegistryClient: Sendable {
    public let configuration: RegistryConfiguration

    public init(_ configuration: RegistryConfiguration) { self.configuration = configuration }

    /// `GET /schemas/ids/{id}`: the writer schema of a framed value.
    public func schema(id: UInt32) throws(RegistryError) -> RegisteredSchema {
        let object = try call("GET", "/schemas/ids/\(id)")
        guard let text = object["schema"] as? String else { throw .badAnswer("no \"schema\" in the answer for id \(id)") }
        return RegisteredSchema(object, text: text)
    }

    /// `GET /subjects/{subject}/versions/{version}`: a referenced schema.
    public func schema(subject: String, version: Int) throws(RegistryError) -> RegisteredSchema {
        // Version -1 is the latest, as the registry's references may say.
        let object = try call("GET", "/subjects/\(Self.escape(subject))/versions/\(version < 1 ? "latest" : String(version))")
        guard let text = object["schema"] as? String else { throw .badAnswer("no \"schema\" in version \(version) of '\(subject)'") }
        return RegisteredSchema(object, text: text)
    }

    /// `POST /subjects/{subject}/versions`: registers a schema (or finds it registered); its id.
    public func register(subject: String, schema: String, schemaType: String = "AVRO",
                         references: [SchemaReference] = []) throws(RegistryError) -> UInt32 {
        var body: [String: Any] = ["schema": schema]
        if schemaType != "AVRO" { body["schemaType"] = schemaType }
        if !references.isEmpty {
            body["references"] = references.map { ["name": $0.name, "subject": $0.subject, "version": $0.version] as [String: Any] }
        }
        let data = (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
        let object = try call("POST", "/subjects/\(Self.escape(subject))/versions", body: data)
        guard let id = object["id"] as? Int, let id32 = UInt32(exactly: id) else { throw .badAnswer("no \"id\" in the answer to a registration") }
        return id32
    }

    /// `GET /subjects/{subject}/versions/latest`: the newest schema of a subject, with its id.
    public func latest(subject: String) throws(RegistryError) -> (id: UInt32, version: Int, schema: RegisteredSchema) {
        let object = try call("GET", "/subjects/\(Self.escape(subject))/versions/latest")
        guard let id = object["id"] as? Int, let id32 = UInt32(exactly: id), let version = object["version"] as? Int,
              let text = object["schema"] as? String else { throw .badAnswer("the latest version of '\(subject)' lacks id, version or schema") }
        return (id32, version, RegisteredSchema(object, text: text))
    }

    /// The schemas `schema` references, and theirs, in the order they must be read (each before
    /// the schemas that use it): their names and texts. Bounded at 64 schemas, 16 deep.
    public func dependencies(of schema: RegisteredSchema) throws(RegistryError) -> [(name: String, text: String)] {
        var ordered: [(name: String, text: String)] = []
        var seen = Set<String>()
        func visit(_ references: [SchemaReference], depth: Int) throws(RegistryError) {
            guard depth < 16 else { throw .badAnswer("schema references nested deeper than 16") }
            for reference in references where seen.insert("\(reference.subject)@\(reference.version)").inserted {
                guard seen.count <= 64 else { throw .badAnswer("more than 64 referenced schemas") }
                let referenced = try self.schema(subject: reference.subject, version: reference.version)
                try visit(referenced.references, depth: depth + 1)
                ordered.append((reference.name, referenced.text))
            }
        }
        try visit(schema.references, depth: 0)
        return ordered
    }

    static func escape(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? component
    }

    /// One request; the decoded JSON object of a 2xx answer, or the error its status means.
    private func call(_ method: String, _ path: String, body: Data = Data()) throws(RegistryError) -> [String: Any] {
        let config = configuration
        var response = weir_http_response()
        let url = config.url + path
        let result: Int32 = body.withUnsafeBytes { bodyBytes in
            withCStrings([url, method, config.basicAuth, config.caFile, config.certFile, config.keyFile]) { strings in
                var request = weir_http_request(
                    url: strings[0], method: strings[1],
                    body: bodyBytes.baseAddress?.assumingMemoryBound(to: CChar.self), body_length: bodyBytes.count,
                    user_password: strings[2], ca_file: strings[3], cert_file: strings[4], key_file: strings[5],
                    connect_timeout_ms: min(config.timeoutMs, 2_000), timeout_ms: config.timeoutMs,
                    headers: nil, header_count: 0, max_body_bytes: 0)
                return weir_http_perform(&request, &response)
            }
        }
        defer { weir_http_response_free(&response) }
        if result != 0 {
            let message = withUnsafeBytes(of: response.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw .unavailable("\(method) \(config.url)\(path): \(message)")
        }
        let data = response.body.map { Data(bytes: $0, count: response.body_length) } ?? Data()
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let status = response.status
        switch status {
        case 200..<300:
            guard let object else { throw .badAnswer("\(method) \(path) answered \(status) without a JSON object") }
            return object
        default:
            let code = object?["error_code"] as? Int
            let message = (object?["message"] as? String) ?? String(decoding: data.prefix(200), as: UTF8.self)
            // Only the registry's own "does not exist" codes: a bare 404 is a wrong URL, not a missing schema.
            if status == 404, let code, [40401, 40402, 40403].contains(code) { throw .notFound(errorCode: code, message: message) }
            if status == 408 || status == 429 || status >= 500 { throw .unavailable("\(method) \(config.url)\(path) answered \(status): \(message)") }
            throw .refused(status: Int(status), errorCode: code, message: message)
        }
    }
}

/// C copies of `texts` (nil stays nil) for the length of `body`.
private func withCStrings<R>(_ texts: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = texts.map { $0.flatMap { strdup($0) } }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
