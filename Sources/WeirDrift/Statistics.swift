import Foundation

/// Drift statistics between a live window and a training reference. Each function says what it
/// computes and how it treats empty bins, so a figure can be reproduced with scipy
/// (scripts/make-drift-goldens.py does, and the tests compare).
public enum DriftStatistics {
    /// The probability used in place of an empty bin's 0 when computing PSI (both sides), so that
    /// a bin the reference never saw gives a large but finite term.
    public static let psiEpsilon = 1e-4

    /// Population stability index: Σ (w − r) · ln(w / r) over bins, with probabilities below
    /// `psiEpsilon` raised to it. `window` and `reference` are bin probabilities (each sums to 1).
    public static func psi(window: [Double], reference: [Double]) -> Double {
        precondition(window.count == reference.count, "PSI needs the same bins on both sides")
        var total = 0.0
        for (w, r) in zip(window, reference) {
            let wp = max(w, psiEpsilon), rp = max(r, psiEpsilon)
            total += (wp - rp) * Foundation.log(wp / rp)
        }
        return total
    }

    /// Jensen–Shannon distance in base 2 (the square root of the divergence, in [0, 1]), as
    /// `scipy.spatial.distance.jensenshannon(p, q, base=2)`: both sides are normalised first and
    /// empty bins contribute 0.
    public static func jensenShannon(_ p: [Double], _ q: [Double]) -> Double {
        precondition(p.count == q.count, "Jensen-Shannon needs the same bins on both sides")
        let ps = p.reduce(0, +), qs = q.reduce(0, +)
        guard ps > 0, qs > 0 else { return 0 }
        var divergence = 0.0
        for (a, b) in zip(p, q) {
            let pa = a / ps, qb = b / qs
            let m = (pa + qb) / 2
            if pa > 0 { divergence += pa * Foundation.log(pa / m) }
            if qb > 0 { divergence += qb * Foundation.log(qb / m) }
        }
        divergence /= 2 * Foundation.log(2.0)
        return max(divergence, 0).squareRoot()
    }

    /// Pearson's chi-square test of a window's category counts against the reference shares, as
    /// `scipy.stats.chisquare(observed, expected)`: the buckets are the reference categories and
    /// one for every category never seen in training, whose expected share is `psiEpsilon` (the
    /// reference shares scaled to leave it room). Returns the statistic and its p-value (K − 1
    /// degrees of freedom for K buckets); no observations give (0, 1).
    public static func chiSquare(observed: [Double], referenceShares: [Double]) -> (statistic: Double, p: Double) {
        precondition(observed.count == referenceShares.count + 1, "one observed count per category, and one for the unseen")
        let n = observed.reduce(0, +)
        guard n > 0, !referenceShares.isEmpty else { return (0, 1) }
        let scale = 1 - psiEpsilon
        var statistic = 0.0
        for (index, count) in observed.enumerated() {
            let share = index < referenceShares.count ? referenceShares[index] * scale : psiEpsilon
            let expected = n * Swift.max(share, psiEpsilon * psiEpsilon)
            statistic += (count - expected) * (count - expected) / expected
        }
        return (statistic, chiSquareSurvival(statistic, degrees: Double(observed.count - 1)))
    }

