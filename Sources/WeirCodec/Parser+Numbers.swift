/// The parser's numbers: the two-load path for the short decimals events carry, the general path
/// (strict grammar, Clinger's fast path, strtod beyond it) and their digit arithmetic.
extension Parser {
    // MARK: numbers

    /// Parses a JSON number (strict grammar) to a double whose float rounding is that of the correctly
    /// rounded double (what features need; see the fast path); nil after reporting a malformed number.
    /// Numbers beyond double range are malformed, as jansson treats them.
    mutating func parseNumber() -> Double? {
        // The numbers events carry (a few integer digits, a short fraction, no exponent) are read
        // from two eight-byte loads when sixteen bytes follow the sign; anything else, and every
        // malformed number, takes the general path below.
        let negative = p.pointee == UInt8(ascii: "-")
        let digitsStart = negative ? p + 1 : p
        if end - digitsStart >= 16, let short = Parser.shortDecimal(at: digitsStart) {
            p = short.end
            return negative ? -short.magnitude : short.magnitude
        }
        return parseNumberInGeneral()
    }

    /// A number of one to seven integer digits (no leading zero unless alone), optionally a point
    /// and one to seven fraction digits, not followed by an exponent: its magnitude, rounded like
    /// the general path, and where it ends. Nil for any other shape. Reads the sixteen bytes at `q`.
    @inline(__always)
    static func shortDecimal(at q: UnsafePointer<UInt8>) -> (magnitude: Double, end: UnsafePointer<UInt8>)? {
        let first = UnsafeRawPointer(q).loadUnaligned(as: UInt64.self)
        let integerDigits = leadingDigitCount(first)
        guard integerDigits > 0 && integerDigits < 8, integerDigits == 1 || q.pointee != UInt8(ascii: "0") else { return nil }
        let integer = digitsValue(first, count: integerDigits)
        var r = q + integerDigits
        guard r.pointee == UInt8(ascii: ".") else {
            guard r.pointee | 0x20 != UInt8(ascii: "e") else { return nil }
            return (Double(integer), r)
        }
        let second = UnsafeRawPointer(r + 1).loadUnaligned(as: UInt64.self)
        let fractionDigits = leadingDigitCount(second)
        guard fractionDigits > 0 && fractionDigits < 8 else { return nil }
        r += 1 + fractionDigits
        guard r.pointee | 0x20 != UInt8(ascii: "e") else { return nil }
        // At most 14 digits: exact in a double, and 10^-7...10^-1 is within Clinger's range.
        let mantissa = integer &* integerPowerOfTen(fractionDigits) &+ digitsValue(second, count: fractionDigits)
        // The same guard as the general path's: near a float halfway point only the quotient decides.
        var magnitude = Double(mantissa) * inversePowerOfTen(fractionDigits)
        if (magnitude.bitPattern & 0x1FFF_FFFF) &- 0x0FFF_FFC0 < 0x80 {
            magnitude = Double(mantissa) / powerOfTen(fractionDigits)
        }
        return (magnitude, r)
    }

