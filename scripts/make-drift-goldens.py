#!/usr/bin/env python3
"""Golden values for WeirDrift's statistics, computed with scipy and numpy.

Run from the repository root: python3 scripts/make-drift-goldens.py
Writes Tests/WeirDriftTests/Fixtures/statistics.json: cases with their inputs and
  ks          scipy.stats.ks_2samp(u, v).statistic
  ks_p        scipy.stats.kstwobign.sf(sqrt(n*m/(n+m)) * ks)   (the asymptotic p-value Weir reports)
  wasserstein scipy.stats.wasserstein_distance(u, v)
  js          scipy.spatial.distance.jensenshannon(p, q, base=2)
  psi         sum((w - r) * ln(w / r)) with probabilities below 1e-4 raised to 1e-4
  quantiles   numpy.quantile(u, [0, .05, ..., 1]) (linear)
Requires: numpy, scipy.
"""
import json
import os

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chisquare, ks_2samp, kstwobign, wasserstein_distance

EPSILON = 1e-4


def psi(w, r):
    w = np.maximum(np.asarray(w, dtype=float), EPSILON)
    r = np.maximum(np.asarray(r, dtype=float), EPSILON)
    return float(np.sum((w - r) * np.log(w / r)))


def main():
    rng = np.random.default_rng(20261122)
    cases = []
    shapes = [
        ("same normal", lambda: rng.normal(0, 1, 500), lambda: rng.normal(0, 1, 700)),
        ("shifted normal", lambda: rng.normal(0, 1, 1000), lambda: rng.normal(0.5, 1, 300)),
        ("wider", lambda: rng.normal(0, 1, 200), lambda: rng.normal(0, 3, 250)),
        ("discrete with ties", lambda: rng.integers(0, 5, 400).astype(float), lambda: rng.integers(0, 6, 350).astype(float)),
        ("exponential vs normal", lambda: rng.exponential(1, 800), lambda: rng.normal(1, 1, 800)),
        ("tiny", lambda: np.array([1.0, 2.0, 3.0]), lambda: np.array([2.5, 4.0])),
        ("far apart", lambda: rng.normal(0, 1, 100), lambda: rng.normal(10, 1, 100)),
    ]
    for name, make_u, make_v in shapes:
        u, v = make_u(), make_v()
        d = ks_2samp(u, v).statistic
        n, m = len(u), len(v)
        bins = rng.random(12)
        window = rng.random(12)
        window[3] = 0.0
        bins /= bins.sum()
        window /= window.sum()
        cases.append({
            "name": name,
            "u": u.tolist(), "v": v.tolist(),
            "ks": float(d),
            "ks_p": float(kstwobign.sf(np.sqrt(n * m / (n + m)) * d)),
            "wasserstein": float(wasserstein_distance(u, v)),
            "reference_bins": bins.tolist(), "window_bins": window.tolist(),
            "js": float(jensenshannon(window, bins, base=2)),
            "psi": psi(window, bins),
            "quantiles": np.quantile(u, np.linspace(0, 1, 21)).tolist(),
        })
    lambdas = [0.05, 0.3, 0.5, 0.8, 0.99, 1.0, 1.01, 1.2, 1.5, 2.0, 3.0]
    out = {"cases": cases, "kolmogorov": [{"lambda": x, "sf": float(kstwobign.sf(x))} for x in lambdas]}
    # Categorical features: Pearson's chi-square of window counts against training shares, one
    # bucket per training category and one for unseen ones (expected share 1e-4, the training
    # shares scaled by 1 - 1e-4), as DriftStatistics.chiSquare computes it.
    categorical_rng = np.random.default_rng(20261207)
    chi_cases = []
    for name, categories, window_size, shift, unseen in [
            ("same shares", 4, 600, 0.0, 0), ("shifted", 6, 800, 0.6, 0), ("some unseen", 3, 500, 0.0, 12),
            ("many categories", 40, 2000, 0.1, 3), ("two", 2, 50, 0.3, 0)]:
        shares = categorical_rng.random(categories) + 0.2
        shares /= shares.sum()
        drawn = (1 - shift) * shares + shift * np.eye(categories)[0]
        counts = categorical_rng.multinomial(window_size - unseen, drawn).astype(float)
        observed = np.append(counts, unseen)
        expected_shares = np.maximum(np.append(shares * (1 - 1e-4), 1e-4), 1e-8)
        result = chisquare(observed, expected_shares * observed.sum())
        chi_cases.append({"name": name, "observed": observed.tolist(), "shares": shares.tolist(),
                          "statistic": float(result.statistic), "p": float(result.pvalue)})
    out["chi_square"] = chi_cases
    out["chi2_survival"] = [{"x": x, "dof": k, "sf": float(chi2.sf(x, k))}
                            for x, k in [(0.5, 1), (3.84, 1), (10, 3), (2, 7), (50, 20), (100, 60), (30, 60), (1e-3, 5), (200, 3)]]
    path = os.path.join("Tests", "WeirDriftTests", "Fixtures", "statistics.json")
    with open(path, "w") as handle:
        json.dump(out, handle, indent=1)
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