    /// P(X ≥ x) for a chi-square variable with `degrees` degrees of freedom: the regularized upper
    /// incomplete gamma Q(degrees / 2, x / 2), by its series below a + 1 and its continued fraction above.
    public static func chiSquareSurvival(_ x: Double, degrees: Double) -> Double {
        guard x > 0, degrees > 0 else { return 1 }
        let a = degrees / 2, z = x / 2
        let logPrefix = a * Foundation.log(z) - z - Foundation.lgamma(a)
        if z < a + 1 {
            var term = 1 / a, sum = term, k = a
            for _ in 0..<1000 {
                k += 1
                term *= z / k
                sum += term
                if Swift.abs(term) < Swift.abs(sum) * 1e-15 { break }
            }
            return Swift.max(0, Swift.min(1, 1 - sum * Foundation.exp(logPrefix)))
        }
        // Lentz's continued fraction for Q.
        let tiny = 1e-300
        var b = z + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1...1000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if Swift.abs(d) < tiny { d = tiny }
            c = b + an / c
            if Swift.abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if Swift.abs(delta - 1) < 1e-15 { break }
        }
        return Swift.max(0, Swift.min(1, Foundation.exp(logPrefix) * h))
    }

    /// Wasserstein-1 distance between two samples (each given sorted ascending), as
    /// `scipy.stats.wasserstein_distance(u, v)`: the area between the two empirical CDFs.
    public static func wasserstein(sorted u: [Double], sorted v: [Double]) -> Double {
        u.withUnsafeBufferPointer { ub in v.withUnsafeBufferPointer { ksAndWasserstein(sorted: ub, sorted: $0).wasserstein } }
    }

    /// KS statistic and Wasserstein-1 distance in one merge of the two sorted samples: what a
    /// window close needs, and what `kolmogorovSmirnov` and `wasserstein` return one part of.
    public static func ksAndWasserstein(sorted u: UnsafeBufferPointer<Double>, sorted v: UnsafeBufferPointer<Double>)
        -> (ks: Double, wasserstein: Double)
    {
        guard !u.isEmpty, !v.isEmpty else { return (0, 0) }
        var i = 0, j = 0
        var previous = min(u[0], v[0])
        var area = 0.0, d = 0.0
        let su = 1 / Double(u.count), sv = 1 / Double(v.count)
        while i < u.count || j < v.count {
            let next: Double
            if j >= v.count || (i < u.count && u[i] <= v[j]) { next = u[i] } else { next = v[j] }
            area += abs(Double(i) * su - Double(j) * sv) * (next - previous)
            previous = next
            while i < u.count && u[i] == next { i += 1 }
            while j < v.count && v[j] == next { j += 1 }
            d = max(d, abs(Double(i) * su - Double(j) * sv))
        }
        return (d, area)
    }

    /// Sorts floats ascending in place by their bits (least significant digit radix sort, 8-bit
    /// digits, digits that every value shares skipped): no data-dependent branches, which makes a
    /// window close's few hundred values several times cheaper than a comparison sort. `scratch`
    /// holds at least `values.count` floats. -0 sorts before +0; NaNs go to the ends.
    public static func radixSort(_ values: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let count = values.count
        guard count > 1, let base = values.baseAddress else { return }
        base.withMemoryRebound(to: UInt32.self, capacity: count) { keys in
            scratch.withMemoryRebound(to: UInt32.self, capacity: count) { spare in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: 4 * 256) { counts in
                    radixSortKeys(keys, spare, count: count, counts: counts.baseAddress!)
                }
            }
        }
    }

    private static func radixSortKeys(_ keys: UnsafeMutablePointer<UInt32>, _ spare: UnsafeMutablePointer<UInt32>, count: Int,
                                      counts: UnsafeMutablePointer<Int>) {
        counts.initialize(repeating: 0, count: 4 * 256)
        // Order-preserving keys: flip every bit of negatives, only the sign bit of positives.
        for index in 0..<count {
            let bits = keys[index]
            let key = bits ^ (UInt32(bitPattern: Int32(bitPattern: bits) >> 31) | 0x8000_0000)
            keys[index] = key
            counts[Int(key & 0xFF)] &+= 1
            counts[256 + Int((key >> 8) & 0xFF)] &+= 1
            counts[512 + Int((key >> 16) & 0xFF)] &+= 1
            counts[768 + Int(key >> 24)] &+= 1
        }
        var source = keys, target = spare
        for digit in 0..<4 {
            let table = counts + digit * 256
            let shift = UInt32(digit * 8)
            // Every key has the same digit here: this pass would not move anything.
            if table[Int((source[0] >> shift) & 0xFF)] == count { continue }
            var total = 0
            for bucket in 0..<256 {
                let here = table[bucket]
                table[bucket] = total
                total &+= here
            }
            for index in 0..<count {
                let key = source[index]
                let bucket = Int((key >> shift) & 0xFF)
                target[table[bucket]] = key
                table[bucket] &+= 1
            }
            Swift.swap(&source, &target)
        }
        if source != keys { keys.update(from: source, count: count) }
        for index in 0..<count {
            let key = keys[index]
            // Undo the key transform: keys with the top bit set were positives.
            keys[index] = key ^ (key & 0x8000_0000 != 0 ? 0x8000_0000 : 0xFFFF_FFFF)
        }
    }

    /// Two-sample Kolmogorov–Smirnov statistic D = sup |F_u − F_v| (samples sorted ascending), as
    /// `scipy.stats.ks_2samp(u, v).statistic`.
    public static func kolmogorovSmirnov(sorted u: [Double], sorted v: [Double]) -> Double {
        u.withUnsafeBufferPointer { ub in v.withUnsafeBufferPointer { ksAndWasserstein(sorted: ub, sorted: $0).ks } }
    }

    /// The asymptotic two-sided p-value of a two-sample KS statistic: the Kolmogorov distribution's
    /// survival function at √(n·m/(n+m))·D, as `scipy.stats.kstwobign.sf`.
    public static func kolmogorovSmirnovPValue(d: Double, n: Int, m: Int) -> Double {
        guard n > 0, m > 0 else { return 1 }
        let en = Double(n) * Double(m) / Double(n + m)
        return kolmogorovSurvival(en.squareRoot() * d)
    }

    /// Q(λ) = P(K > λ) of the Kolmogorov distribution, by whichever of its two series converges fast.
    public static func kolmogorovSurvival(_ lambda: Double) -> Double {
        if lambda <= 0 { return 1 }
        if lambda < 1.0 {
            // 1 − Q(λ) = √(2π)/λ · Σ_{k≥1} exp(−(2k−1)²π²/(8λ²))
            let factor = -Double.pi * Double.pi / (8 * lambda * lambda)
            var sum = 0.0
            for k in 1...50 {
                let odd = Double(2 * k - 1)
                let term = Foundation.exp(factor * odd * odd)
                sum += term
                if term < 1e-18 * sum { break }
            }
            return 1 - (2 * Double.pi).squareRoot() / lambda * sum
        }
        // Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} exp(−2k²λ²)
        var sum = 0.0
        for k in 1...100 {
            let term = Foundation.exp(-2 * Double(k * k) * lambda * lambda)
            sum += (k % 2 == 1 ? term : -term)
            if term < 1e-18 { break }
        }
        return min(max(2 * sum, 0), 1)
    }

    /// Quantile of sorted values with linear interpolation (numpy's default `linear` method).
    public static func quantile(sorted values: [Double], _ q: Double) -> Double {
        precondition(!values.isEmpty)
        let position = q * Double(values.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, values.count - 1)
        let fraction = position - Double(lower)
        return values[lower] + (values[upper] - values[lower]) * fraction
    }
}

