/// The strings a model knows (categories, class labels, the keys and values of its encoders), each
/// with a number. A string value at run time is its symbol: comparisons, lookups and one-hot
/// encoding are integer work, and an event's category is found from its bytes by hashing, with no
/// allocation. A string the model does not know is `SymbolTable.unknown`: no category matches it.
/// Immutable once planned; safe to share between threads.
public final class SymbolTable: Sendable {
    /// The symbol of every string the model does not know.
    public static let unknown: Int64 = -1

    /// The strings, by symbol.
    public let strings: [String]
    /// UTF-8 bytes of every string, one after another, and where each starts (plus the end).
    private let bytes: [UInt8]
    private let starts: [Int]
    /// Open addressing over the byte hash: symbol + 1, or 0 for an empty slot.
    private let slots: [Int32]
    private let mask: Int
    /// Each symbol read as a number (Cast string → float), NaN where it is not one.
    let numericValues: [Float]
    /// Symbols whose text is an integer's decimal form, by value (Cast int64 → string).
    let integerSymbols: [Int64: Int64]

    init(_ strings: [String]) {
        self.strings = strings
        var bytes = [UInt8](), starts = [Int]()
        for string in strings {
            starts.append(bytes.count)
            bytes.append(contentsOf: string.utf8)
        }
        starts.append(bytes.count)
        self.bytes = bytes
        self.starts = starts
        var capacity = 8
        while capacity < strings.count * 2 { capacity *= 2 }
        var slots = [Int32](repeating: 0, count: capacity)
        for (symbol, string) in strings.enumerated() {
            var hash = Array(string.utf8).withUnsafeBytes { SymbolTable.hash($0) }
            while slots[hash & (capacity - 1)] != 0 { hash &+= 1 }
            slots[hash & (capacity - 1)] = Int32(symbol + 1)
        }
        self.slots = slots
        mask = capacity - 1
        numericValues = strings.map { Float($0) ?? .nan }
        var integers = [Int64: Int64]()
        for (symbol, string) in strings.enumerated() {
            if let value = Int64(string), String(value) == string { integers[value] = Int64(symbol) }
        }
        integerSymbols = integers
    }

    /// FNV-1a over the bytes.
    @inline(__always)
    static func hash(_ text: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h)
    }

    /// The symbol of a string given as UTF-8 bytes, or `unknown`. Allocates nothing.
    @inline(__always)
    public func symbol(utf8 text: UnsafeRawBufferPointer) -> Int64 {
        var position = SymbolTable.hash(text)
        while true {
            let entry = Int(slots[position & mask])
            if entry == 0 { return SymbolTable.unknown }
            let symbol = entry - 1
            let start = starts[symbol], length = starts[symbol + 1] - start
            if length == text.count {
                let same = bytes.withUnsafeBufferPointer { stored in
                    length == 0 || memcmp(stored.baseAddress! + start, text.baseAddress!, length) == 0
                }
                if same { return Int64(symbol) }
            }
            position &+= 1
        }
    }

    /// The symbol of `string`, or `unknown`.
    public func symbol(of string: String) -> Int64 {
        var copy = string
        return copy.withUTF8 { symbol(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// This table with `extra` strings numbered after the model's own (those it already has are
    /// skipped), sorted: the categories of a training set the model does not know, so that drift
    /// can tell them from categories never seen at all. The model reads their symbols as unknown.
    public func extended(with extra: [String]) -> SymbolTable {
        let known = Set(strings)
        return SymbolTable(strings + Set(extra.filter { !known.contains($0) }).sorted())
    }

    /// The text of a symbol ("" for `unknown`).
    public func string(_ symbol: Int64) -> String {
        symbol >= 0 && symbol < Int64(strings.count) ? strings[Int(symbol)] : ""
    }
}

/// Numbers the strings of a model while it is planned.
struct SymbolTableBuilder {
    private(set) var strings: [String] = []
    private var numbers: [String: Int64] = [:]

    /// The symbol of `string`, numbering it if new.
    mutating func intern(_ string: String) -> Int64 {
        if let known = numbers[string] { return known }
        let symbol = Int64(strings.count)
        strings.append(string)
        numbers[string] = symbol
        return symbol
    }

    func build() -> SymbolTable { SymbolTable(strings) }
}

#if canImport(Glibc)
import Glibc
#endif
