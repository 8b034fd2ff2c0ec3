import Foundation
import Testing
import WeirDrift

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
    let cases: [Case]
    let kolmogorov: [Survival]

    static let loaded: Golden = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/statistics.json")
        return try! JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }()
}

func relativeError(_ got: Double, _ want: Double) -> Double {
    if got == want { return 0 }
    return abs(got - want) / max(abs(want), 1e-300)
}

@Suite struct StatisticsTests {
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
        var shuffled = golden.u
        shuffled.withUnsafeMutableBufferPointer { DriftStatistics.sortInPlace($0) }
        #expect(shuffled == u)
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

@Suite struct WindowTests {
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

@Suite struct ColumnRunTests {
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
