import Foundation
import Testing
import WeirTestSupport
@testable import WeirDrift

/// Golden values from scripts/make-drift-goldens.py (scipy, numpy), committed as data.
struct Golden: Decodable {
    struct Case: Decodable {
        let name: String
        let u: [Double]
        let v: [Double]
        let ks: Double
        let ks_p: Double
        let wasserstein: Double
        let reference_bins: [Double]
        let window_bins: [Double]
        let js: Double
        let psi: Double
        let quantiles: [Double]
    }
    struct Survival: Decodable {
        let lambda: Double
        let sf: Double
    }
    struct ChiSquareCase: Decodable {
        let name: String
        let observed: [Double]
        let shares: [Double]
        let statistic: Double
        let p: Double
    }
    struct ChiSquareSurvival: Decodable {
        let x: Double
        let dof: Double
        let sf: Double
    }
    let cases: [Case]
    let kolmogorov: [Survival]
    let chi_square: [ChiSquareCase]
    let chi2_survival: [ChiSquareSurvival]

    static let loaded: Golden = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/statistics.json")
        return try! JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }()
}

func relativeError(_ got: Double, _ want: Double) -> Double {
    if got == want { return 0 }
    return abs(got - want) / max(abs(want), 1e-300)
}

@Suite(.timeLimit(.minutes(5))) struct StatisticsTests {
    @Test(arguments: Golden.loaded.cases.map(\.name))
    func matchesScipy(name: String) throws {
        let golden = Golden.loaded.cases.first { $0.name == name }!
        let u = golden.u.sorted(), v = golden.v.sorted()
        let d = DriftStatistics.kolmogorovSmirnov(sorted: u, sorted: v)
        #expect(relativeError(d, golden.ks) <= 1e-9, "KS D \(d) vs scipy \(golden.ks)")
        let p = DriftStatistics.kolmogorovSmirnovPValue(d: d, n: u.count, m: v.count)
        #expect(relativeError(p, golden.ks_p) <= 1e-9 || abs(p - golden.ks_p) <= 1e-15, "KS p \(p) vs scipy \(golden.ks_p)")
        let w = DriftStatistics.wasserstein(sorted: u, sorted: v)
        let both = u.withUnsafeBufferPointer { ub in v.withUnsafeBufferPointer { DriftStatistics.ksAndWasserstein(sorted: ub, sorted: $0) } }
        #expect(relativeError(both.ks, golden.ks) <= 1e-9 && relativeError(both.wasserstein, golden.wasserstein) <= 1e-9)
        // The window close's path: the reference prepared once, the window stepped through.
        let prepared = u.withUnsafeBufferPointer { ReferenceCDF(sorted: v).ksAndWasserstein(sorted: $0) }
        #expect(relativeError(prepared.ks, golden.ks) <= 1e-9, "prepared KS \(prepared.ks) vs scipy \(golden.ks)")
        #expect(relativeError(prepared.wasserstein, golden.wasserstein) <= 1e-9,
                "prepared Wasserstein \(prepared.wasserstein) vs scipy \(golden.wasserstein)")
        #expect(relativeError(w, golden.wasserstein) <= 1e-9, "Wasserstein \(w) vs scipy \(golden.wasserstein)")
        let js = DriftStatistics.jensenShannon(golden.window_bins, golden.reference_bins)
        #expect(relativeError(js, golden.js) <= 1e-9, "JS \(js) vs scipy \(golden.js)")
        let psi = DriftStatistics.psi(window: golden.window_bins, reference: golden.reference_bins)
        #expect(relativeError(psi, golden.psi) <= 1e-9, "PSI \(psi) vs formula \(golden.psi)")
        for (index, want) in golden.quantiles.enumerated() {
            let got = DriftStatistics.quantile(sorted: golden.u.sorted(), Double(index) / 20)
            #expect(relativeError(got, want) <= 1e-12 || abs(got - want) <= 1e-15, "quantile \(index)/20")
        }
    }

    @Test("Chi-square of category counts (with the unseen bucket) and its p-value match scipy.stats.chisquare")
    func chiSquareMatchesScipy() {
        for golden in Golden.loaded.chi_square {
            let (statistic, p) = DriftStatistics.chiSquare(observed: golden.observed, referenceShares: golden.shares)
            #expect(relativeError(statistic, golden.statistic) < 1e-9, "\(golden.name): \(statistic) vs \(golden.statistic)")
            #expect(abs(p - golden.p) < 1e-9 || relativeError(p, golden.p) < 1e-6, "\(golden.name): p \(p) vs \(golden.p)")
        }
    }

    @Test("The chi-square survival function matches scipy.stats.chi2.sf in both of its regimes")
    func chiSquareSurvivalMatchesScipy() {
        for point in Golden.loaded.chi2_survival {
            let sf = DriftStatistics.chiSquareSurvival(point.x, degrees: point.dof)
            #expect(abs(sf - point.sf) < 1e-12 || relativeError(sf, point.sf) < 1e-7, "x \(point.x), dof \(point.dof): \(sf) vs \(point.sf)")
        }
    }

    @Test func kolmogorovSurvivalMatchesScipyOnBothSeries() {
        for point in Golden.loaded.kolmogorov {
            let got = DriftStatistics.kolmogorovSurvival(point.lambda)
            #expect(relativeError(got, point.sf) <= 1e-9, "Q(\(point.lambda)) = \(got), scipy \(point.sf)")
        }
    }

    @Test func referenceBinsCoverTheTrainingValues() {
        let values: [Double?] = (0..<1000).map { Double($0 % 100) } + [nil, nil]
        let profile = ReferenceProfile(name: "x", values: values)
        #expect(profile.count == 1000)
        #expect(abs(profile.missingRate - 2.0 / 1002.0) < 1e-15)
        #expect(profile.edges.first == 0 && profile.edges.last == 99)
        #expect(profile.probabilities.first == 0 && profile.probabilities.last == 0, "no training value under- or overflows")
        #expect(abs(profile.probabilities.reduce(0, +) - 1) < 1e-12)
        #expect(profile.bin(of: -1) == 0)
        #expect(profile.bin(of: 100) == profile.edges.count)
        #expect(profile.bin(of: 99) == profile.edges.count - 1, "the maximum falls in the last inner bin")
        #expect(abs(profile.mean - 49.5) < 1e-12)
        let constant = ReferenceProfile(name: "c", values: Array(repeating: 3.0, count: 50))
        #expect(constant.edges == [3, 3])
        #expect(constant.bin(of: 3) == 1 && constant.bin(of: 2) == 0 && constant.bin(of: 4) == 2)
        #expect(constant.probabilities == [0, 1, 0])
    }

    @Test func calibratedThresholdsSeparateAShiftFromNoise() {
        var state: UInt64 = 42
        func gaussian() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u1 = max(Double(state >> 11) / Double(1 << 53), 1e-12)
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u2 = Double(state >> 11) / Double(1 << 53)
            return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
        }
        let profile = ReferenceProfile(name: "f", values: (0..<5000).map { _ in gaussian() })
        let thresholds = DriftReference.calibrate([profile], windowEvents: 500)
        #expect(thresholds.calibrated)
        let psiLimit = thresholds.psi["f"]!
        #expect(psiLimit > 0 && psiLimit < DriftReference.Thresholds.fallbackPSI)
        func windowPSI(shift: Double) -> Double {
            var counts = [Double](repeating: 0, count: profile.probabilities.count)
            for _ in 0..<500 { counts[profile.bin(of: gaussian() + shift)] += 1 }
            return DriftStatistics.psi(window: counts.map { $0 / 500 }, reference: profile.probabilities)
        }
        #expect(windowPSI(shift: 1) > psiLimit * 3, "a one-std shift is far above the threshold")
        let calm = (0..<20).filter { _ in windowPSI(shift: 0) > psiLimit }.count
        #expect(calm <= 2, "stationary windows rarely pass the p99 threshold (\(calm) of 20)")
    }
}

