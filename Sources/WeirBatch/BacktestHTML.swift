import Foundation
import WeirDrift

extension BacktestReport {
    /// One self-contained page: the metrics, gates and segments as tables, the two models' score
    /// histograms overlaid, and their reliability diagrams (inline SVG: no script, no network).
    public var html: String {
        var page = """
        <!doctype html><html><head><meta charset="utf-8"><title>Weir backtest: \(escape(current.name)) \(escape(current.version)) vs \(escape(candidate.version))</title>
        <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:960px;color:#222}table{border-collapse:collapse;margin:1em 0}
        td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
        .pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}.a{fill:#1f77b4}.b{fill:#ff7f0e}svg{background:#fafafa;margin:0.5em 0}
        code{font-size:12px}</style></head><body>
        <h1>Backtest: \(escape(current.name)) \(escape(current.version)) → \(escape(candidate.version))</h1>
        <p>\(Self.format(metrics["rows"] ?? 0)) rows compared from \(escape(inputs.joined(separator: ", "))) in \(String(format: "%.2f", seconds)) s on \(threads) threads, \(escape(createdAt)).<br>
        current <code>\(escape(current.sha256))</code> (\(escape(current.path)))<br>candidate <code>\(escape(candidate.sha256))</code> (\(escape(candidate.path)))</p>
        """
        if !gates.isEmpty {
            page += "<h2>Gates: <span class=\"\(passed ? "pass" : "fail")\">\(passed ? "passed" : "failed")</span></h2><table><tr><th>gate</th><th>value</th><th>result</th></tr>"
            for gate in gates {
                page += "<tr><td>\(escape(gate.expression))</td><td>\(gate.value.map(Self.format) ?? "not measured")</td><td class=\"\(gate.passed == true ? "pass" : "fail")\">\(gate.passed == true ? "pass" : "fail")</td></tr>"
            }
            page += "</table>"
        }
        page += "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>95% interval</th></tr>"
        for name in metrics.keys.sorted() {
            let interval = intervals[name].map { "\(Self.format($0[0])) – \(Self.format($0[1]))" } ?? ""
            page += "<tr><td>\(escape(name))</td><td>\(Self.format(metrics[name]!))</td><td>\(interval)</td></tr>"
        }
        page += "</table>"
        page += "<h2>Scores</h2><p><span style=\"color:#1f77b4\">■ current</span> <span style=\"color:#ff7f0e\">■ candidate</span></p>"
        page += histogramSVG
        if !calibration.isEmpty {
            page += "<h2>Reliability</h2><p>Mean predicted probability against the observed share, per bin (the diagonal is perfect calibration).</p>"
            page += reliabilitySVG
        }
        if let confusion {
            page += "<h2>Labels: current (rows) × candidate (columns)</h2><table><tr><th></th>" + confusion.labels.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            for (label, row) in zip(confusion.labels, confusion.counts) {
                page += "<tr><td>\(escape(label))</td>" + row.map { "<td>\($0)</td>" }.joined() + "</tr>"
            }
            page += "</table>"
        }
        if let segmentFeature, !segments.isEmpty {
            let errorName = task == "classification" ? "accuracy" : "MAE"
            page += "<h2>By \(escape(segmentFeature))</h2><table><tr><th>segment</th><th>n</th><th>agreement</th><th>mean current</th><th>mean candidate</th><th>labelled</th><th>\(errorName) current</th><th>\(errorName) candidate</th></tr>"
            for segment in segments {
                page += "<tr><td>\(escape(segment.segment))</td><td>\(segment.n)</td><td>\(Self.format(segment.agreement))</td><td>\(Self.format(segment.currentMean))</td><td>\(Self.format(segment.candidateMean))</td><td>\(segment.labelled)</td><td>\(segment.currentError.map(Self.format) ?? "")</td><td>\(segment.candidateError.map(Self.format) ?? "")</td></tr>"
            }
            page += "</table>"
        }
        let dead = deadLetters.flatMap { side, codes in codes.map { (side, $0.key, $0.value) } }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        if !dead.isEmpty {
            page += "<h2>Dead letters</h2><table><tr><th>model</th><th>code</th><th>records</th></tr>"
            for (side, code, count) in dead { page += "<tr><td>\(side)</td><td>\(escape(code))</td><td>\(count)</td></tr>" }
            page += "</table>"
        }
        page += "</body></html>\n"
        return page
    }

    private var histogramSVG: String {
        let width = 640.0, height = 240.0, margin = 30.0
        let bins = scoreHistogram.current.count
        let total = Double(max(scoreHistogram.current.reduce(0, +), 1)), totalB = Double(max(scoreHistogram.candidate.reduce(0, +), 1))
        let peak = max((scoreHistogram.current.map { Double($0) / total } + scoreHistogram.candidate.map { Double($0) / totalB }).max() ?? 1, 1e-9)
        let step = (width - 2 * margin) / Double(max(bins, 1))
        var svg = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"score histograms\">"
        for bin in 0..<bins {
            for (index, share) in [Double(scoreHistogram.current[bin]) / total, Double(scoreHistogram.candidate[bin]) / totalB].enumerated() {
                let barHeight = share / peak * (height - 2 * margin)
                let x = margin + Double(bin) * step + Double(index) * step / 2
                svg += String(format: "<rect class=\"%@\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>%.3f</title></rect>",
                              (index == 0 ? "a" : "b") as NSString, x, height - margin - barHeight, step / 2 - 1, barHeight, share)
            }
        }
        let edges = scoreHistogram.edges
        if let first = edges.first, let last = edges.last {
            svg += "<text x=\"\(Int(margin))\" y=\"\(Int(height - 8))\" font-size=\"11\">\(Self.format(first))</text>"
            svg += "<text x=\"\(Int(width - margin - 20))\" y=\"\(Int(height - 8))\" font-size=\"11\">\(Self.format(last))</text>"
        }
        return svg + "</svg>"
    }

    private var reliabilitySVG: String {
        let size = 300.0, margin = 30.0, inner = size - 2 * margin
        var svg = ""
        for (side, className) in [("current", "a"), ("candidate", "b")] {
            guard let bins = calibration[side] else { continue }
            svg += "<svg width=\"\(Int(size))\" height=\"\(Int(size))\" role=\"img\" aria-label=\"\(side) reliability\">"
            svg += "<text x=\"\(Int(margin))\" y=\"18\" font-size=\"12\">\(side) (ECE \(metrics["\(side)_ece"].map(Self.format) ?? "-"))</text>"
            svg += "<line x1=\"\(margin)\" y1=\"\(size - margin)\" x2=\"\(size - margin)\" y2=\"\(margin)\" stroke=\"#999\" stroke-dasharray=\"4\"/>"
            svg += "<rect x=\"\(margin)\" y=\"\(margin)\" width=\"\(inner)\" height=\"\(inner)\" fill=\"none\" stroke=\"#ccc\"/>"
            for bin in bins where bin.n > 0 {
                let x = margin + bin.predicted * inner, y = size - margin - bin.observed * inner
                let radius = 2 + min(Double(bin.n).squareRoot() / 10, 8)
                svg += String(format: "<circle class=\"%@\" cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"><title>n=%d predicted %.3f observed %.3f</title></circle>",
                              className as NSString, x, y, radius, bin.n, bin.predicted, bin.observed)
            }
            svg += "</svg>"
        }
        return svg
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
