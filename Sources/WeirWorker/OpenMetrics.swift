import Foundation

/// One traced observation (`tracing otlp`): the trace a histogram bucket names as its exemplar, so a
/// dashboard can jump from a latency bucket to a trace of a batch that landed in it.
struct TraceExemplar: Sendable {
    let traceID: String
    let spanID: String
    /// The observed value (seconds) and when it was observed (seconds since the epoch).
    let value: Double
    let timestamp: Double
}

/// The OpenMetrics 1.0 text of a Prometheus 0.0.4 exposition (what a scrape asking for
/// `application/openmetrics-text` gets): counter families named without `_total`, a counter whose
/// name lacks `_total` typed `unknown`, `# EOF` at the end, and on each histogram family in
/// `exemplars` the newest trace exemplar of a series, on the first bucket that holds its value.
/// `exemplars` maps a histogram family's name to its series' label pairs (`name="value"`, as the
/// exposition writes them) and exemplars.
func openMetricsText(_ prometheus: [UInt8], exemplars: [String: [(labels: [String], exemplar: TraceExemplar)]]) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(prometheus.count + 1024)
    // The series whose exemplar is already written (one per series, on its first fitting bucket).
    var placed = Set<String>()
    for line in String(decoding: prometheus, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true) {
        if line.hasPrefix("# TYPE ") || line.hasPrefix("# HELP ") {
            let fields = line.split(separator: " ", maxSplits: 3)
            if fields.count >= 4, fields[1] == "TYPE", fields[3] == "counter" {
                let name = fields[2]
                out.append(contentsOf: (name.hasSuffix("_total") ? "# TYPE \(name.dropLast(6)) counter" : "# TYPE \(name) unknown").utf8)
            } else if fields.count >= 3, fields[1] == "HELP", fields[2].hasSuffix("_total") {
                out.append(contentsOf: "# HELP \(fields[2].dropLast(6))\(fields.count > 3 ? " " + fields[3] : "")".utf8)
            } else {
                out.append(contentsOf: line.utf8)
            }
            out.append(10)
            continue
        }
        out.append(contentsOf: line.utf8)
        if let exemplar = exemplar(for: line, exemplars, placed: &placed) {
            out.append(contentsOf: " # {trace_id=\"\(exemplar.traceID)\",span_id=\"\(exemplar.spanID)\"} \(exemplar.value) \(exemplar.timestamp)".utf8)
        }
        out.append(10)
    }
    out.append(contentsOf: "# EOF\n".utf8)
    return out
}

/// The exemplar a `<family>_bucket{...,le="x"} n` line carries: its series' exemplar, when this is
/// the first of the series' buckets whose bound holds the value.
private func exemplar(for line: Substring, _ exemplars: [String: [(labels: [String], exemplar: TraceExemplar)]],
                      placed: inout Set<String>) -> TraceExemplar? {
    guard let brace = line.firstIndex(of: "{"), line[..<brace].hasSuffix("_bucket"),
          let series = exemplars[String(line[..<brace].dropLast(7))],
          let bound = line.range(of: "le=\"", options: .backwards),
          let close = line[bound.upperBound...].firstIndex(of: "\"") else { return nil }
    let text = line[bound.upperBound..<close]
    guard let limit = text == "+Inf" ? Double.infinity : Double(text),
          let match = series.first(where: { entry in entry.labels.allSatisfy { line.contains($0) } }) else { return nil }
    let key = String(line[..<bound.lowerBound])
    guard match.exemplar.value <= limit, !placed.contains(key) else { return nil }
    placed.insert(key)
    return match.exemplar
}
