#if canImport(Glibc)
import Glibc
#endif

/// The JSON parser's two special string bytes (Parser.swift, Parser+Strings.swift).
let jsonQuote = UInt8(ascii: "\""), jsonBackslash = UInt8(ascii: "\\")


/// One pass over a payload. Reports through the decoder; stops at the first malformed byte.
struct Parser {
    let base: UnsafePointer<UInt8>
    var p: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    /// The decoder outlives the parser (it lives inside one `decode` call): no reference counting.
    unowned(unsafe) let decoder: EventDecoder
    let keys: KeyTableView
    let row: UnsafeMutablePointer<Float>
    let seen: UnsafeMutablePointer<UInt32>
    let state: UnsafeMutablePointer<UInt8>
    let generation: UnsafeMutablePointer<UInt32>
    let tally: UnsafeMutablePointer<Int>
    let layout: MemberLayoutView
    let pathDepth: Int
    let featureCount: Int
    /// Per feature, 1 when it is categorical; the categories' codes.
    let categorical: UnsafeMutablePointer<UInt8>
    let categories: (any CategoryLookup)?
    /// Set once the document is known to be malformed: parsing unwinds.
    private(set) var isMalformed = false

    init(base: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, decoder: EventDecoder, row: UnsafeMutablePointer<Float>) {
        self.base = base
        p = base
        self.end = end
        self.decoder = decoder
        self.row = row
        keys = decoder.table.view
        seen = decoder.seenGeneration
        state = decoder.state
        generation = decoder.generationCell
        tally = decoder.tally
        layout = decoder.layout.view
        pathDepth = decoder.pathDepth
        featureCount = decoder.schema.names.count
        categorical = decoder.categoricalFlags
        categories = decoder.schema.categories
    }

    @inline(__always)
    private func record(_ index: Int, _ value: EventDecoder.FeatureState) {
        let current = generation.pointee
        if seen[index] != current {
            seen[index] = current
            tally[0] &+= 1
        }
        state[index] = value.rawValue
        if value != .value { tally[1] &+= 1 }
    }

    var offset: Int { p - base }

    mutating func malformed(_ what: String) {
        isMalformed = true
        decoder.fail(.malformedJSON, "\(what) at byte \(offset)")
        p = end
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while p < end {
            let c = p.pointee
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { p += 1 } else { return }
        }
    }

    // MARK: objects and arrays

    /// An object: on the path to the features (`pathLevel` keys matched so far), or skipped
    /// (`pathLevel` nil) and only validated.
    mutating func parseObject(depth: Int, pathLevel: Int?) {
        if depth > EventDecoder.maxDepth { return malformed("nesting deeper than \(EventDecoder.maxDepth)") }
        p += 1  // {
        let isFeatures = pathLevel == pathDepth
        if isFeatures { decoder.bumpGeneration() }
        skipWhitespace()
        if p < end && p.pointee == UInt8(ascii: "}") { p += 1; return }
        let usesLayout = isFeatures && layout.isActive
        var position = 0, matched = 0, mismatched = 0
        while true {
            skipWhitespace()
            guard p < end, p.pointee == jsonQuote else { return malformed("expected a key") }
            if usesLayout, let learned = layout.match(position, at: p, before: end) {
                matched &+= 1
                // The key this position had last time, colon included.
                p += learned.length
                skipWhitespace()
                guard p < end else { return malformed("unexpected end") }
                parseMemberValue(learned.action, depth: depth + 1)
            } else {
                let keyStart = p
                guard let key = readString() else { return }
                // Learnable: no escapes (the key is a slice of the payload) and the colon right after.
                let learnable = isFeatures && key.baseAddress == keyStart + 1 && p < end && p.pointee == UInt8(ascii: ":")
                skipWhitespace()
                guard p < end, p.pointee == UInt8(ascii: ":") else { return malformed("expected ':'") }
                p += 1
                let keyEnd = p
                skipWhitespace()
                guard p < end else { return malformed("unexpected end") }
                let isID = pathLevel == 0 && key.count == 2 && key[0] == UInt8(ascii: "i") && key[1] == UInt8(ascii: "d")
                if isFeatures {
                    let action = keys.find(key).map(Int32.init) ?? (isID ? MemberAction.id : MemberAction.skip)
                    if usesLayout {
                        if layout.hasLearned(position) { mismatched &+= 1 }
                        layout.learn(position, key: learnable ? UnsafeBufferPointer(start: keyStart, count: keyEnd - keyStart) : nil,
                                     end: end, action: action)
                    }
                    parseMemberValue(action, depth: depth + 1)
                } else if isID {
                    parseID()
                } else if let level = pathLevel, key.elementsEqual(decoder.pathKey(level)) {
                    if p.pointee == UInt8(ascii: "{") {
                        parseObject(depth: depth + 1, pathLevel: level + 1)
                    } else if p.pointee == UInt8(ascii: "[") && level + 1 == pathDepth {
                        parseArray(depth: depth + 1, features: true)
                    } else {
                        skipValue(depth: depth + 1)
                    }
                } else {
                    skipValue(depth: depth + 1)
                }
            }
            if isMalformed { return }
            position &+= 1
            skipWhitespace()
            guard p < end else { return malformed("unexpected end inside an object") }
            if p.pointee == UInt8(ascii: ",") { p += 1; continue }
            if p.pointee == UInt8(ascii: "}") {
                p += 1
                // Keys in a new order each time: stop paying for relearning for a while.
                if mismatched > matched { layout.forget(restingFor: MemberLayout.restEvents) }
                return
            }
            return malformed("expected ',' or '}'")
        }
    }

