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

/// Reads a record's observed outcome from its label field, with the decoders the records' format
/// needs: as a number first (a regressor's value, or a classifier's label given as a number), then
/// as text (a classifier's label name). One per thread; nothing allocated per record.
public final class OutcomeReader {
    private let numeric: (any RowDecoder)?
    private let text: (any RowDecoder)?
    private let labels: LabelIndex?
    private var cell: Float = 0

    /// `numeric` and `text` decode the one-feature schemas of `schemas(field:labels:maxBytes:)`
    /// (either may be left out: CSV cells are all text); `labels` maps a classifier's labels.
    public init(numeric: (any RowDecoder)?, text: (any RowDecoder)?, labels: LabelIndex?) {
        self.numeric = numeric
        self.text = text
        self.labels = labels
    }

    /// The label field as a number, and (for a classifier) as a category of `labels`; a missing
    /// field reads as NaN.
    public static func schemas(field: String, labels: LabelIndex?, maxBytes: Int = 1 << 20) -> (numeric: FeatureSchema, text: FeatureSchema?) {
        (FeatureSchema(names: [field], defaults: [.nan], maxBytes: maxBytes),
         labels.map { FeatureSchema(names: [field], defaults: [.nan], maxBytes: maxBytes, categorical: [true], categories: $0) })
    }

    /// The outcome (a class index, -1 for a label the model does not have; a regressor's value;
    /// NaN when the record has none) and the record's id; nil when neither decoder reads it.
    public func read(_ payload: UnsafeRawBufferPointer) -> (outcome: Float, id: EventID?)? {
        if let numeric, case .success(let id) = withUnsafeMutablePointer(to: &cell, { numeric.decode(payload, into: $0) }) {
            guard let labels, !cell.isNaN else { return (cell, id) }
            return (Float(labels.index(of: Double(cell))), id)
        }
        if let text, case .success(let id) = withUnsafeMutablePointer(to: &cell, { text.decode(payload, into: $0) }) {
            return (cell, id)
        }
        return nil
    }
}
