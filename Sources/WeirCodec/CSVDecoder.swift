#if canImport(Glibc)
import Glibc
#endif

/// Reads CSV rows (RFC 4180: cells separated by commas, optionally quoted, `""` for a quote inside
/// quotes) into feature rows, by the header's column names: the offline inputs of `weir score` and
/// `weir backtest`, which are often the training CSV's shape. An empty cell, or `NaN`, is a missing
/// feature; a categorical feature's cell is its category's text. One decoder per thread.
public final class CSVDecoder: RowDecoder {
    public let schema: FeatureSchema
    /// Per CSV column, the feature it feeds, or -1.
    private let featureOfColumn: [Int]
    /// The column echoed as the event's id, if the header has one.
    private let idColumn: Int
    private let columnCount: Int
    /// Per feature: whether this row gave it a value (reset per row).
    private let given: UnsafeMutablePointer<Bool>
    /// A NUL-terminated copy of a cell for strtod, or an unquoted copy of a category.
    private var scratch: [UInt8] = []

    /// The header's cells, in order; `idColumn` names the column echoed as the id (when present).
    public init(schema: FeatureSchema, header: [String], idColumn: String = "id") {
        self.schema = schema
        var index = [String: Int]()
        for (position, name) in schema.names.enumerated() where index[name] == nil { index[name] = position }
        featureOfColumn = header.map { index[$0] ?? -1 }
        self.idColumn = header.firstIndex(of: idColumn) ?? -1
        columnCount = header.count
        given = .allocate(capacity: max(schema.names.count, 1))
        given.initialize(repeating: false, count: max(schema.names.count, 1))
        scratch.reserveCapacity(64)
    }

    deinit { given.deallocate() }

    /// The features of `schema` the header lacks (they always take their default, or every row is
    /// rejected): for a warning before scoring starts.
    public var absentFeatures: [String] {
        let present = Set(featureOfColumn.filter { $0 >= 0 })
        return schema.names.indices.filter { !present.contains($0) }.map { schema.names[$0] }
    }

    public private(set) var defaultedCount = 0

    public func wasDefaulted(_ index: Int) -> Bool { !given[index] }

    public func decode(_ payload: UnsafeRawBufferPointer, into row: UnsafeMutablePointer<Float>) -> Result<EventID?, DecodeFailure> {
        if payload.count > schema.maxBytes {
            return .failure(DecodeFailure(code: .tooLarge, message: "row is \(payload.count) bytes; the limit is \(schema.maxBytes)"))
        }
        let width = schema.names.count
        given.update(repeating: false, count: max(width, 1))
        var id: EventID?
        var column = 0
        var failure: DecodeFailure?
        let completed = CSVDecoder.forEachCell(payload) { cell in
            defer { column += 1 }
            guard column < columnCount else {
                failure = DecodeFailure(code: .malformedCSV, message: "row has more than the header's \(columnCount) cells")
                return false
            }
            if column == idColumn, !cell.isEmpty { id = cellID(cell, payload: payload) }
            let feature = featureOfColumn[column]
            guard feature >= 0, !cell.isEmpty else { return true }
            if schema.categorical[feature] {
                row[feature] = Float(categoryCode(cell, payload))
                given[feature] = true
                return true
            }
            guard let value = number(cell, payload) else {
                failure = DecodeFailure(code: .notANumber,
                                        message: "feature '\(schema.names[feature])' is '\(String(decoding: text(cell, payload), as: UTF8.self))', not a number")
                return false
            }
            if value.isNaN { return true }  // pandas and numpy write a missing value as NaN
            guard abs(value) <= Double(Float.greatestFiniteMagnitude) else {
                failure = DecodeFailure(code: .notANumber, message: "feature '\(schema.names[feature])' is a number beyond float32")
                return false
            }
            row[feature] = Float(value)
            given[feature] = true
            return true
        }
        if let failure { return .failure(failure) }
        if !completed {
            return .failure(DecodeFailure(code: .malformedCSV, message: "row ends inside a quoted cell"))
        }
        defaultedCount = 0
        for feature in 0..<width where !given[feature] {
            guard let value = schema.defaults[feature] else {
                return .failure(DecodeFailure(code: .missingFeature, message: "feature '\(schema.names[feature])' is missing and has no default"))
            }
            row[feature] = value
            defaultedCount += 1
        }
        return .success(id)
    }

    /// One cell: where its text lies in the row (inside the quotes, if quoted), and whether it holds
    /// a doubled quote to unescape.
    public struct Cell {
        public let start: Int
        public let end: Int
        public let hasEscapedQuote: Bool
        public var isEmpty: Bool { start == end }
    }