    /// `parseNumber` for every shape: long digit runs, exponents, and malformed numbers (reported).
    @inline(never)
    mutating func parseNumberInGeneral() -> Double? {
        let start = p, end = self.end
        var q = p  // a local cursor the optimizer can keep in a register
        let negative = q.pointee == UInt8(ascii: "-")
        if negative { q += 1 }
        guard q < end, q.pointee &- 48 < 10 else { p = q; malformed("invalid number"); return nil }
        // Every digit goes into `mantissa`; it is exact while there are at most 19 (below 2^64).
        // Longer runs, rare in events, are re-read by `significantDigits`.
        var mantissa: UInt64 = 0
        let integerStart = q
        if q.pointee == UInt8(ascii: "0") {
            q += 1
        } else {
            while q < end {
                let digit = q.pointee &- 48
                if digit >= 10 { break }
                mantissa = mantissa &* 10 &+ UInt64(digit)
                q += 1
            }
        }
        var digits = q - integerStart
        var exponent = 0
        if q < end, q.pointee == UInt8(ascii: ".") {
            q += 1
            let fractionStart = q
            guard q < end, q.pointee &- 48 < 10 else { p = q; malformed("invalid number"); return nil }
            // Eight bytes at a time while eight remain: the run of digits in them is found and
            // converted with a few multiplies (an event's six-decimal fraction is one step). The
            // mantissa wraps exactly as the byte loop's does, so longer runs stay the same.
            while end - q >= 8 {
                let chunk = UnsafeRawPointer(q).loadUnaligned(as: UInt64.self)
                let count = Parser.leadingDigitCount(chunk)
                mantissa = mantissa &* Parser.integerPowerOfTen(count) &+ Parser.digitsValue(chunk, count: count)
                q += count
                if count < 8 { break }
            }
            while q < end {
                let digit = q.pointee &- 48
                if digit >= 10 { break }
                mantissa = mantissa &* 10 &+ UInt64(digit)
                q += 1
            }
            exponent = fractionStart - q
            digits += q - fractionStart
        }
        let digitsEnd = q
        var written = 0
        var exponentNegative = false
        if q < end, q.pointee | 0x20 == UInt8(ascii: "e") {
            q += 1
            if q < end, q.pointee == UInt8(ascii: "+") || q.pointee == UInt8(ascii: "-") {
                exponentNegative = q.pointee == UInt8(ascii: "-")
                q += 1
            }
            guard q < end, q.pointee &- 48 < 10 else { p = q; malformed("invalid number"); return nil }
            while q < end {
                let digit = q.pointee &- 48
                if digit >= 10 { break }
                if written < 100_000 { written = written * 10 + Int(digit) }
                q += 1
            }
        }
        var exact = true
        if digits > 19 { (mantissa, exponent, exact) = Parser.significantDigits(integerStart, digitsEnd) }
        exponent += exponentNegative ? -written : written
        p = q
        // Clinger's fast path: an exact mantissa and power of ten give the correctly rounded result.
        if exact && mantissa <= (1 << 53) && exponent >= -22 && exponent <= 22 {
            var magnitude: Double
            if exponent >= 0 {
                magnitude = Double(mantissa) * Parser.powerOfTen(exponent)
            } else {
                // Features are floats: multiplying by 10^-e (two roundings) lands within a few double
                // ulps of the correctly rounded quotient, so both round to the same float unless they
                // sit next to a point halfway between two floats (the 29 bits a float drops are near
                // 0x1000_0000); only there is the division, which is slow, needed.
                magnitude = Double(mantissa) * Parser.inversePowerOfTen(-exponent)
                if (magnitude.bitPattern & 0x1FFF_FFFF) &- 0x0FFF_FFC0 < 0x80 {
                    magnitude = Double(mantissa) / Parser.powerOfTen(-exponent)
                }
            }
            return negative ? -magnitude : magnitude
        }
        let value = decoder.slowParse(start, q - start)
        if value.isInfinite {
            p = start
            malformed("number out of range")
            return nil
        }
        return value
    }

