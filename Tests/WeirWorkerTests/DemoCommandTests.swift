import Foundation
import Testing
import WeirTestSupport

/// `weir demo` (what `make run` starts) as a user runs it: a child process with its own embedded
/// broker, producer and worker, stopping by itself.
@Suite("weir demo", .timeLimit(.minutes(2)))
struct DemoCommandTests {
    let weir = builtProduct("weir").path

    @Test("The demo (its default, categorical model) answers events with predictions and dead letters, prints its summary and exits 0")
    func demoRunsAndStops() throws {
        let result = try run([weir, "demo", "--duration", "5", "--rate", "1000", "--bad-every", "50", "--metrics-port", "0"],
                             timeoutSeconds: 60)
        #expect(result.status == 0, "exit status; stderr:\n\(result.errors)")
        let summaries = result.output.split(separator: "\n").filter { $0.hasPrefix("t=") }
        #expect(summaries.count >= 3, "one summary line a second: \(result.output)")
        let last = try #require(summaries.last.map(String.init))
        func count(after label: String) -> Int? {
            guard let range = last.range(of: label + " ") else { return nil }
            return Int(last[range.upperBound...].prefix { $0.isNumber })
        }
        let predictions = try #require(count(after: "predictions"), "\(last)")
        let deadLetters = try #require(count(after: "dead letters"), "\(last)")
        #expect(predictions > 1_000, "\(last)")
        // One event in 50 is bad, each answered by a dead letter, never by a stop.
        #expect(deadLetters > 0 && deadLetters * 25 < predictions, "\(last)")
        // The default model is the categorical one: its merchant category, country and channel are the events' strings.
        #expect(last.hasSuffix("model payments 1.0.0"), "the serving model and version: \(last)")
    }

    @Test("weir demo --format avro: Avro events through an in-process Schema Registry, every bad kind dead-lettered")
    func demoRunsOnAvro() throws {
        let result = try run([weir, "demo", "--format", "avro", "--duration", "5", "--rate", "1000", "--bad-every", "50", "--metrics-port", "0"],
                             timeoutSeconds: 60)
        #expect(result.status == 0, "exit status; stderr:\n\(result.errors)")
        #expect(result.errors.contains("demo Schema Registry at http://127.0.0.1:"), "\(result.errors)")
        let last = try #require(result.output.split(separator: "\n").last { $0.hasPrefix("t=") }.map(String.init), "\(result.output)")
        func count(after label: String) -> Int? {
            guard let range = last.range(of: label + " ") else { return nil }
            return Int(last[range.upperBound...].prefix { $0.isNumber })
        }
        let predictions = try #require(count(after: "predictions"), "\(last)")
        let deadLetters = try #require(count(after: "dead letters"), "\(last)")
        #expect(predictions > 1_000 && deadLetters > 0 && deadLetters * 25 < predictions, "\(last)")
    }

    @Test("A bad option: the first line names it and what to do, exit status 64")
    func badOptionIsOneLine() throws {
        let result = try run([weir, "demo", "--rate=-5"], timeoutSeconds: 30)
        #expect(result.status == 64)
        let lines = result.errors.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.first?.contains("--rate must be 0 or more") == true, "\(result.errors)")
        let missing = try run([weir, "demo", "--model", "/nonexistent/bundle", "--duration", "1"], timeoutSeconds: 30)
        #expect(missing.status != 0)
        #expect(missing.errors.contains("--model:"), "\(missing.errors)")
    }
}
