/// The parser's strings: keys, ids and skipped values, with escapes and UTF-8 checked as jansson does.
extension Parser {
    // MARK: strings

    /// Reads a string (p at the opening quote), validating escapes and UTF-8. Returns its bytes:
    /// a slice of the payload, or the decoder's scratch when it had escapes. Nil after reporting.
    mutating func readString() -> UnsafeBufferPointer<UInt8>? {
        p += 1
        let start = p
        // Sixteen bytes at a time while there is nothing but plain ASCII. As signed bytes, control
        // characters (0...31) and non-ASCII bytes (128...255, negative) are exactly those below 32:
        // one signed compare finds both.
        let quotes = SIMD16<Int8>(repeating: Int8(bitPattern: jsonQuote)), backslashes = SIMD16<Int8>(repeating: Int8(bitPattern: jsonBackslash))
        let space = SIMD16<Int8>(repeating: 0x20)
        while end - p >= 16 {
            let chunk = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Int8>.self)
            let special = (chunk .== quotes) .| (chunk .== backslashes) .| (chunk .< space)
            // The mask's lanes are 0 or -1: two 64-bit halves test it faster than `any`, which
            // reduces lane by lane, and their trailing zeros give the first special byte.
            let halves = unsafeBitCast(special, to: SIMD2<UInt64>.self)
            if halves[0] | halves[1] != 0 {
                p += halves[0] != 0 ? halves[0].trailingZeroBitCount >> 3 : 8 + halves[1].trailingZeroBitCount >> 3
                // The closing quote (a short key ends in its first chunk) ends the string here; an
                // escape, a control or a non-ASCII byte goes on byte by byte from it.
                if p.pointee == jsonQuote {
                    let slice = UnsafeBufferPointer(start: start, count: p - start)
                    p += 1
                    return slice
                }
                break
            }
            p += 16
        }
        // Byte by byte: no escapes, ASCII or valid UTF-8.
        while p < end {
            let c = p.pointee
            if c == jsonQuote {
                let slice = UnsafeBufferPointer(start: start, count: p - start)
                p += 1
                return slice
            }
            if c == jsonBackslash { break }
            if c < 0x20 { malformed("control character in a string"); return nil }
            if c >= 0x80 { if !skipUTF8() { return nil } } else { p += 1 }
        }
        guard p < end else { malformed("unterminated string"); return nil }
        return readEscapedString(from: start)
    }

    /// The rest of a string that has escapes (p at the first backslash): decoded into the
    /// decoder's scratch. Kept out of line so the common path stays small.
    @inline(never)
    private mutating func readEscapedString(from start: UnsafePointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        // Slow path: decode into scratch.
        var ok = true
        var failureText = ""
        let prefix = UnsafeBufferPointer(start: start, count: p - start)
        var cursor = p
        let limit = end
        let result: UnsafeBufferPointer<UInt8>? = decoder.withKeyScratch { scratch in
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: prefix)
            while cursor < limit {
                let c = cursor.pointee
                if c == jsonQuote { cursor += 1; return scratch.withUnsafeBufferPointer { $0 } }
                if c < 0x20 { ok = false; failureText = "control character in a string"; return nil }
                if c != jsonBackslash { scratch.append(c); cursor += 1; continue }
                cursor += 1
                guard cursor < limit else { break }
                let e = cursor.pointee
                cursor += 1
                switch e {
                case jsonQuote, jsonBackslash, UInt8(ascii: "/"): scratch.append(e)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4(&cursor, limit) else { ok = false; failureText = "invalid \\u escape"; return nil }
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard limit - cursor >= 6, cursor[0] == jsonBackslash, cursor[1] == UInt8(ascii: "u") else {
                            ok = false; failureText = "unpaired surrogate in \\u escape"; return nil
                        }
                        cursor += 2
                        guard let low = hex4(&cursor, limit), (0xDC00...0xDFFF).contains(low) else {
                            ok = false; failureText = "unpaired surrogate in \\u escape"; return nil
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        ok = false; failureText = "unpaired surrogate in \\u escape"; return nil
                    }
                    for unit in Unicode.Scalar(scalar)!.utf8 { scratch.append(unit) }
                default:
                    ok = false; failureText = "invalid escape"; return nil
                }
            }
            ok = false
            failureText = "unterminated string"
            return nil
        }
        if !ok || result == nil {
            p = cursor
            malformed(failureText.isEmpty ? "invalid string" : failureText)
            return nil
        }
        // Validate raw UTF-8 of the escaped string's non-escape bytes.
        let decodedEnd = cursor
        var check = p
        while check < decodedEnd {
            if check.pointee >= 0x80 {
                p = check
                if !skipUTF8() { return nil }
                check = p
            } else {
                check += 1
            }
        }
        p = decodedEnd
        return result
    }

    private func hex4(_ cursor: inout UnsafePointer<UInt8>, _ limit: UnsafePointer<UInt8>) -> UInt32? {
        guard limit - cursor >= 4 else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = cursor.pointee
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - 55)
            default: return nil
            }
            value = value << 4 | digit
            cursor += 1
        }
        return value
    }

    /// Skips one UTF-8 encoded scalar at p (first byte ≥ 0x80), rejecting overlong forms,
    /// surrogates and values beyond U+10FFFF.
    private mutating func skipUTF8() -> Bool {
        let c = p.pointee
        let length: Int
        var scalar: UInt32
        switch c {
        case 0xC2...0xDF: length = 2; scalar = UInt32(c & 0x1F)
        case 0xE0...0xEF: length = 3; scalar = UInt32(c & 0x0F)
        case 0xF0...0xF4: length = 4; scalar = UInt32(c & 0x07)
        default: malformed("invalid UTF-8"); return false
        }
        guard end - p >= length else { malformed("invalid UTF-8"); return false }
        for i in 1..<length {
            let b = p[i]
            guard b & 0xC0 == 0x80 else { malformed("invalid UTF-8"); return false }
            scalar = scalar << 6 | UInt32(b & 0x3F)
        }
        let minimum: UInt32 = length == 2 ? 0x80 : (length == 3 ? 0x800 : 0x10000)
        guard scalar >= minimum, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else {
            malformed("invalid UTF-8")
            return false
        }
        p += length
        return true
    }
}
