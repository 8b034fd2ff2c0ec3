import COpenSSL
import Foundation

/// SHA-256 of `bytes` as 64 lowercase hex digits: how bundles name their files and themselves.
public func sha256Hex(_ bytes: some ContiguousBytes) -> String {
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var size: UInt32 = 0
    bytes.withUnsafeBytes { raw in
        _ = EVP_Digest(raw.baseAddress, raw.count, &digest, &size, EVP_sha256(), nil)
    }
    return hex(digest.prefix(Int(size)))
}

/// HMAC-SHA256 of `message` under `key`, as lowercase hex.
public func hmacSHA256Hex(key: some ContiguousBytes, message: some ContiguousBytes) -> String {
    hex(hmacSHA256(key: key, message: message))
}

/// HMAC-SHA256 of `message` under `key`: 32 bytes.
public func hmacSHA256(key: some ContiguousBytes, message: some ContiguousBytes) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var size: UInt32 = 0
    key.withUnsafeBytes { keyBytes in
        message.withUnsafeBytes { messageBytes in
            _ = HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                     messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count, &digest, &size)
        }
    }
    return Array(digest.prefix(Int(size)))
}

/// `bytes` as lowercase hex.
public func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}
