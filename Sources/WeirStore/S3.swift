import Foundation
import Synchronization
import WeirControl

/// `s3://bucket/prefix`: where a bundle's files sit in an S3-compatible store.
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    public let bucket: String
    /// The key prefix without a trailing `/` (may be empty: the bucket's root).
    public let prefix: String

    public init(_ text: String) throws(StoreError) {
        guard text.hasPrefix("s3://") else { throw StoreError(.invalidLocation, "'\(text)' is not an s3:// location") }
        let rest = text.dropFirst(5)
        let bucket = rest.prefix { $0 != "/" }
        guard !bucket.isEmpty, bucket.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" }) else {
            throw StoreError(.invalidLocation, "'\(text)': give s3://bucket/prefix with a valid bucket name")
        }
        var prefix = String(rest.dropFirst(bucket.count).drop { $0 == "/" })
        while prefix.hasSuffix("/") { prefix.removeLast() }
        self.bucket = String(bucket)
        self.prefix = prefix
    }

    /// The key of `name` under the prefix.
    public func key(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix)/\(name)" }

    public var description: String { "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)") }
}

/// How to reach S3, from the standard AWS environment: `AWS_REGION`/`AWS_DEFAULT_REGION` (or the
/// profile's region), `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` (MinIO, Ceph, a test server),
/// `AWS_CA_BUNDLE`; path-style addressing by default when an endpoint is given.
public struct S3Configuration: Sendable {
    public var region: String
    /// `scheme://host[:port]` of a custom endpoint; nil: AWS (`https://bucket.s3.region.amazonaws.com`).
    public var endpoint: String?
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    public var pathStyle: Bool
    public var caFile: String?
    public var timeoutMs = 60_000
    public let credentials: CredentialChain

    /// `region` and `pathStyle` override the environment when given.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, region: String? = nil, pathStyle: Bool? = nil) {
        let profile = AWSProfile(environment: environment)
        self.region = region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? profile.config["region"] ?? "us-east-1"
        var endpoint = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"]
        while endpoint?.hasSuffix("/") == true { endpoint?.removeLast() }
        self.endpoint = endpoint.flatMap { $0.isEmpty ? nil : $0 }
        self.pathStyle = pathStyle ?? (self.endpoint != nil)
        caFile = environment["AWS_CA_BUNDLE"]
        credentials = CredentialChain(environment: environment, region: self.region, profile: profile, caFile: caFile)
    }
}

/// A small S3 client: GET and PUT of whole objects, signed with SigV4.
public struct S3Client: Sendable {
    public let configuration: S3Configuration

    public init(configuration: S3Configuration) { self.configuration = configuration }

    /// The URL, Host header and encoded path of an object.
    func address(bucket: String, key: String) -> (url: String, host: String, path: String) {
        let encodedKey = SigV4Request.encode(key, keepingSlashes: true)
        if let endpoint = configuration.endpoint {
            let host = endpoint.components(separatedBy: "://").last ?? endpoint
            if configuration.pathStyle {
                let path = "/\(SigV4Request.encode(bucket, keepingSlashes: false))/\(encodedKey)"
                return (endpoint + path, host, path)
            }
            let scheme = endpoint.components(separatedBy: "://").first ?? "https"
            return ("\(scheme)://\(bucket).\(host)/\(encodedKey)", "\(bucket).\(host)", "/\(encodedKey)")
        }
        let host = configuration.pathStyle ? "s3.\(configuration.region).amazonaws.com" : "\(bucket).s3.\(configuration.region).amazonaws.com"
        let path = configuration.pathStyle ? "/\(bucket)/\(encodedKey)" : "/\(encodedKey)"
        return ("https://\(host)\(path)", host, path)
    }

    /// The whole object, refusing one over `maxBytes`.
    public func get(bucket: String, key: String, maxBytes: Int) -> Result<Data, StoreError> {
        request("GET", bucket: bucket, key: key, body: Data(), maxBytes: maxBytes)
    }

    /// Writes the object (replacing any).
    public func put(bucket: String, key: String, body: Data) -> Result<Void, StoreError> {
        request("PUT", bucket: bucket, key: key, body: body, maxBytes: 1 << 20).map { _ in () }
    }

    /// Creates `bucket` (tests and first-time setup; an existing bucket of yours is fine).
    public func createBucket(_ bucket: String) -> Result<Void, StoreError> {
        request("PUT", bucket: bucket, key: nil, body: Data(), maxBytes: 1 << 20).map { _ in () }
    }

    private func request(_ method: String, bucket: String, key: String?, body: Data, maxBytes: Int) -> Result<Data, StoreError> {
        let credentials: AWSCredentials
        switch configuration.credentials.current() {
        case .failure(let error): return .failure(error)
        case .success(let value): credentials = value
        }
        var (url, host, path) = address(bucket: bucket, key: key ?? "")
        if key == nil && configuration.pathStyle {
            // The bucket itself: `/bucket`, not `/bucket/`.
            url.removeLast()
            path.removeLast()
        }
        let signer = SigV4Request(method: method, host: host, path: path, payloadSHA256: sha256Hex(body))
        var headers = signer.signedHeaders(credentials: credentials, region: configuration.region, service: "s3", date: Date())
        // Without it libcurl says form data, which some servers parse away.
        if method == "PUT" { headers.append("Content-Type: application/octet-stream") }
        let what = "\(method) s3://\(bucket)/\(key ?? "")"
        switch HTTPTransport.perform(method, url, headers: headers, body: body, maxBodyBytes: maxBytes,
                                     timeoutMs: configuration.timeoutMs, caFile: configuration.caFile) {
        case .failure(let error): return .failure(StoreError(error.kind, "\(what): \(error.description)"))
        case .success(let answer):
            guard (200..<300).contains(answer.status) else { return .failure(HTTPTransport.statusError(answer, what)) }
            return .success(answer.body)
        }
    }
}

