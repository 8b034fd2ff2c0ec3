import Foundation
import JanssonReference
import Testing
import WeirTestSupport
@testable import WeirCodec


func decode(_ text: String, _ schema: FeatureSchema) -> (Result<EventID?, DecodeFailure>, [Float]) {
    decode(Array(text.utf8), schema)
}

func decode(_ bytes: [UInt8], _ schema: FeatureSchema) -> (Result<EventID?, DecodeFailure>, [Float]) {
    let decoder = EventDecoder(schema: schema)
    var row = [Float](repeating: .nan, count: schema.names.count)
    let result = bytes.withUnsafeBytes { payload in row.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } }
    return (result, row)
}

@Suite("Event decoder", .timeLimit(.minutes(5)))
struct DecoderTests {
    let schema = FeatureSchema(names: ["amount", "age", "score", "ratio"], defaults: [nil, 30, nil, 0.5])

    @Test("numbers, whitespace, escapes in keys, nested objects skipped, id echoed")
    func basics() throws {
        let text = " {\"id\": \"evt-7\", \"nested\": {\"amount\": 99, \"deep\": [1, {\"x\": null}]}, \"am\\u006fu\\u006et\" : -12.5e-1 ,"
            + "\"age\":41, \"score\" :\t3E2, \"ratio\": 0.000001, \"tags\": [\"a\", \"\\u00e9\\ud83d\\ude00\"]}\n"
        let (result, row) = decode(text, schema)
        let id = try #require(try result.get())
        #expect(Array(text.utf8)[id.start..<id.end].elementsEqual("\"evt-7\"".utf8) && id.isString)
        #expect(row == [-1.25, 41, 300, 0.000001])
    }

    @Test("feature names of every length find their own value: shared prefixes and suffixes, escapes, UTF-8, short payloads")
    func keyLookup() throws {
        // Lengths 1...20, names that share their first or last 8 bytes (or both, differing in the
        // middle), and a non-ASCII name.
        var names = (1...20).map { String(repeating: "k", count: $0 - 1) + "z" }
        names += ["abcdefgh", "abcdefgi", "transaction_amount_a", "transaction_amount_b", "a_transaction", "b_transaction",
                  "x_middle1_y_long_name", "x_middle2_y_long_name", "prefix_12345678_suffix", "prefix_87654321_suffix", "ünïcødé"]
        let schema = FeatureSchema(names: names, defaults: names.map { _ in nil })
        var body = names.enumerated().map { "\"\($0.element)\": \($0.offset + 1)" }
        // Keys that are not features but share a word with one, and an escaped spelling of a feature.
        body += ["\"abcdefgj\": -1", "\"transaction_amount_c\": -1", "\"x_middle3_y_long_name\": -1", "\"kkkkkkkkkkkkkkkz\\u0041\": -1", "\"k\": -1"]
        body.swapAt(0, body.count - 1)
        let (result, row) = decode("{" + body.joined(separator: ", ") + "}", schema)
        #expect(result.failureCode == nil)
        #expect(row == (1...names.count).map(Float.init))
        let (escaped, escapedRow) = decode("{" + names.enumerated().map { index, name in
            let spelled = index == 20 ? "\\u0061bcdefgh" : index == 22 ? "transaction_amount\\u005fa" : name
            return "\"\(spelled)\": \(index + 1)"
        }.joined(separator: ",") + "}", schema)
        #expect(escaped.failureCode == nil)
        #expect(escapedRow == (1...names.count).map(Float.init))
        // A payload shorter than one word after the key: the key is read byte by byte.
        let (short, shortRow) = decode("{\"z\":7}", FeatureSchema(names: ["z"], defaults: [nil]))
        #expect(short.failureCode == nil && shortRow == [7])
        let (missing, _) = decode("{\"zz\":7}", FeatureSchema(names: ["z"], defaults: [nil]))
        #expect(missing.failureCode == .missingFeature)
    }