    /// The first 19 significant digits of the digit runs in `start..<end` (integer part, optional
    /// fraction; leading zeros skipped) as a mantissa and a power of ten, and whether no dropped
    /// digit was other than zero (else only strtod can round the number).
    @inline(never)
    static func significantDigits(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> (UInt64, Int, Bool) {
        var q = start
        var mantissa: UInt64 = 0
        var significant = 0, exponent = 0
        var exact = true
        var inFraction = false
        while q < end {
            let c = q.pointee
            q += 1
            if c == UInt8(ascii: ".") { inFraction = true; continue }
            let digit = c &- 48
            if significant < 19 {
                mantissa = mantissa &* 10 &+ UInt64(digit)
                if mantissa != 0 { significant += 1 }
                if inFraction { exponent -= 1 }
            } else {
                if !inFraction { exponent += 1 }
                if digit != 0 { exact = false }
            }
        }
        return (mantissa, exponent, exact)
    }

    /// How many of the eight bytes of `chunk` (little-endian: the first character lowest) are ASCII
    /// digits before the first that is not. A byte's high bit is set in `b + 0x46` when b > '9'
    /// and in `b - 0x30` when b < '0' (or b >= 0xB0); carries and borrows start only at a
    /// non-digit and move only to later bytes, so the first set bit marks the first non-digit.
    @inline(__always)
    static func leadingDigitCount(_ chunk: UInt64) -> Int {
        let nonDigits = ((chunk &+ 0x4646_4646_4646_4646) | (chunk &- 0x3030_3030_3030_3030)) & 0x8080_8080_8080_8080
        return nonDigits == 0 ? 8 : nonDigits.trailingZeroBitCount >> 3
    }

    /// The value of the first `count` (0...8) digit characters of `chunk`: shifted so they end at
    /// its top byte (the bytes after them drop out), then summed in pairs, fours and eights.
    @inline(__always)
    static func digitsValue(_ chunk: UInt64, count: Int) -> UInt64 {
        guard count > 0 else { return 0 }
        var value = (chunk &- 0x3030_3030_3030_3030) << UInt64(8 * (8 - count))
        value = value &* 10 &+ (value >> 8)
        return ((value & 0x0000_00FF_0000_00FF) &* 0x000F_4240_0000_0064 &+ ((value >> 16) & 0x0000_00FF_0000_00FF) &* 0x0000_2710_0000_0001) >> 32
    }

    /// 10^exponent for 0...8.
    @inline(__always)
    static func integerPowerOfTen(_ exponent: Int) -> UInt64 {
        switch exponent {
        case 0: return 1
        case 1: return 10
        case 2: return 100
        case 3: return 1_000
        case 4: return 10_000
        case 5: return 100_000
        case 6: return 1_000_000
        case 7: return 10_000_000
        default: return 100_000_000
        }
    }

    /// 10^-exponent for 0...22, rounded to the nearest double; a switch compiles to a constant table.
    @inline(__always)
    static func inversePowerOfTen(_ exponent: Int) -> Double {
        switch exponent {
        case 0: return 1e-0
        case 1: return 1e-1
        case 2: return 1e-2
        case 3: return 1e-3
        case 4: return 1e-4
        case 5: return 1e-5
        case 6: return 1e-6
        case 7: return 1e-7
        case 8: return 1e-8
        case 9: return 1e-9
        case 10: return 1e-10
        case 11: return 1e-11
        case 12: return 1e-12
        case 13: return 1e-13
        case 14: return 1e-14
        case 15: return 1e-15
        case 16: return 1e-16
        case 17: return 1e-17
        case 18: return 1e-18
        case 19: return 1e-19
        case 20: return 1e-20
        case 21: return 1e-21
        default: return 1e-22
        }
    }

    /// 10^exponent for 0...22, exactly (a double holds these powers exactly); a switch compiles to a
    /// constant table.
    @inline(__always)
    static func powerOfTen(_ exponent: Int) -> Double {
        switch exponent {
        case 0: return 1e0
        case 1: return 1e1
        case 2: return 1e2
        case 3: return 1e3
        case 4: return 1e4
        case 5: return 1e5
        case 6: return 1e6
        case 7: return 1e7
        case 8: return 1e8
        case 9: return 1e9
        case 10: return 1e10
        case 11: return 1e11
        case 12: return 1e12
        case 13: return 1e13
        case 14: return 1e14
        case 15: return 1e15
        case 16: return 1e16
        case 17: return 1e17
        case 18: return 1e18
        case 19: return 1e19
        case 20: return 1e20
        case 21: return 1e21
        default: return 1e22
        }
    }
}