/// The shared config and credentials files' section for `AWS_PROFILE` (default `default`).
struct AWSProfile: Sendable {
    let name: String
    /// From `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`).
    let credentials: [String: String]
    /// From `~/.aws/config` (or `AWS_CONFIG_FILE`), section `[profile NAME]` (`[default]`).
    let config: [String: String]

    init(environment: [String: String]) {
        name = environment["AWS_PROFILE"] ?? environment["AWS_DEFAULT_PROFILE"] ?? "default"
        let home = environment["HOME"] ?? NSHomeDirectory()
        credentials = Self.section(name, in: environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "\(home)/.aws/credentials")
        config = Self.section(name == "default" ? "default" : "profile \(name)", in: environment["AWS_CONFIG_FILE"] ?? "\(home)/.aws/config")
    }

    /// `name = value` lines of `[section]` in an INI file (empty when absent or unreadable).
    static func section(_ wanted: String, in path: String) -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var values = [String: String]()
        var inside = false
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                inside = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces) == wanted
                continue
            }
            guard inside, let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespaces)] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return values
    }
}

/// Finds credentials the way the AWS SDKs do, in order: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (`AWS_SESSION_TOKEN`), a web-identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`,
/// as EKS sets them: exchanged at STS and renewed before they expire), then the profile.
public final class CredentialChain: Sendable {
    private let environment: [String: String]
    private let region: String
    private let profile: AWSProfile
    private let caFile: String?
    private let cached = Mutex<AWSCredentials?>(nil)

    init(environment: [String: String], region: String, profile: AWSProfile, caFile: String?) {
        self.environment = environment
        self.region = region
        self.profile = profile
        self.caFile = caFile
    }

    /// Where credentials come from, for a start-up log line (never the secret itself).
    public var source: String {
        if environment["AWS_ACCESS_KEY_ID"] != nil { return "environment" }
        if environment["AWS_WEB_IDENTITY_TOKEN_FILE"] != nil { return "web identity" }
        if profile.credentials["aws_access_key_id"] != nil || profile.config["aws_access_key_id"] != nil { return "profile \(profile.name)" }
        return "none"
    }

    /// Credentials valid for at least five more minutes.
    public func current() -> Result<AWSCredentials, StoreError> {
        if let id = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"], !id.isEmpty {
            return .success(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"]))
        }
        if let tokenFile = environment["AWS_WEB_IDENTITY_TOKEN_FILE"] {
            if let held = cached.withLock({ $0 }), let expiration = held.expiration, expiration.timeIntervalSinceNow > 300 {
                return .success(held)
            }
            let fetched = assumeRoleWithWebIdentity(tokenFile: tokenFile)
            if case .success(let value) = fetched { cached.withLock { $0 = value } }
            return fetched
        }
        for section in [profile.credentials, profile.config] {
            if let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] {
                return .success(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: section["aws_session_token"]))
            }
        }
        return .failure(StoreError(.refused, "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or a profile (AWS_PROFILE) in ~/.aws/credentials"))
    }

    /// STS AssumeRoleWithWebIdentity (unsigned: the token is the proof).
    private func assumeRoleWithWebIdentity(tokenFile: String) -> Result<AWSCredentials, StoreError> {
        guard let roleARN = environment["AWS_ROLE_ARN"], !roleARN.isEmpty else {
            return .failure(StoreError(.refused, "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume"))
        }
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            return .failure(StoreError(.refused, "AWS_WEB_IDENTITY_TOKEN_FILE: cannot read a token from \(tokenFile)"))
        }
        var endpoint = environment["AWS_ENDPOINT_URL_STS"] ?? environment["AWS_ENDPOINT_URL"] ?? "https://sts.\(region).amazonaws.com"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        let session = environment["AWS_ROLE_SESSION_NAME"] ?? "weir-\(getpid())"
        let query = [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
                     ("RoleSessionName", session), ("WebIdentityToken", token), ("DurationSeconds", "3600")]
            .map { "\($0.0)=\(SigV4Request.encode($0.1, keepingSlashes: false))" }.joined(separator: "&")
        let body = Data(query.utf8)
        let answer: HTTPAnswer
        switch HTTPTransport.perform("POST", endpoint + "/", headers: ["Content-Type: application/x-www-form-urlencoded"], body: body,
                                     maxBodyBytes: 1 << 20, timeoutMs: 30_000, caFile: caFile) {
        case .failure(let error): return .failure(StoreError(.unavailable, "STS AssumeRoleWithWebIdentity: \(error.description)"))
        case .success(let value): answer = value
        }
        guard (200..<300).contains(answer.status) else {
            return .failure(HTTPTransport.statusError(answer, "STS AssumeRoleWithWebIdentity for \(roleARN)"))
        }
        let xml = String(decoding: answer.body, as: UTF8.self)
        func element(_ name: String) -> String? {
            guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
            return String(xml[open.upperBound..<close.lowerBound])
        }
        guard let id = element("AccessKeyId"), let secret = element("SecretAccessKey") else {
            return .failure(StoreError(.refused, "STS AssumeRoleWithWebIdentity answered without credentials"))
        }
        let expiration = element("Expiration").flatMap { ISO8601DateFormatter().date(from: $0.replacingOccurrences(of: #"\.\d+"#, with: "", options: .regularExpression)) }
        return .success(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: element("SessionToken"),
                                       expiration: expiration ?? Date().addingTimeInterval(900)))
    }
}