    @Test("null or missing takes the default; without one the event is rejected naming the field")
    func defaultsAndMissing() {
        let (ok, row) = decode("{\"amount\": 1, \"age\": null, \"score\": 2}", schema)
        #expect(ok.failureCode == nil)
        #expect(row == [1, 30, 2, 0.5])
        let (missing, _) = decode("{\"amount\": 1, \"age\": 3}", schema)
        #expect(missing == .failure(DecodeFailure(code: .missingFeature, message: "feature 'score' is missing and has no default")))
        let (null, _) = decode("{\"amount\": null, \"score\": 1}", schema)
        #expect(null == .failure(DecodeFailure(code: .missingFeature, message: "feature 'amount' is null and has no default")))
        // Which features took their defaults (drift counts those as missing), reused across events.
        let decoder = EventDecoder(schema: schema)
        var scratch = [Float](repeating: 0, count: 4)
        func run(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { payload in scratch.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } } }
        run("{\"amount\": 1, \"age\": null, \"score\": 2}")
        #expect(decoder.defaultedCount == 2 && (0..<4).map(decoder.wasDefaulted) == [false, true, false, true])
        run("{\"amount\": 1, \"age\": 5, \"score\": 2, \"ratio\": 1}")
        #expect(decoder.defaultedCount == 0 && !(0..<4).contains(where: decoder.wasDefaulted))
    }

    @Test("numbers of every digit-run length round exactly like strtod")
    func numberDigitRuns() {
        var random = TestRandom(state: 3)
        let schema = FeatureSchema(names: ["x"], defaults: [nil])
        let decoder = EventDecoder(schema: schema)
        var row: [Float] = [0]
        var checked = 0
        for trial in 0..<20_000 {
            func digits(_ count: Int, leadingZeros: Int = 0) -> String {
                String(repeating: "0", count: min(leadingZeros, count)) + String((0..<max(count - leadingZeros, 0)).map { _ in Character(String(random.int(0..<10))) })
            }
            var text = random.int(0..<4) == 0 ? "-" : ""
            let integerDigits = random.int(0..<22)
            text += integerDigits == 0 ? "0" : String(random.int(1..<10)) + digits(integerDigits - 1)
            if random.int(0..<4) > 0 { text += "." + digits(random.int(1..<24), leadingZeros: random.int(0..<3) == 0 ? random.int(0..<12) : 0) }
            if random.int(0..<5) == 0 { text += (random.int(0..<2) == 0 ? "e" : "E-") + String(random.int(0..<40)) }
            // Padding after the number sometimes, so runs end at the buffer's end and before it,
            // and numbers with sixteen bytes after them take the two-load path (`shortDecimal`).
            let event = "{\"x\":" + text + ["}", "       }", String(repeating: " ", count: 17) + "}"][trial % 3]
            let result = Array(event.utf8).withUnsafeBytes { payload in row.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } }
            guard let expected = Double(text), Float(expected).isFinite else { continue }
            #expect(result.failureCode == nil, "\(text)")
            #expect(row[0] == Float(expected), "\(text): \(row[0]) vs strtod \(Float(expected))")
            checked += 1
        }
        #expect(checked > 15_000)
    }

    @Test("eight bytes at a time: the run of digits ends at the first byte of any value that is not one, and reads as its number")
    func eightByteDigitRuns() {
        var random = TestRandom(state: 11)
        for position in 0..<8 {
            for byte in 0...255 where !(48...57).contains(byte) {
                for _ in 0..<4 {
                    var bytes = (0..<8).map { _ in UInt8(48 + random.int(0..<10)) }
                    bytes[position] = UInt8(byte)
                    // What follows the first non-digit is anything at all.
                    for later in (position + 1)..<8 where random.int(0..<2) == 0 { bytes[later] = UInt8(random.int(0..<256)) }
                    let chunk = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    #expect(Parser.leadingDigitCount(chunk) == position, "\(bytes)")
                    let expected = bytes[..<position].reduce(UInt64(0)) { $0 * 10 + UInt64($1 - 48) }
                    #expect(Parser.digitsValue(chunk, count: position) == expected, "\(bytes)")
                }
            }
        }
        let eight = Array("98765432".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(Parser.leadingDigitCount(eight) == 8 && Parser.digitsValue(eight, count: 8) == 98_765_432)
    }

    @Test("short decimals read by two eight-byte loads: exactly the shapes they promise, rounded like strtod then float")
    func shortDecimals() {
        var random = TestRandom(state: 29)
        var taken = 0
        for _ in 0..<50_000 {
            let integerDigits = random.int(0..<10), fractionDigits = random.int(0..<10)
            var text = String((0..<integerDigits).map { _ in Character(String(random.int(0..<10))) })
            let hasPoint = random.int(0..<4) > 0
            if hasPoint { text += "." + String((0..<fractionDigits).map { _ in Character(String(random.int(0..<10))) }) }
            let hasExponent = random.int(0..<8) == 0
            if hasExponent { text += ["e", "E", "e-"][random.int(0..<3)] + "5" }
            let after = [",", "}", " ", "]", "x", "."][random.int(0..<6)]
            let bytes = Array((text + after + String(repeating: "9", count: 16)).utf8)
            let result = bytes.withUnsafeBufferPointer { buffer in
                Parser.shortDecimal(at: buffer.baseAddress!).map { ($0.magnitude, $0.end - buffer.baseAddress!) }
            }
            // Without a point, a "." after the digits starts a long fraction (the padding's nines).
            let promised = (1...7).contains(integerDigits) && (integerDigits == 1 || !text.hasPrefix("0"))
                && (hasPoint ? (1...7).contains(fractionDigits) : after != ".") && !hasExponent
            guard promised else {
                if let result { Issue.record("\(text)\(after): read as \(result.0), but the general path must") }
                continue
            }
            guard let result else { Issue.record("\(text)\(after): not read"); continue }
            taken += 1
            #expect(result.1 == text.utf8.count, "\(text)\(after): ends at \(result.1)")
            #expect(Float(result.0).bitPattern == Float(Double(text)!).bitPattern, "\(text): \(result.0) vs strtod \(Double(text)!)")
        }
        #expect(taken > 10_000)
    }

    @Test("numbers next to a point halfway between two floats round like strtod then float")
    func halfwayNumbers() throws {
        // The fast path multiplies by 10^-e instead of dividing; near a float halfway point only the
        // exact quotient decides, so these are the numbers that would expose a wrong shortcut.
        var random = TestRandom(state: 11)
        let decoder = EventDecoder(schema: FeatureSchema(names: ["x"], defaults: [nil]))
        var row: [Float] = [0]
        var checked = 0
        for _ in 0..<20_000 {
            let magnitude = Float(random.uniform() * 2 - 1) * Float(pow(10.0, Double(random.int(-8..<8))))
            guard magnitude.isNormal else { continue }
            let halfway = (Double(magnitude) + Double(magnitude.nextUp)) / 2
            // Decimals of the halfway point with 3 to 16 significant digits, at and just around it;
            // half of them padded so that short ones take the two-load path (`shortDecimal`).
            let digits = random.int(3..<17)
            let padding = random.int(0..<2) == 0 ? "" : String(repeating: " ", count: 16)
            for value in [halfway, halfway.nextUp, halfway.nextDown, halfway * (1 + 1e-15), halfway * (1 - 1e-15)] {
                let text = decimal(value, significantDigits: digits)
                let event = Array("{\"x\":\(text)\(padding)}".utf8)
                let result = event.withUnsafeBytes { payload in row.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } }
                guard let expected = Double(text) else { continue }
                #expect(result.failureCode == nil, "\(text)")
                #expect(row[0].bitPattern == Float(expected).bitPattern, "\(text): \(row[0]) vs strtod then float \(Float(expected))")
                checked += 1
            }
        }
        #expect(checked > 90_000)
    }

    /// `value` written with `significantDigits` digits in plain decimal notation (no exponent), so
    /// the parser's fast path (negative power of ten) reads it.
    private func decimal(_ value: Double, significantDigits: Int) -> String {
        let exponent = Int(log10(abs(value)).rounded(.down))
        let fractionDigits = max(0, significantDigits - 1 - exponent)
        return String(format: "%.\(fractionDigits)f", value)
    }

    @Test("wrong types are not-a-number; NaN literals and trailing data are malformed; size limit")
    func rejections() {
        func code(_ text: String, _ s: FeatureSchema? = nil) -> DecodeFailure.Code? {
            if case .failure(let f) = decode(text, s ?? schema).0 { return f.code }
            return nil
        }
        #expect(code("{\"amount\": \"12\", \"score\": 1}") == .notANumber)
        #expect(code("{\"amount\": true, \"score\": 1}") == .notANumber)
        #expect(code("{\"amount\": [1], \"score\": 1}") == .notANumber)
        #expect(code("{\"amount\": 1e39, \"score\": 1}") == .notANumber)  // beyond float32
        #expect(code("{\"amount\": NaN, \"score\": 1}") == .malformedJSON)
        #expect(code("{\"amount\": Infinity, \"score\": 1}") == .malformedJSON)
        #expect(code("{\"amount\": 1e999, \"score\": 1}") == .malformedJSON)  // beyond double, as jansson
        #expect(code("{\"amount\": 01, \"score\": 1}") == .malformedJSON)
        #expect(code("{\"amount\": 1, \"score\": 1} x") == .malformedJSON)
        #expect(code("[1, 2]") == .malformedJSON)
        #expect(code("") == .malformedJSON)
        #expect(code("{\"amount\": 1, \"score\": 1, \"bad\": \"\\ud800\"}") == .malformedJSON)
        #expect(decode([UInt8]("{\"amount\": 1, \"score\": 1, \"k\": \"".utf8) + [0xC3, 0x28] + [UInt8]("\"}".utf8), schema).0
                    .failureCode == .malformedJSON)
        let small = FeatureSchema(names: ["a"], maxBytes: 10)
        #expect(code("{\"a\": 1, \"padding\": 1}", small) == .tooLarge)
    }

    @Test("features-path: an object or an array of features")
    func featuresPath() {
        let nested = FeatureSchema(names: ["a", "b"], featuresPath: ["payload", "features"])
        #expect(decode("{\"payload\": {\"features\": {\"b\": 2, \"a\": 1}}, \"a\": 9}", nested).1 == [1, 2])
        #expect(decode("{\"payload\": {\"features\": [3, 4, 5]}}", nested).1 == [3, 4])
        #expect(decode("{\"payload\": {\"features\": 7}}", nested).0.failureCode == .missingFeature)
    }

    @Test("differential against jansson: same decision and the same floats, bit for bit")
    func differential() throws {
        var random = TestRandom(state: 20261122)
        var corpus = handWritten
        for _ in 0..<3000 { corpus.append(Array(randomEvent(&random).utf8)) }
        // Mutations: truncations, byte flips, inserted characters.
        for index in 0..<6000 {
            var bytes = corpus[index % 3000 + handWritten.count]
            switch random.int(0..<4) {
            case 0: bytes = Array(bytes.prefix(random.int(0..<bytes.count)))
            case 1: bytes[random.int(0..<bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            case 2: bytes.insert(random.pick(Array("{}[]\":,.-+eE0\\ u".utf8)), at: random.int(0..<bytes.count))
            default: bytes.remove(at: random.int(0..<bytes.count))
            }
            corpus.append(bytes)
        }
        var tally = [String: Int]()
        for bytes in corpus {
            let (ours, row) = decode(bytes, schema)
            compareWithJansson(bytes, ours, row, schema, &tally)
        }
        // The corpus exercises every outcome.
        #expect(tally["accepted", default: 0] > 1000)
        #expect(tally["malformed-json", default: 0] > 1000)
        #expect(tally["missing-feature", default: 0] > 50)
        #expect(tally["not-a-number", default: 0] > 50)
    }

    @Test("a decoder that learned the last event's key layout decodes the next like jansson: reordered, renamed, escaped, spaced, long or cut keys")
    func learnedLayout() throws {
        // A long feature name (two 16-byte compares), a key too long to learn, and the usual ones.
        let names = ["amount", "age", "score", "ratio", "transaction_amount_7d_mean"]
        let schema = FeatureSchema(names: names, defaults: [nil, 30, nil, 0.5, -1])
        let decoder = EventDecoder(schema: schema)
        var row = [Float](repeating: .nan, count: names.count)
        func run(_ bytes: [UInt8]) -> Result<EventID?, DecodeFailure> {
            for index in row.indices { row[index] = .nan }
            return bytes.withUnsafeBytes { payload in row.withUnsafeMutableBufferPointer { decoder.decode(payload, into: $0.baseAddress!) } }
        }
        func check(_ bytes: [UInt8], after primer: [UInt8], _ tally: inout [String: Int]) {
            decoder.forgetLayout()
            _ = run(primer)
            let ours = run(bytes)
            compareWithJansson(bytes, ours, row, schema, &tally, after: primer)
        }
        let base = "{\"id\":\"evt-1\",\"amount\":12.5,\"age\":41,\"note\":\"a string long enough to leave 32 bytes after every key\","
            + "\"transaction_amount_7d_mean\":0.25,\"a_key_far_too_long_to_be_learned_at_all\":1,\"score\":-3e2,\"ratio\":0.5,\"tail\":[1,2,3]}"
        var tally = [String: Int]()
        // Hand-made neighbours of the learned event, each at the positions it learned.
        func swap(_ old: String, _ new: String) -> String { base.replacingOccurrences(of: old, with: new) }
        let variants: [String] = [
            base,
            swap("\"amount\":12.5,\"age\":41", "\"age\":41,\"amount\":12.5"),  // swapped
            swap("\"age\":", "\"agf\":"),  // renamed: default taken
            swap("\"score\":", "\"scor\":"),  // renamed: missing
            swap("\"score\":", "\"scores\":"),  // longer key
            swap("\"amount\":", "\"am\\u006fu\\u006et\":"),  // escaped spelling
            swap("\"amount\":", "\"amount\" :"),  // space before the colon
            swap("\"amount\":", "\"amount\"\t:\n"),
            swap("\"amount\":", "\"amount\",:"),  // malformed right after the key
            swap("\"amount\":", "\"amount\"::"),
            swap("\"amount\":12.5", "\"amount\":\"12.5\""),  // wrong type at a learned key
            swap("\"id\":\"evt-1\"", "\"id\":7"),
            swap("\"id\":", "\"ie\":"),
            swap("7d_mean\":", "7d_meam\":"),  // differs in the second 16 bytes
            swap("\"amount\":12.5,", ""),  // every later position shifts
            swap("{", "{\"extra\":null,"),
            swap("\"ratio\":0.5", "\"ratio\":0.5,\"score\":\"x\""),  // a later duplicate
            swap("\"score\":-3e2,", "\"score\":-3e2,\"score\":7,"),
        ]
        for variant in variants {
            check(Array(variant.utf8), after: Array(base.utf8), &tally)
            // Cut anywhere: the 32 bytes a compare reads are never past the end.
            for cut in stride(from: 1, to: variant.utf8.count, by: 7) { check(Array(variant.utf8.prefix(cut)), after: Array(base.utf8), &tally) }
        }
        // Random events, each after a random other one and after itself, and their mutations after them.
        var random = TestRandom(state: 20261201)
        // Most padded at the end, so that every key has the 32 bytes after it that a compare reads.
        let events = (0..<1500).map { index in
            let event = randomEvent(&random, keys: names + ["id", "other", "a_key_far_too_long_to_be_learned_at_all"])
            return Array((index % 4 == 0 || event == "{}" ? event : event.dropLast() + ",\"pad\":\"" + String(repeating: "p", count: 40) + "\"}").utf8)
        }
        for (index, event) in events.enumerated() {
            check(event, after: events[(index * 7 + 3) % events.count], &tally)
            check(event, after: event, &tally)
            var mutant = event
            switch random.int(0..<4) {
            case 0: mutant = Array(mutant.prefix(random.int(0..<mutant.count)))
            case 1: mutant[random.int(0..<mutant.count)] = UInt8(truncatingIfNeeded: random.next())
            case 2: mutant.insert(random.pick(Array("{}[]\":,.-+eE0\\ u".utf8)), at: random.int(0..<mutant.count))
            default: mutant.remove(at: random.int(0..<mutant.count))
            }
            check(mutant, after: event, &tally)
        }
        #expect(tally["accepted", default: 0] > 700)
        #expect(tally["malformed-json", default: 0] > 300)
        #expect(tally["missing-feature", default: 0] > 50)
        #expect(tally["not-a-number", default: 0] > 50)

        // The learned layout is what the next decode reads: with the action learned for "amount"
        // pointed at "age", the value lands in age's column.
        decoder.forgetLayout()
        let event = Array("{\"amount\":1,\"age\":2,\"score\":3,\"ratio\":4,\"transaction_amount_7d_mean\":5,\"pad\":\"................................\"}".utf8)
        _ = run(event)
        #expect(row == [1, 2, 3, 4, 5])
        #expect(decoder.layout.lengths[0] == UInt8("\"amount\":".utf8.count) && decoder.layout.actions[0] == 0)
        decoder.layout.actions[0] = 1
        _ = run(event)
        #expect(row[1] == 2 || row[1] == 1)
        #expect(row[0].isNaN, "the second decode took the learned path: amount's value went to the column the layout names")
        decoder.forgetLayout()
        _ = run(event)
        #expect(row == [1, 2, 3, 4, 5])

        // Keys in a new order: more mismatches than matches forget the layout and rest it for 64
        // events (full path only, nothing learned); then it learns again, and the next event matches.
        let reordered = Array("{\"ratio\":4,\"score\":3,\"age\":2,\"amount\":1,\"transaction_amount_7d_mean\":5,\"pad\":\"................................\"}".utf8)
        #expect(run(reordered).failureCode == nil && row == [1, 2, 3, 4, 5])
        #expect(decoder.layout.lengths[0] == 0)
        for _ in 0..<MemberLayout.restEvents {
            #expect(run(event).failureCode == nil && row == [1, 2, 3, 4, 5])
            #expect(decoder.layout.lengths[0] == 0, "nothing learned while resting")
        }
        _ = run(event)
        #expect(decoder.layout.lengths[0] == UInt8("\"amount\":".utf8.count), "learning again after the rest")
        decoder.layout.actions[0] = 1
        _ = run(event)
        #expect(row[0].isNaN, "and using what it learned")
    }

    /// Expects our decision (and floats, bit for bit) to be jansson's for `bytes`, and counts the
    /// outcome in `tally`. `primer`: the event decoded just before by the same decoder.
    func compareWithJansson(_ bytes: [UInt8], _ ours: Result<EventID?, DecodeFailure>, _ row: [Float], _ schema: FeatureSchema,
                            _ tally: inout [String: Int], after primer: [UInt8]? = nil) {
        let context = String(decoding: bytes, as: UTF8.self) + (primer.map { " after " + String(decoding: $0, as: UTF8.self) } ?? "")
        let reference = referenceDecode(bytes, schema)
        switch (ours, reference) {
        case (.success, .accepted(let values)):
            #expect(row.map(\.bitPattern) == values.map(\.bitPattern), "\(context)")
            tally["accepted", default: 0] += 1
        case (.failure(let failure), .rejected(let code)):
            #expect(failure.code == code, "\(context): ours \(failure), jansson \(code)")
            tally[code.rawValue, default: 0] += 1
        case (_, .undecided):
            tally["undecided", default: 0] += 1
        default:
            Issue.record("decision differs for \(context): ours \(ours), jansson \(reference)")
        }
    }

    let handWritten: [[UInt8]] = [
        "{}", "{\"amount\":1,\"score\":2}", "{\"amount\":-0,\"score\":0.0}", "{\"amount\":1.5e+3,\"score\":-2E-2}",
        "{\"amount\":123456789012345678901234567890,\"score\":1}", "{\"amount\":0.1234567890123456789012345,\"score\":1}",
        "{\"amount\":4.9e-324,\"score\":1}", "{\"amount\":1e-50,\"score\":1}", "{\"amount\":3.4028235e38,\"score\":1}",
        "{\"amount\":3.5e38,\"score\":1}", "{\"amount\":1,\"amount\":\"x\",\"score\":1}", "{\"amount\":\"x\",\"amount\":2,\"score\":1}",
        "{\"a\\u006dount\":1,\"score\":1}", "{\"amount\":1,\"score\":1,\"s\":\"\\u0000\"}", "{\"amount\":1,\"score\":1,\"s\":\"tab\there\"}",
        "{\"amount\":1,\"score\":1,\"s\":\"\\x\"}", "{\"amount\":1,\"score\":1,}", "{\"amount\":1 \"score\":1}", "{\"amount\":.5,\"score\":1}",
        "{\"amount\":5.,\"score\":1}", "{\"amount\":+5,\"score\":1}", "{\"amount\":-,\"score\":1}", "{\"amount\":1e,\"score\":1}",
        "{\"amount\":tru,\"score\":1}", "{\"amount\":null,\"score\":null}", "{\"amount\":1,\"score\":1,\"s\":\"\\ud83d\\ude00\"}",
        "{\"amount\":1,\"score\":1,\"s\":\"\\udc00\"}", "  \n{\"amount\":1,\"score\":1}\t\r\n", "{\"amount\":1,\"score\":1}{}",
        "\"just a string\"", "42", "null", "{\"amount\":[1,[2,[3]]],\"score\":1}", "{\"amount\":1e308,\"score\":1}",
        "{\"amount\":2.2250738585072014e-308,\"score\":9007199254740993}",
    ].map { Array($0.utf8) }

    func randomEvent(_ random: inout TestRandom, keys: [String] = ["amount", "age", "score", "ratio", "id", "other", "nested", "amount"]) -> String {
        var fields = [String]()
        if random.int(0..<2) == 0 {  // half the events carry both required features
            fields.append("\"amount\": \(random.int(-500..<500)).\(random.int(0..<1000))")
            fields.append("\"score\":\(random.int(0..<99))e-\(random.int(0..<5))")
        }
        for _ in 0..<random.int(0..<9) {
            let key = random.pick(keys)
            let value: String
            switch random.int(0..<12) {
            case 0: value = "null"
            case 1: value = "\"\(random.int(0..<100))\""
            case 2: value = random.pick(["true", "false"])
            case 3: value = "{\"amount\": 1, \"x\": [null, 2.5]}"
            case 4: value = "[\(random.int(0..<9)), \"s\"]"
            case 5: value = "\(random.int(-1000..<1000))e\(random.int(-40..<40))"
            case 6: value = "-0.\(random.int(0..<1_000_000_000))"
            default:
                let whole = random.int(-100_000..<100_000), fraction = random.int(0..<10_000_000)
                value = "\(whole).\(fraction)"
            }
            fields.append("\"\(key)\"\(random.pick(["", " "])):\(random.pick(["", " ", "\n"]))\(value)")
        }
        return "{" + fields.joined(separator: random.pick([",", ", "])) + "}"
    }
}

extension Result where Failure == DecodeFailure {
    var failureCode: DecodeFailure.Code? {
        if case .failure(let f) = self { return f.code }
        return nil
    }
}
