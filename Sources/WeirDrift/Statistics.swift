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

    /// Sorts in place (introsort-style quicksort; unstable, which doubles do not mind): faster than
    /// the standard library's stable sort for a window close.
    public static func sortInPlace(_ values: UnsafeMutableBufferPointer<Double>) {
        guard values.count > 1, let base = values.baseAddress else { return }
        quicksort(base, 0, values.count - 1, depth: 2 * (Int.bitWidth - values.count.leadingZeroBitCount))
    }

    @inline(__always)
    private static func swap(_ a: UnsafeMutablePointer<Double>, _ i: Int, _ j: Int) {
        let t = a[i]; a[i] = a[j]; a[j] = t
    }

    private static func quicksort(_ a: UnsafeMutablePointer<Double>, _ low: Int, _ high: Int, depth: Int) {
        var low = low, high = high, depth = depth
        while high - low > 16 {
            if depth == 0 {
                var rest = UnsafeMutableBufferPointer(start: a + low, count: high - low + 1)
                rest.sort()
                return
            }
            depth -= 1
            let middle = low + (high - low) / 2
            if a[middle] < a[low] { swap(a, middle, low) }
            if a[high] < a[low] { swap(a, high, low) }
            if a[high] < a[middle] { swap(a, high, middle) }
            let pivot = a[middle]
            var i = low, j = high
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j { swap(a, i, j); i += 1; j -= 1 }
            }
            // Recurse into the smaller side, loop on the larger.
            if j - low < high - i {
                if low < j { quicksort(a, low, j, depth: depth) }
                low = i
            } else {
                if i < high { quicksort(a, i, high, depth: depth) }
                high = j
            }
        }
        if high > low {
            for k in (low + 1)...high {
                let value = a[k]
                var m = k - 1
                while m >= low && a[m] > value { a[m + 1] = a[m]; m -= 1 }
                a[m + 1] = value
            }
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
