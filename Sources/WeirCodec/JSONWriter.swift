#if canImport(Glibc)
import Glibc
#endif

/// Appends JSON to a reused byte buffer: prediction records are written with no allocation per
/// event once the buffer has grown to its working size. One writer per thread.
public final class JSONWriter: ByteWriter {
    public init(capacity: Int = 1024) { super.init(reserving: capacity) }

    /// Appends a constant fragment.
    public func raw(_ fragment: StaticString) {
        raw(UnsafeRawBufferPointer(start: fragment.utf8Start, count: fragment.utf8CodeUnitCount))
    }

    /// Appends prepared bytes (e.g. a quoted name computed once).
    public func raw(_ fragment: [UInt8]) {
        fragment.withUnsafeBytes { raw($0) }
    }

    /// A signed integer in decimal.
    public func integer(_ value: Int64) {
        if value < 0 {
            raw(UInt8(ascii: "-"))
            unsigned(value == Int64.min ? UInt64(Int64.max) + 1 : UInt64(-value))
        } else {
            unsigned(UInt64(value))
        }
    }

    /// An unsigned integer in decimal.
    public func unsigned(_ value: UInt64) {
        reserve(20)
        var digits = 1
        var probe = value
        while probe >= 10 { probe /= 10; digits += 1 }
        var rest = value
        var position = count + digits
        repeat {
            position -= 1
            storage[position] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        count += digits
    }

    /// A finite float in its shortest round-trip form (`0.25`, `1e-05`; whole numbers as integers).
    /// Non-finite values are not JSON: callers reject them first.
    public func float(_ value: Float) {
        precondition(value.isFinite, "JSON has no NaN or Infinity")
        if value == value.rounded(.towardZero), abs(value) < 1e7 {
            integer(Int64(value))
            return
        }
        // Float's description is at most 15 UTF-8 bytes: a small string, not a heap allocation.
        var text = value.description
        text.withUTF8 { raw(UnsafeRawBufferPointer($0)) }
    }

    /// A double in its shortest round-trip form; non-finite values are written as null.
    public func double(_ value: Double) {
        guard value.isFinite else { raw("null"); return }
        if value == value.rounded(.towardZero), abs(value) < 1e15 {
            integer(Int64(value))
            return
        }
        var text = value.description
        text.withUTF8 { raw(UnsafeRawBufferPointer($0)) }
    }

    /// A JSON string with escapes.
    public func string(_ value: UnsafeRawBufferPointer) {
        raw(UInt8(ascii: "\""))
        for byte in value {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): raw(UInt8(ascii: "\\")); raw(byte)
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0..<0x20:
                let hexDigits: StaticString = "0123456789abcdef"
                raw("\\u00")
                raw(hexDigits.utf8Start[Int(byte >> 4)])
                raw(hexDigits.utf8Start[Int(byte & 15)])
            default: raw(byte)
            }
        }
        raw(UInt8(ascii: "\""))
    }

    /// A JSON string from Swift text.
    public func string(_ value: String) {
        var value = value
        value.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }
}