    /// Calls `body` with each cell of `line` (no trailing newline) until it returns false; returns
    /// false when the line ends inside quotes.
    @discardableResult
    public static func forEachCell(_ line: UnsafeRawBufferPointer, _ body: (Cell) -> Bool) -> Bool {
        var position = 0
        let count = line.count
        while true {
            if position < count, line[position] == UInt8(ascii: "\"") {
                // Quoted: up to the quote not followed by another.
                var cursor = position + 1
                var escaped = false
                var closed = false
                while cursor < count {
                    if line[cursor] == UInt8(ascii: "\"") {
                        if cursor + 1 < count, line[cursor + 1] == UInt8(ascii: "\"") {
                            escaped = true
                            cursor += 2
                            continue
                        }
                        closed = true
                        break
                    }
                    cursor += 1
                }
                guard closed else { return false }
                guard body(Cell(start: position + 1, end: cursor, hasEscapedQuote: escaped)) else { return true }
                position = cursor + 1
                while position < count, line[position] != UInt8(ascii: ",") { position += 1 }  // text after the quote: ignored
            } else {
                var cursor = position
                while cursor < count, line[cursor] != UInt8(ascii: ",") { cursor += 1 }
                guard body(Cell(start: position, end: cursor, hasEscapedQuote: false)) else { return true }
                position = cursor
            }
            if position >= count { return true }
            position += 1  // past the comma
        }
    }

    /// The header's names (allocating: once per file).
    public static func headerNames(_ line: UnsafeRawBufferPointer) -> [String] {
        var names = [String]()
        forEachCell(line) { cell in
            var text = Array(line[cell.start..<cell.end])
            if cell.hasEscapedQuote { text = unescape(text[...]) }
            names.append(String(decoding: text, as: UTF8.self).trimmingSpaces)
            return true
        }
        return names
    }

    static func unescape(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(text.count)
        var skipNext = false
        for byte in text {
            if skipNext { skipNext = false; continue }
            out.append(byte)
            if byte == UInt8(ascii: "\"") { skipNext = true }
        }
        return out
    }

    /// A cell's text (for messages).
    private func text(_ cell: Cell, _ payload: UnsafeRawBufferPointer) -> [UInt8] {
        let raw = payload[cell.start..<cell.end]
        return cell.hasEscapedQuote ? CSVDecoder.unescape(ArraySlice(raw)) : Array(raw)
    }

    private func categoryCode(_ cell: Cell, _ payload: UnsafeRawBufferPointer) -> Int64 {
        guard let categories = schema.categories else { return SymbolCodes.unknown }
        if !cell.hasEscapedQuote { return categories.code(utf8: UnsafeRawBufferPointer(rebasing: payload[cell.start..<cell.end])) }
        scratch.removeAll(keepingCapacity: true)
        var skipNext = false
        for index in cell.start..<cell.end {
            if skipNext { skipNext = false; continue }
            scratch.append(payload[index])
            if payload[index] == UInt8(ascii: "\"") { skipNext = true }
        }
        return scratch.withUnsafeBytes { categories.code(utf8: $0) }
    }

    /// The cell as a number (strtod's grammar, surrounding spaces allowed); nil when it is not one.
    private func number(_ cell: Cell, _ payload: UnsafeRawBufferPointer) -> Double? {
        scratch.removeAll(keepingCapacity: true)
        for index in cell.start..<cell.end { scratch.append(payload[index]) }
        while let last = scratch.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\r") || last == 9 { scratch.removeLast() }
        scratch.append(0)
        return scratch.withUnsafeBufferPointer { buffer -> Double? in
            let start = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var end: UnsafeMutablePointer<CChar>?
            let value = strtod(start, &end)
            guard let end, end != UnsafeMutablePointer(mutating: start), end.pointee == 0 else { return nil }
            return value
        }
    }

    /// An id cell: an integer when it is one, else its text.
    private func cellID(_ cell: Cell, payload: UnsafeRawBufferPointer) -> EventID {
        var value: Int64 = 0
        var negative = false
        var digits = 0
        var index = cell.start
        if payload[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        while index < cell.end {
            let digit = payload[index] &- 48
            guard digit < 10, digits < 18 else { return .text(start: cell.start, end: cell.end) }
            value = value * 10 + Int64(digit)
            digits += 1
            index += 1
        }
        return digits == 0 ? .text(start: cell.start, end: cell.end) : .integer(negative ? -value : value)
    }
}

/// The code a category lookup gives when there is none: what `SymbolTable.unknown` is in the model layer.
enum SymbolCodes {
    static let unknown: Int64 = -1
}

extension String {
    /// Without leading and trailing spaces and tabs (header names).
    var trimmingSpaces: String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" || first == "\r" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" || last == "\r" { slice.removeLast() }
        return String(slice)
    }
}
