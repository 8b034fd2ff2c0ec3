import CJansson
import WeirCodec

/// What the reference decided: the feature values, or the dead-letter code.
public enum ReferenceOutcome: Equatable, Sendable {
    case accepted([Float])
    case rejected(DecodeFailure.Code)
    /// jansson cannot say: RFC 8259 allows `\u0000` in an object key, jansson refuses any.
    case undecided(String)
}

/// The event semantics of `EventDecoder` written over jansson's DOM parse: the independent
/// reference that the differential tests and the decoder fuzzer compare Weir's single-pass decoder with.
public func referenceDecode(_ bytes: [UInt8], _ schema: FeatureSchema) -> ReferenceOutcome {
    if bytes.count > schema.maxBytes { return .rejected(.tooLarge) }
    // A raw NUL byte cannot be in valid JSON (outside strings it is not a token; inside, control
    // characters must be escaped), but jansson's reader stops at one and accepts what came before
    // it (`{"a":1<NUL>}` parses as `{"a":1}`); the fuzzer found this. RFC 8259 is the reference.
    if bytes.contains(0) { return .rejected(.malformedJSON) }
    var error = json_error_t()
    let flags = JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL
    guard let root = bytes.withUnsafeBufferPointer({ json_loadb(UnsafeRawPointer($0.baseAddress).map { $0.assumingMemoryBound(to: CChar.self) }, $0.count, Int(flags), &error) }) else {
        let text = withUnsafeBytes(of: error.text) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if json_error_code(&error) == json_error_null_byte_in_key { return .undecided(text) }
        return .rejected(.malformedJSON)
    }
    defer { json_decref(root) }
    guard json_is_object(root) else { return .rejected(.malformedJSON) }
    var container: UnsafeMutablePointer<json_t>? = root
    for (level, key) in schema.featuresPath.enumerated() {
        guard let current = container, json_is_object(current) else { container = nil; break }
        container = json_object_get(current, key)
        if let next = container, level < schema.featuresPath.count - 1, !json_is_object(next) { container = nil }
    }
    if let c = container, !json_is_object(c) && !json_is_array(c) { container = nil }
    var values = [Float](repeating: 0, count: schema.names.count)
    for (index, name) in schema.names.enumerated() {
        var value: UnsafeMutablePointer<json_t>? = nil
        if let c = container {
            value = json_is_object(c) ? json_object_get(c, name) : (index < json_array_size(c) ? json_array_get(c, index) : nil)
        }
        if value == nil || json_is_null(value) {
            guard let fallback = schema.defaults[index] else { return .rejected(.missingFeature) }
            values[index] = fallback
        } else if json_is_real(value) {
            let single = Float(json_real_value(value))
            guard single.isFinite else { return .rejected(.notANumber) }
            values[index] = single
        } else {
            return .rejected(.notANumber)
        }
    }
    return .accepted(values)
}

// jansson's type checks are macros Swift cannot import.
private func json_is_object(_ j: UnsafeMutablePointer<json_t>?) -> Bool { j?.pointee.type == JSON_OBJECT }
private func json_is_array(_ j: UnsafeMutablePointer<json_t>?) -> Bool { j?.pointee.type == JSON_ARRAY }
private func json_is_null(_ j: UnsafeMutablePointer<json_t>?) -> Bool { j?.pointee.type == JSON_NULL }
private func json_is_real(_ j: UnsafeMutablePointer<json_t>?) -> Bool { j?.pointee.type == JSON_REAL }
private func json_decref(_ j: UnsafeMutablePointer<json_t>) {
    j.pointee.refcount -= 1
    if j.pointee.refcount == 0 { json_delete(j) }
}
