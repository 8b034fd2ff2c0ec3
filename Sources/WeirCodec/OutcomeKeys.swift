/// How an observed outcome finds the prediction it answers: record ids (or keys) as 64-bit FNV-1a
/// hashes of their text (a string's characters, a number's digits), so `weir backtest --labels` and
/// the worker's feedback join match them without keeping the ids.
public enum OutcomeKeys {
    /// The hash of an event's id as the decoder found it in `payload`.
    public static func hash(_ id: EventID, payload: UnsafeRawBufferPointer) -> UInt64 {
        switch id.form {
        case .integer:
            var digits = DecimalDigits()
            return digits.hash(id.integer)
        case .text:
            return hash(UnsafeRawBufferPointer(rebasing: payload[id.start..<id.end]))
        case .jsonToken:
            let token = UnsafeRawBufferPointer(rebasing: payload[id.start..<id.end])
            if id.isString, token.count >= 2 {
                return hash(UnsafeRawBufferPointer(rebasing: token[(token.startIndex + 1)..<(token.endIndex - 1)]))
            }
            return hash(token)
        }
    }

    /// FNV-1a over bytes (a key, or an id's text).
    @inline(__always)
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { value = (value ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return value
    }
}

/// An integer's decimal digits hashed without a heap allocation.
struct DecimalDigits {
    mutating func hash(_ number: Int64) -> UInt64 {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
            var magnitude = number.magnitude
            var position = 20
            repeat {
                position -= 1
                buffer[position] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if number < 0 {
                position -= 1
                buffer[position] = UInt8(ascii: "-")
            }
            return OutcomeKeys.hash(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[position..<20]))
        }
    }
}

/// A classifier's observed label as its class index: the label's text as the manifest writes it,
/// or a number equal to one ("1.0" is "1"); -1 for a label the model does not have.
public final class LabelIndex: CategoryLookup, @unchecked Sendable {
    private let labels: [String]
    private let numbers: [Double?]

    public init(labels: [String]) {
        self.labels = labels
        numbers = labels.map { Double($0) }
    }

    public func index(of text: String) -> Int64 {
        if let found = labels.firstIndex(of: text) { return Int64(found) }
        if let number = Double(text) { return index(of: number) }
        return -1
    }

    public func index(of number: Double) -> Int64 {
        numbers.firstIndex(where: { $0 == number }).map(Int64.init) ?? -1
    }

    public func code(utf8 text: UnsafeRawBufferPointer) -> Int64 { index(of: String(decoding: text, as: UTF8.self)) }
}