@Suite(.timeLimit(.minutes(5))) struct WindowTests {
    let reference: DriftReference = {
        let profile = ReferenceProfile(name: "x", values: (0..<1000).map { Double($0 % 10) })
        return DriftReference(features: [profile], predictions: [], thresholds: DriftReference.calibrate([profile], windowEvents: 100),
                              createdBy: "test")
    }()

    @Test func eventTimeClosesWindowsAndLateEventsJoinTheOpenOne() {
        let window = DriftWindow(reference: reference, maxEvents: 1000, maxMs: 1000)
        #expect(!window.closesBefore(timestampMs: 5_000), "an empty window never closes")
        for (offset, time) in [Int64(10_000), 10_500, 10_200, 10_999].enumerated() {
            #expect(!window.closesBefore(timestampMs: time))
            window.noteEvent(timestampMs: time, topic: "events", partition: 0, offset: Int64(offset))
            window.addFeature(0, 1, missing: false)
        }
        // Out of order within the span (10,200 after 10,500) stayed in the window; the span ends at first + 1000.
        #expect(window.closesBefore(timestampMs: 11_000))
        let closed = window.close()
        #expect(closed.events == 4)
        #expect(closed.startMs == 10_000 && closed.endMs == 10_999)
        #expect(closed.offsets["events"]?[0]?.first == 0 && closed.offsets["events"]?[0]?.last == 3)
        // A late event (older than the closed window) goes to the new, open window.
        window.noteEvent(timestampMs: 11_000, topic: "events", partition: 0, offset: 4)
        #expect(!window.closesBefore(timestampMs: 10_100))
        window.noteEvent(timestampMs: 10_100, topic: "events", partition: 0, offset: 5)
        #expect(window.close().startMs == 10_100)
    }

    @Test func eventsWithoutATimeNeitherMoveNorCloseTheWindow() {
        let window = DriftWindow(reference: reference, maxEvents: 1000, maxMs: 1000)
        window.noteEvent(timestampMs: nil, topic: "events", partition: 0, offset: 0)
        #expect(!window.closesBefore(timestampMs: nil))
        window.noteEvent(timestampMs: 20_000, topic: "events", partition: 0, offset: 1)
        window.noteEvent(timestampMs: nil, topic: "events", partition: 0, offset: 2)
        #expect(!window.closesBefore(timestampMs: nil) && !window.closesBefore(timestampMs: 20_999))
        #expect(window.closesBefore(timestampMs: 21_000), "the span began with the first timed event")
        let closed = window.close()
        #expect(closed.events == 3 && closed.startMs == 20_000 && closed.endMs == 20_000)
        // A time at the end of Int64 ends the span at the end of time instead of trapping.
        window.noteEvent(timestampMs: .max - 10, topic: "events", partition: 0, offset: 3)
        #expect(!window.closesBefore(timestampMs: .max - 5))
        #expect(window.close().endMs == .max - 10)
    }

    @Test func countClosesWindowsAndMissingValuesAreCounted() {
        let window = DriftWindow(reference: reference, maxEvents: 3, maxMs: nil)
        for offset in 0..<3 {
            window.noteEvent(timestampMs: 0, topic: "t", partition: 1, offset: Int64(offset))
            window.addFeature(0, Float(offset), missing: offset == 2)
        }
        #expect(window.isFull && window.closesBefore(timestampMs: 0))
        let closed = window.close()
        #expect(closed.features[0].n == 2 && closed.features[0].missing == 1)
        #expect(window.isEmpty)
    }
}

