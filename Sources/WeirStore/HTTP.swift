import CWeirHTTP
import Foundation

/// Why a bundle store could not give what was asked. The kind decides what the worker does: an
/// unavailable store is retried with backoff, anything else is a refusal that waiting will not fix.
public struct StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The network, a timeout, a 5xx or 429 answer, an object not there (yet): worth retrying.
        case unavailable
        /// Credentials missing or refused (401/403), or another 4xx: fix the setup.
        case refused
        /// The location itself is malformed or unsupported.
        case invalidLocation
    }

    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// One HTTP answer: its status and body.
struct HTTPAnswer {
    let status: Int
    let body: Data
}

/// Blocking HTTP requests through libcurl (CWeirHTTP), for the stores.
enum HTTPTransport {
    /// Performs one request; a transport failure is `unavailable`. Headers are "Name: value".
    static func perform(_ method: String, _ url: String, headers: [String], body: Data = Data(),
                        maxBodyBytes: Int, timeoutMs: Int, caFile: String? = nil) -> Result<HTTPAnswer, StoreError> {
        var response = weir_http_response()
        defer { weir_http_response_free(&response) }
        let copies = ([url, method, caFile] + headers).map { $0.flatMap { strdup($0) } }
        defer { copies.forEach { free($0) } }
        let headerPointers: [UnsafePointer<CChar>?] = copies.dropFirst(3).map { $0.map { UnsafePointer($0) } }
        let result: Int32 = body.withUnsafeBytes { bodyBytes in
            headerPointers.withUnsafeBufferPointer { headerList in
                var request = weir_http_request(
                    url: copies[0], method: copies[1],
                    body: bodyBytes.baseAddress?.assumingMemoryBound(to: CChar.self), body_length: bodyBytes.count,
                    user_password: nil, ca_file: copies[2].map { UnsafePointer($0) }, cert_file: nil, key_file: nil,
                    connect_timeout_ms: min(timeoutMs, 5_000), timeout_ms: timeoutMs,
                    headers: headerList.baseAddress, header_count: headerList.count, max_body_bytes: maxBodyBytes)
                return weir_http_perform(&request, &response)
            }
        }
        if result != 0 {
            let message = withUnsafeBytes(of: response.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            // A server certificate that cannot be trusted (60), a bad client certificate (58) or an
            // unreadable CA file (77) will not fix itself; other transport failures may.
            let kind: StoreError.Kind = [58, 60, 77].contains(result) ? .refused : .unavailable
            return .failure(StoreError(kind, "\(method) \(redacted(url)): \(message)"))
        }
        let data = response.body.map { Data(bytes: $0, count: response.body_length) } ?? Data()
        return .success(HTTPAnswer(status: response.status, body: data))
    }

    /// The error a non-2xx status means: 5xx, 429, 408 and 404 (an object not uploaded yet) are
    /// worth retrying; other statuses are refusals. `detail` is a short part of the body.
    static func statusError(_ answer: HTTPAnswer, _ what: String) -> StoreError {
        let detail = String(decoding: answer.body.prefix(300), as: UTF8.self)
            .replacingOccurrences(of: "\n", with: " ")
        let text = "\(what) answered \(answer.status)" + (detail.isEmpty ? "" : ": \(detail)")
        switch answer.status {
        case 404, 408, 429, 500...599: return StoreError(.unavailable, text)
        default: return StoreError(.refused, text)
        }
    }

    /// `url` without its query (a presigned URL's query carries credentials).
    static func redacted(_ url: String) -> String {
        guard let question = url.firstIndex(of: "?") else { return url }
        return String(url[..<question]) + "?..."
    }
}