/// The reference side of KS and Wasserstein, prepared once per column: the sorted sample and the
/// running integral of its count function J(t) = #{sample ≤ t}. A window's sorted values are then
/// compared segment by segment (between two window values the window's CDF is constant, and the
/// area between the CDFs follows from the integral at the segment's ends and at the one point where
/// the reference's CDF crosses it), stepping through the reference instead of merging with it.
/// Same results as `DriftStatistics.ksAndWasserstein` up to rounding.
public struct ReferenceCDF: Sendable {
    /// integral[k] = ∫ from sample[0] to sample[k] of J(t) dt.
    private let integral: [Double]
    /// The sample followed by 16 × +infinity, so counting steps need no bounds checks.
    private let padded: [Double]
    private let count: Int

    public init(sorted sample: [Double]) {
        count = sample.count
        padded = sample + [Double](repeating: .infinity, count: 16)
        var integral = [Double](repeating: 0, count: sample.count)
        for k in sample.indices.dropFirst() { integral[k] = integral[k - 1] + Double(k) * (sample[k] - sample[k - 1]) }
        self.integral = integral
    }

    /// KS statistic and Wasserstein-1 distance between the window's values (sorted ascending) and
    /// the reference sample.
    public func ksAndWasserstein<Value: BinaryFloatingPoint>(sorted window: UnsafeBufferPointer<Value>) -> (ks: Double, wasserstein: Double) {
        let n = window.count, m = count
        guard n > 0, m > 0 else { return (0, 0) }
        return padded.withUnsafeBufferPointer { v in
            integral.withUnsafeBufferPointer { h in
                let inverseN = 1 / Double(n), inverseM = 1 / Double(m)
                // ∫ from -∞ to x of J, where k = #{sample ≤ x}.
                @inline(__always) func area(upTo x: Double, _ k: Int) -> Double { k == 0 ? 0 : h[k - 1] + Double(k) * (x - v[k - 1]) }
                // #{sample < x} from a known lower count: whole blocks of 16, then a branch-free
                // count within one block (the sample is sorted; the padding is never below x).
                @inline(__always) func countBelow(_ x: Double, from start: Int) -> Int {
                    var index = start
                    while v[index + 15] < x { index += 16 }
                    let block = UnsafeRawPointer(v.baseAddress! + index), bound = SIMD4<Double>(repeating: x)
                    var within = SIMD4<Int64>()
                    for part in 0..<4 {
                        within &-= unsafeBitCast(block.loadUnaligned(fromByteOffset: part * 32, as: SIMD4<Double>.self) .< bound,
                                                 to: SIMD4<Int64>.self)
                    }
                    return index + Int(within.wrappedSum())
                }
                @inline(__always) func countAtOrBelow(_ x: Double, from below: Int) -> Int {
                    var index = below
                    while index < m && v[index] <= x { index += 1 }
                    return index
                }
                var x = Double(window[0])
                var below = countBelow(x, from: 0)  // #{sample < x}
                var atOrBelow = countAtOrBelow(x, from: below)  // #{sample ≤ x}
                // Before the first window value the window's CDF is 0.
                var d = Double(below) * inverseM
                var total = area(upTo: x, atOrBelow) * inverseM
                // crossing = ⌈i·m/n⌉ kept as i·m = quotient·n + remainder, stepped without division.
                let step = m / n, stepRemainder = m % n
                var quotient = 0, remainder = 0
                for i in 1..<n {
                    quotient += step
                    remainder += stepRemainder
                    if remainder >= n { remainder -= n; quotient += 1 }
                    let a = x, ka = atOrBelow
                    let b = Double(window[i])
                    below = countBelow(b, from: below)
                    atOrBelow = countAtOrBelow(b, from: Swift.max(atOrBelow, below))
                    x = b
                    guard b > a else { continue }  // tied window values: an empty segment
                    // On [a, b) the window's CDF is c; the reference's runs from ka/m to below/m.
                    let c = Double(i) * inverseN
                    d = Swift.max(d, abs(c - Double(ka) * inverseM), abs(c - Double(below) * inverseM))
                    // The reference's CDF is below c before t = sample[crossing - 1], at or above it after.
                    let crossing = remainder == 0 ? quotient : quotient + 1
                    let t = v[crossing - 1], ht = h[crossing - 1]
                    let ha = area(upTo: a, ka), hb = area(upTo: b, atOrBelow)
                    if a < t {
                        let (q, hq) = t < b ? (t, ht) : (b, hb)
                        total += c * (q - a) - (hq - ha) * inverseM
                    }
                    if t < b {
                        let (p, hp) = a < t ? (t, ht) : (a, ha)
                        total += (hb - hp) * inverseM - c * (b - p)
                    }
                }
                // After the last window value its CDF is 1.
                d = Swift.max(d, 1 - Double(atOrBelow) * inverseM)
                let last = v[m - 1]
                if x < last { total += (last - x) - (h[m - 1] - area(upTo: x, atOrBelow)) * inverseM }
                return (d, total)
            }
        }
    }
}