@Suite(.timeLimit(.minutes(5))) struct ColumnRunTests {
    @Test func columnRunsEqualValueByValueAccumulation() {
        let profiles = (0..<3).map { column in ReferenceProfile(name: "c\(column)", values: (0..<500).map { Double(($0 * 7 + column) % 50) }) }
        let reference = DriftReference(features: profiles, predictions: [], thresholds: DriftReference.calibrate(profiles, windowEvents: 100),
                                       createdBy: "test")
        var matrix = [Float]()
        var missing = [Bool]()
        for row in 0..<300 {
            for column in 0..<3 {
                matrix.append(Float((row * 13 + column * 5) % 60) - 3.5)
                missing.append((row + column) % 17 == 0)
            }
        }
        let byValue = DriftWindow(reference: reference, maxEvents: 10_000, maxMs: nil)
        let byColumn = DriftWindow(reference: reference, maxEvents: 10_000, maxMs: nil)
        let rows = (0..<300).filter { $0 % 5 != 4 }.map(Int32.init)  // some rows left out, as model errors are
        for row in rows {
            byValue.noteEvent(timestampMs: 0, topic: "t", partition: 0, offset: Int64(row))
            byColumn.noteEvent(timestampMs: 0, topic: "t", partition: 0, offset: Int64(row))
            for column in 0..<3 {
                byValue.addFeature(column, matrix[Int(row) * 3 + column], missing: missing[Int(row) * 3 + column])
            }
        }
        // Two runs, as a window filled over two batches.
        let split = rows.count / 2
        matrix.withUnsafeBufferPointer { values in
            missing.withUnsafeBufferPointer { flags in
                rows[..<split].withUnsafeBufferPointer { byColumn.addFeatureRows(values.baseAddress!, rows: $0, missing: flags.baseAddress!) }
                rows[split...].withUnsafeBufferPointer { byColumn.addFeatureRows(values.baseAddress!, rows: $0, missing: flags.baseAddress!) }
            }
        }
        let a = byValue.close(), b = byColumn.close()
        for (x, y) in zip(a.features, b.features) {
            #expect(x.n == y.n && x.missing == y.missing && x.outOfRange == y.outOfRange)
            #expect(abs(x.mean - y.mean) <= 1e-12 * max(1, abs(x.mean)))
            #expect(abs(x.std - y.std) <= 1e-12 * max(1, x.std))
            #expect(x.psi == y.psi && x.js == y.js && x.ks == y.ks && x.wasserstein == y.wasserstein)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct FastPathTests {
    /// The prepared reference (segment by segment) against the plain merge, on samples with ties,
    /// windows wider and narrower than the reference, and single values.
    @Test func preparedReferenceEqualsTheMerge() {
        var random = TestRandom(state: 7)
        for trial in 0..<300 {
            let m = random.int(1..<2_000), n = random.int(1..<300)
            let tied = trial % 3 == 0
            let spread = trial % 5 == 0 ? 3.0 : 1.0
            func draw(_ shift: Double) -> Double {
                let value = (random.uniform() - 0.5) * 10 * spread + shift
                return tied ? value.rounded() : value
            }
            let reference = (0..<m).map { _ in draw(0) }.sorted()
            let window = (0..<n).map { _ in Double(Float(draw(trial % 2 == 0 ? 0 : 1.5))) }.sorted()
            let merged = window.withUnsafeBufferPointer { w in reference.withUnsafeBufferPointer { DriftStatistics.ksAndWasserstein(sorted: w, sorted: $0) } }
            let prepared = window.map(Float.init).withUnsafeBufferPointer { ReferenceCDF(sorted: reference).ksAndWasserstein(sorted: $0) }
            #expect(abs(prepared.ks - merged.ks) <= 1e-12, "trial \(trial): KS \(prepared.ks) vs \(merged.ks)")
            #expect(abs(prepared.wasserstein - merged.wasserstein) <= 1e-11 * max(1, merged.wasserstein),
                    "trial \(trial): Wasserstein \(prepared.wasserstein) vs \(merged.wasserstein)")
        }
    }

    @Test(arguments: [0, 1, 2, 7, 256, 1_000])
    func radixSortSortsFloats(count: Int) {
        var random = TestRandom(state: UInt64(count) + 1)
        var values = (0..<count).map { index -> Float in
            switch index % 6 {
            case 0: return Float(random.int(-3..<4))  // ties, zeros
            case 1: return -Float(random.uniform() * 1e6)
            case 2: return Float(random.uniform() * 1e-30)
            case 3: return index % 12 == 3 ? -0.0 : .greatestFiniteMagnitude
            default: return Float((random.uniform() - 0.5) * 100)
            }
        }
        let expected = values.sorted()
        var scratch = [Float](repeating: 0, count: max(count, 1))
        values.withUnsafeMutableBufferPointer { buffer in scratch.withUnsafeMutableBufferPointer { DriftStatistics.radixSort(buffer, scratch: $0.baseAddress!) } }
        #expect(values == expected)
    }

    /// Eight columns at a time with float edges against the double-edged reference rule, value by
    /// value: bins, out-of-range counts, moments and the kept values, with 11 columns (a partial
    /// group of eight), missing values in some rows and more rows than the reservoir keeps.
    @Test func rowsByGroupsOfEightEqualTheReferenceRules() {
        var random = TestRandom(state: 42)
        let columns = 11
        // Edges that floats cannot represent (thirds), and values placed on, just above and just below them.
        let profiles = (0..<columns).map { column in
            ReferenceProfile(name: "c\(column)", values: (0..<600).map { Double($0 % 97) / 3 + Double(column) / 7 })
        }
        let reference = DriftReference(features: profiles, predictions: [], thresholds: DriftReference.calibrate(profiles, windowEvents: 100),
                                       createdBy: "test")
        let rows = 700
        var matrix = [Float](), missing = [Bool]()
        for row in 0..<rows {
            for column in 0..<columns {
                let edges = profiles[column].edges
                let edge = Float(edges[random.int(0..<edges.count)])
                let value: Float
                switch random.int(0..<5) {
                case 0: value = edge
                case 1: value = edge.nextUp
                case 2: value = edge.nextDown
                case 3: value = Float(random.uniform() * 40 - 5)  // out of range at both ends too
                default: value = Float(profiles[column].max)
                }
                matrix.append(value)
                missing.append(row % 50 > 40 && (row + column) % 4 == 0)
            }
        }
        let window = DriftWindow(reference: reference, maxEvents: 100_000, maxMs: nil)
        let indices = (0..<rows).filter { $0 % 9 != 8 }.map(Int32.init)
        matrix.withUnsafeBufferPointer { values in
            missing.withUnsafeBufferPointer { flags in
                for start in stride(from: 0, to: indices.count, by: 128) {
                    indices[start..<min(start + 128, indices.count)].withUnsafeBufferPointer {
                        window.addFeatureRows(values.baseAddress!, rows: $0, missing: flags.baseAddress!)
                    }
                }
            }
        }
        let closed = window.close()
        for column in 0..<columns {
            let present = indices.map { Int($0) * columns + column }.filter { !missing[$0] }.map { Double(matrix[$0]) }
            let profile = profiles[column]
            var bins = [Double](repeating: 0, count: profile.edges.count + 1)
            for value in present { bins[profile.bin(of: value)] += 1 }
            let expectedPSI = DriftStatistics.psi(window: bins.map { $0 / Double(present.count) }, reference: profile.probabilities)
            let got = closed.features[column]
            #expect(got.n == present.count && got.missing == indices.count - present.count)
            #expect(got.outOfRange == present.filter { $0 < profile.min || $0 > profile.max }.count)
            #expect(got.psi == expectedPSI, "column \(column): bins differ from the double-edged rule")
            let mean = present.reduce(0, +) / Double(present.count)
            let variance = present.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(present.count - 1)
            #expect(abs(got.mean - mean) <= 1e-12 * max(1, abs(mean)))
            #expect(abs(got.std - variance.squareRoot()) <= 1e-12 * max(1, variance.squareRoot()))
            #expect(got.ks > 0 && got.ks <= 1)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct ReservoirTests {
    /// Beyond its limit the reservoir keeps a uniform sample: whole rows while no value is missing,
    /// per column after one is, and only values the column really had.
    @Test func keepsWholeRowsThenPerColumnValues() {
        let columns = 10, limit = 64
        let profiles = (0..<columns).map { ReferenceProfile(name: "c\($0)", values: (0..<100).map(Double.init)) }
        let store = ColumnStore(profiles, valueLimit: limit)
        // Value = row * 16 + column: the row is recoverable from any kept value.
        let rows = 2_000
        let matrix = (0..<rows * columns).map { Float(($0 / columns) * 16 + $0 % columns) }
        var random: UInt64 = 99
        var firstHalfKept = [[Int]]()
        matrix.withUnsafeBufferPointer { values in
            let firstHalf = (0..<rows / 2).map(Int32.init)
            firstHalf.withUnsafeBufferPointer { store.addRows(values.baseAddress!, stride: columns, rows: $0, missingFlags: nil, random: &random) }
            #expect(store.uniform && store.count(3) == rows / 2 && store.keptCount(3) == limit)
            for slot in 0..<limit {
                let keptRows = (0..<columns).map { Int(store.values[slot * columns + $0]) / 16 }
                #expect(Set(keptRows).count == 1, "slot \(slot) holds one row across columns")
                firstHalfKept.append(keptRows)
            }
            let spread = Set(firstHalfKept.map { $0[0] })
            #expect(spread.count == limit && spread.contains { $0 >= rows / 4 }, "later rows replace early ones")
            // Second half: column 0 is missing in every other row.
            var flags = [Bool](repeating: false, count: rows * columns)
            for row in stride(from: rows / 2, to: rows, by: 2) { flags[row * columns] = true }
            let secondHalf = (rows / 2..<rows).map(Int32.init)
            flags.withUnsafeBufferPointer { missing in
                secondHalf.withUnsafeBufferPointer { store.addRows(values.baseAddress!, stride: columns, rows: $0, missingFlags: missing.baseAddress!, random: &random) }
            }
        }
        #expect(!store.uniform)
        #expect(store.count(0) == rows - rows / 4 && store.missing[0] == rows / 4 && store.count(1) == rows)
        for column in 0..<columns {
            let kept = store.sortedValues(column)
            #expect(kept.count == limit)
            #expect(kept.allSatisfy { Int($0) % 16 == column }, "column \(column) keeps only its own values")
            #expect(kept.contains { Int($0) / 16 >= rows / 2 }, "column \(column) samples the second half too")
        }
        #expect(store.sortedValues(0).allSatisfy { (Int($0) / 16) < rows / 2 || (Int($0) / 16) % 2 == 1 },
                "column 0 never keeps a value from a row where it was missing")
    }
}