    /// A features object's member value, by what its key means (`MemberAction`, or a feature index).
    @inline(__always)
    private mutating func parseMemberValue(_ action: Int32, depth: Int) {
        if action >= 0 {
            parseFeatureValue(Int(action), depth: depth)
        } else if action == MemberAction.id {
            parseID()
        } else {
            skipValue(depth: depth)
        }
    }

    /// An array: the features by position in the schema's order (`features`), or skipped and only
    /// validated.
    mutating func parseArray(depth: Int, features: Bool) {
        if depth > EventDecoder.maxDepth { return malformed("nesting deeper than \(EventDecoder.maxDepth)") }
        p += 1  // [
        if features { decoder.bumpGeneration() }
        skipWhitespace()
        if p < end && p.pointee == UInt8(ascii: "]") { p += 1; return }
        var position = 0
        while true {
            skipWhitespace()
            guard p < end else { return malformed("unexpected end inside an array") }
            if features && position < featureCount {
                parseFeatureValue(position, depth: depth + 1)
            } else {
                skipValue(depth: depth + 1)
            }
            if isMalformed { return }
            position += 1
            skipWhitespace()
            guard p < end else { return malformed("unexpected end inside an array") }
            if p.pointee == UInt8(ascii: ",") { p += 1; continue }
            if p.pointee == UInt8(ascii: "]") { p += 1; return }
            return malformed("expected ',' or ']'")
        }
    }

    // MARK: values

    mutating func parseFeatureValue(_ index: Int, depth: Int) {
        let c = p.pointee
        switch c {
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            guard let value = parseNumber() else { return }
            let single = Float(value)
            if categorical[index] != 0 {
                record(index, .number)
            } else if single.isFinite {
                row[index] = single
                record(index, .value)
            } else {
                record(index, .beyondFloat)
            }
        case UInt8(ascii: "n"):
            if literal("null") { record(index, .null) }
        case UInt8(ascii: "t"):
            if literal("true") { record(index, .boolean) }
        case UInt8(ascii: "f"):
            if literal("false") { record(index, .boolean) }
        case jsonQuote:
            guard let text = readString() else { return }
            if categorical[index] != 0, let categories {
                row[index] = Float(categories.code(utf8: UnsafeRawBufferPointer(text)))
                record(index, .value)
            } else {
                record(index, .string)
            }
        case UInt8(ascii: "{"):
            skipValue(depth: depth)
            if !isMalformed { record(index, .object) }
        case UInt8(ascii: "["):
            skipValue(depth: depth)
            if !isMalformed { record(index, .array) }
        default:
            malformed("unexpected character '\(Unicode.Scalar(c))'")
        }
    }

    mutating func parseID() {
        let start = p
        switch p.pointee {
        case jsonQuote:
            if readString() != nil { decoder.setID(EventID(start: start - base, end: p - base, isString: true)) }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            if parseNumber() != nil { decoder.setID(EventID(start: start - base, end: p - base, isString: false)) }
        default:
            decoder.setID(nil)
            skipValue(depth: 2)
        }
    }

    /// Validates and skips any value.
    mutating func skipValue(depth: Int) {
        if depth > EventDecoder.maxDepth { return malformed("nesting deeper than \(EventDecoder.maxDepth)") }
        guard p < end else { return malformed("unexpected end") }
        switch p.pointee {
        case jsonQuote:
            _ = readString()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = parseNumber()
        case UInt8(ascii: "n"): _ = literal("null")
        case UInt8(ascii: "t"): _ = literal("true")
        case UInt8(ascii: "f"): _ = literal("false")
        case UInt8(ascii: "{"):
            parseObject(depth: depth, pathLevel: nil)
        case UInt8(ascii: "["):
            parseArray(depth: depth, features: false)
        default:
            malformed("unexpected character '\(Unicode.Scalar(p.pointee))'")
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard end - p >= count, memcmp(p, word.utf8Start, count) == 0 else {
            malformed("invalid literal")
            return false
        }
        p += count
        return true
    }
}
