import Foundation
import WeirControl

/// AWS credentials: an access key pair and, for temporary ones, a session token.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials stop working (nil: never).
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// Never the secret: only the key id, so a log line cannot leak it.
    public var description: String { "AWSCredentials(\(accessKeyID), secret redacted)" }
}

/// AWS Signature Version 4 for one request (S3's rules: the path is encoded once, the payload's
/// sha256 travels in `x-amz-content-sha256`). Checked against botocore's signer
/// (scripts/make-sigv4-goldens.py).
public struct SigV4Request: Sendable {
    public var method: String
    /// `host` or `host:port`, exactly as the Host header carries it.
    public var host: String
    /// The path as sent (already percent-encoded).
    public var path: String
    /// The query as sent (`name=value&...`, encoded), or empty.
    public var query: String
    /// Headers to sign besides host and the x-amz ones this adds, lowercase names.
    public var headers: [String: String]
    public var payloadSHA256: String

    public init(method: String, host: String, path: String, query: String = "", headers: [String: String] = [:], payloadSHA256: String) {
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadSHA256 = payloadSHA256
    }

    /// The headers to send ("Name: value"), `Authorization` included, for `date` (UTC).
    public func signedHeaders(credentials: AWSCredentials, region: String, service: String, date: Date) -> [String] {
        let (amzDate, day) = Self.stamps(date)
        var all = headers
        all["host"] = host
        all["x-amz-date"] = amzDate
        all["x-amz-content-sha256"] = payloadSHA256
        if let token = credentials.sessionToken { all["x-amz-security-token"] = token }
        let names = all.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(all[$0]!.trimmingCharacters(in: .whitespaces))\n" }.joined()
        let signedNames = names.joined(separator: ";")
        let canonicalQuery = query.split(separator: "&").map(String.init).sorted().joined(separator: "&")
        let canonicalRequest = [method, path, canonicalQuery, canonicalHeaders, signedNames, payloadSHA256].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(Array(canonicalRequest.utf8))].joined(separator: "\n")
        var key = hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), message: Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = hmacSHA256(key: key, message: Array(part.utf8)) }
        let signature = hex(hmacSHA256(key: key, message: Array(stringToSign.utf8)))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"
        return names.filter { $0 != "host" }.map { "\($0): \(all[$0]!)" } + ["Authorization: \(authorization)"]
    }

    /// `yyyyMMdd'T'HHmmss'Z'` and `yyyyMMdd` in UTC.
    static func stamps(_ date: Date) -> (String, String) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let day = "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))"
        return ("\(day)T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z", day)
    }

    /// Percent-encodes a path or query component as SigV4 wants: everything but unreserved
    /// characters (and `/` when `keepingSlashes`).
    public static func encode(_ text: String, keepingSlashes: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            case UInt8(ascii: "/") where keepingSlashes:
                out.append("/")
            default:
                let digits = Array("0123456789ABCDEF")
                out += "%\(digits[Int(byte >> 4)])\(digits[Int(byte & 15)])"
            }
        }
        return out
    }
}
